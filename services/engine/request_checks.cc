#include "services/engine/request_checks.h"

#include <memory>
#include <span>
#include <string>

#include "common/kv_io.h"
#include "common/safetensors.h"
#include "services/engine/spec_hash.h"
#include "services/engine/staging.h"

namespace kvc::engine {
namespace {

bool DigestSize(size_t n) { return n == 16 || n == 32; }

}  // namespace

Status CheckChain(std::span<const std::string> chain, size_t max_blocks) {
  if (chain.empty()) {
    return Status::InvalidArgument(
        "block_hashes is empty: send the prefix hash chain of the "
        "context (common/prefix_hash.h HashPrefix)");
  }
  if (chain.size() > max_blocks) {
    return Status::InvalidArgument("block_hashes has " + std::to_string(chain.size()) +
                                   " blocks; this worker accepts at most " +
                                   std::to_string(max_blocks));
  }
  for (size_t i = 0; i < chain.size(); ++i) {
    if (!DigestSize(chain[i].size()) || chain[i].size() != chain[0].size()) {
      return Status::InvalidArgument(
          "block_hashes[" + std::to_string(i) + "] is " + std::to_string(chain[i].size()) +
          " bytes; every block hash must be the raw digest (16 bytes xxh3-128 or 32 bytes "
          "SHA-256, not hex) and all of one size");
    }
  }
  return Status::OK();
}

Status CheckEntryKey(std::string_view block_hash, std::string_view spec_hash) {
  if (!DigestSize(block_hash.size())) {
    return Status::InvalidArgument("block_hash is " + std::to_string(block_hash.size()) +
                                   " bytes; expected a raw 16- or 32-byte digest");
  }
  if (spec_hash.size() != kSpecHashSize) {
    return Status::InvalidArgument("spec_hash is " + std::to_string(spec_hash.size()) +
                                   " bytes; expected the 32 raw bytes of SpecHash(spec) "
                                   "(services/engine/spec_hash.h)");
  }
  return Status::OK();
}

Status CheckRequest(const CompactRequest& request, const EngineOptions& options) {
  KVC_RETURN_IF_ERROR(CheckChain(request.block_hashes, options.max_blocks));
  KVC_RETURN_IF_ERROR(request.spec.Validate().WithContext("spec"));
  const bool has_upload = request.upload_session.has_value();
  const bool has_inline = request.inline_payload.has_value();
  if (has_upload == has_inline) {
    return Status::InvalidArgument(
        "a compact request needs exactly one source: upload_session (a UCX upload completed on "
        "this worker) or inline_payload (a safetensors KV dump)");
  }
  if (has_inline && request.inline_payload->size() > options.max_request_bytes) {
    return Status::InvalidArgument(
        "inline_payload is " + std::to_string(request.inline_payload->size()) +
        " bytes; this worker accepts at most " + std::to_string(options.max_request_bytes) +
        " (upload large caches over UCX)");
  }
  if (request.deadline.count() < 0) {
    return Status::InvalidArgument("deadline_ms is negative; use 0 for the worker's default");
  }
  return Status::OK();
}

Result<KvCache> DecodeInlinePayload(std::string payload) {
  auto owner = std::make_shared<std::string>(std::move(payload));
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(owner->data()), owner->size());
  Result<SafetensorsReader> file = SafetensorsReader::Parse(bytes, owner, "inline_payload");
  if (!file.ok()) return file.status().WithContext("inline_payload");
  KvLoadOptions load;
  load.check_finite = true;
  Result<KvCache> cache = KvCacheFromSafetensors(*file, load);
  if (!cache.ok()) return cache.status().WithContext("inline_payload");
  return cache;
}

Status CheckCacheLimits(const KvCache& cache, const EngineOptions& options) {
  if (cache.layout.tokens > options.max_tokens) {
    return Status::InvalidArgument("the cache has " + std::to_string(cache.layout.tokens) +
                                   " tokens; this worker accepts at most " +
                                   std::to_string(options.max_tokens));
  }
  const uint64_t bytes = CacheBytes(cache);
  if (bytes > options.max_request_bytes) {
    return Status::InvalidArgument("the cache holds " + std::to_string(bytes) +
                                   " tensor bytes; this worker accepts at most " +
                                   std::to_string(options.max_request_bytes));
  }
  return Status::OK();
}

}  // namespace kvc::engine
