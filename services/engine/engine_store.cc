// Engine operations on the store and on staged uploads, and the engine's statistics.
#include <spdlog/spdlog.h>

#include "services/engine/engine.h"
#include "services/engine/engine_job.h"
#include "services/engine/entry_info.h"
#include "services/engine/request_checks.h"
#include "services/engine/spec_hash.h"

namespace kvc::engine {

Status Engine::CheckStoreOpen() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ == State::kServing || state_ == State::kDraining) return Status::OK();
  return Status::Unavailable(
      "the worker is not serving (starting or stopped); retry on another "
      "worker");
}

Status Engine::StageUpload(uint64_t session, KvCache cache) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    KVC_RETURN_IF_ERROR(CheckServing());
  }
  Status valid = cache.Validate(/*check_finite=*/true);
  if (!valid.ok()) return valid.WithContext("upload session " + std::to_string(session));
  KVC_RETURN_IF_ERROR(CheckCacheLimits(cache, options_));
  Result<Reservation> reserved = budget_.Reserve(CacheBytes(cache), "upload");
  if (!reserved.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    ++counters_.jobs_rejected;
    metrics_.JobDone("rejected");
    return reserved.status();
  }
  KVC_RETURN_IF_ERROR(staged_.Put(session, std::move(cache), std::move(*reserved), Clock::now()));
  std::lock_guard<std::mutex> lock(mu_);
  PublishGaugesLocked();
  return Status::OK();
}

Result<LookupOutcome> Engine::Lookup(std::span<const std::string> chain,
                                     std::string_view spec_hash) {
  KVC_RETURN_IF_ERROR(CheckStoreOpen());
  KVC_RETURN_IF_ERROR(CheckChain(chain, options_.max_blocks));
  KVC_RETURN_IF_ERROR(CheckEntryKey(chain.front(), spec_hash));
  // Entries are stored under the last block of the chain they were built from, so the longest
  // stored prefix is the deepest block with an entry: probe from the end.
  for (size_t i = chain.size(); i-- > 0;) {
    Result<storage::PrefixMatch> probe =
        store_->LookupLongestPrefix(chain.subspan(i, 1), spec_hash);
    if (probe.status().IsNotFound()) continue;
    if (!probe.ok()) return probe.status();
    const storage::StoreKey key{chain[i], std::string(spec_hash)};
    Result<storage::Manifest> manifest = store_->GetManifest(key);
    // Deleted since the probe, or damaged (the store has removed it): look further down.
    if (manifest.status().IsNotFound() || manifest.status().IsCorruption()) continue;
    if (!manifest.ok()) return manifest.status();
    LookupOutcome out;
    out.matched_blocks = i + 1;
    out.entry = EntryInfoFromManifest(key.block_hash, key.spec_hash, *manifest);
    return out;
  }
  return LookupOutcome{};
}

Result<FetchOutcome> Engine::Fetch(std::string_view block_hash, std::string_view spec_hash) {
  KVC_RETURN_IF_ERROR(CheckStoreOpen());
  KVC_RETURN_IF_ERROR(CheckEntryKey(block_hash, spec_hash));
  const storage::StoreKey key{std::string(block_hash), std::string(spec_hash)};
  KVC_ASSIGN_OR_RETURN(storage::Manifest manifest, store_->GetManifest(key));
  KVC_ASSIGN_OR_RETURN(CompactedCache cache, store_->Get(key));
  FetchOutcome out;
  out.entry = EntryInfoFromManifest(key.block_hash, key.spec_hash, manifest);
  out.cache = std::move(cache);
  return out;
}

Result<EntryInfo> Engine::Describe(std::string_view block_hash, std::string_view spec_hash) {
  KVC_RETURN_IF_ERROR(CheckStoreOpen());
  KVC_RETURN_IF_ERROR(CheckEntryKey(block_hash, spec_hash));
  const storage::StoreKey key{std::string(block_hash), std::string(spec_hash)};
  KVC_ASSIGN_OR_RETURN(storage::Manifest manifest, store_->GetManifest(key));
  return EntryInfoFromManifest(key.block_hash, key.spec_hash, manifest);
}

Status Engine::Delete(std::string_view block_hash, std::string_view spec_hash) {
  KVC_RETURN_IF_ERROR(CheckStoreOpen());
  KVC_RETURN_IF_ERROR(CheckEntryKey(block_hash, spec_hash));
  return store_->Delete(storage::StoreKey{std::string(block_hash), std::string(spec_hash)});
}

EngineStats Engine::Stats() const {
  EngineStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s = counters_;
    s.queue_depth = queue_.size();
    s.running_jobs = running_;
  }
  s.uptime_ms = static_cast<int64_t>(MillisBetween(created_, Clock::now()));
  s.queue_capacity = options_.queue_capacity;
  s.staged_uploads = staged_.size();
  s.staged_bytes = budget_.used();
  s.staging_budget_bytes = budget_.limit();
  s.executor = executor_->name();
  s.store = store_->Stats();
  return s;
}

EngineHealth Engine::Health() const {
  EngineHealth h;
  {
    std::lock_guard<std::mutex> lock(mu_);
    h.serving = state_ == State::kServing;
    h.queue_depth = queue_.size();
    h.running_jobs = running_;
  }
  h.uptime_ms = static_cast<int64_t>(MillisBetween(created_, Clock::now()));
  h.executor = executor_->name();
  return h;
}

}  // namespace kvc::engine
