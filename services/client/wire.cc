#include "services/client/wire.h"

#include <memory>
#include <span>
#include <utility>

#include "common/kv_io.h"
#include "common/safetensors.h"
#include "services/rpc/convert.h"

namespace kvc::client {
namespace {

uint64_t U64(int64_t v) { return v < 0 ? 0 : static_cast<uint64_t>(v); }

storage::TierStats TierFromThrift(const rpc::TierStats& t) {
  storage::TierStats out;
  out.entries = U64(t.entries);
  out.bytes = U64(t.bytes);
  out.hits = U64(t.hits);
  out.misses = U64(t.misses);
  out.promotions = U64(t.promotions);
  out.demotions = U64(t.demotions);
  out.evictions = U64(t.evictions);
  out.expirations = U64(t.expirations);
  out.corruptions = U64(t.corruptions);
  return out;
}

}  // namespace

Result<engine::CompactOutcome> OutcomeFromThrift(const rpc::CompactResult& result) {
  engine::CompactOutcome out;
  KVC_ASSIGN_OR_RETURN(out.entry, rpc::ManifestFromThrift(result.manifest));
  out.request_id = result.request_id;
  out.stored = result.stored;
  out.achieved_ratio = result.achieved_ratio;
  out.queue_ms = result.queue_ms;
  out.compute_ms = result.compute_ms;
  out.timings_json = result.timings_json;
  return out;
}

engine::EngineStats StatsFromThrift(const rpc::Stats& s) {
  engine::EngineStats out;
  out.uptime_ms = s.uptime_ms;
  out.queue_depth = U64(s.queue_depth);
  out.queue_capacity = U64(s.queue_capacity);
  out.running_jobs = U64(s.running_jobs);
  out.jobs_submitted = U64(s.jobs_submitted);
  out.jobs_succeeded = U64(s.jobs_succeeded);
  out.jobs_failed = U64(s.jobs_failed);
  out.jobs_cancelled = U64(s.jobs_cancelled);
  out.jobs_rejected = U64(s.jobs_rejected);
  out.jobs_expired = U64(s.jobs_expired);
  out.staged_uploads = U64(s.staged_uploads);
  out.staged_bytes = U64(s.staged_bytes);
  out.staging_budget_bytes = U64(s.staging_budget_bytes);
  out.executor = s.executor;
  out.store.hot = TierFromThrift(s.hot);
  out.store.warm = TierFromThrift(s.warm);
  out.store.cold = TierFromThrift(s.cold);
  out.store.puts = U64(s.store_puts);
  out.store.deletes = U64(s.store_deletes);
  out.store.lookups = U64(s.store_lookups);
  return out;
}

WorkerHealth HealthFromThrift(const rpc::Health& h) {
  WorkerHealth out;
  out.serving = h.serving;
  out.version = h.version;
  out.queue_depth = h.queue_depth;
  out.ucx_address = h.ucx_address;
  out.uptime_ms = h.uptime_ms;
  out.executor = h.executor;
  return out;
}

Result<CompactedCache> DecodeCompacted(std::string bytes, const std::string& source) {
  auto owner = std::make_shared<std::string>(std::move(bytes));
  const std::span<const uint8_t> view(reinterpret_cast<const uint8_t*>(owner->data()),
                                      owner->size());
  KVC_ASSIGN_OR_RETURN(SafetensorsReader reader, SafetensorsReader::Parse(view, owner, source));
  return CompactedCacheFromSafetensors(reader);
}

void DropReservedMetadata(CompactedCache* cache) {
  for (const char* key : {"format", "n_layers", "n_q_heads", "source_tokens"}) {
    cache->metadata.erase(key);
  }
}

}  // namespace kvc::client
