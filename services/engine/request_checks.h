// Validation and decoding of what callers hand the engine. Internal to services/engine; every
// function is pure and reports bad input as InvalidArgument (or the decoder's Corruption /
// NotSupported), naming what is wrong, so the engine refuses it before it queues or stores
// anything.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "common/kv_cache.h"
#include "common/status.h"
#include "services/engine/engine_types.h"

namespace kvc::engine {

// A prefix hash chain: 1..max_blocks hashes, each 16 or 32 bytes (an xxh3-128 or SHA-256
// digest, common/prefix_hash.h), all of one size.
Status CheckChain(std::span<const std::string> chain, size_t max_blocks);

// One entry's key: a block hash as in CheckChain and a 32-byte spec hash (SpecHash).
Status CheckEntryKey(std::string_view block_hash, std::string_view spec_hash);

// Everything about a request that can be checked before its cache is read: the chain, the
// spec (CompactionSpec::Validate), exactly one source, the inline payload's size and a
// non-negative deadline.
Status CheckRequest(const CompactRequest& request, const EngineOptions& options);

// Decodes an inline safetensors KV dump (common/kv_io.h) without copying: the returned
// tensors share `payload`'s bytes. Rejects NaN/Inf.
Result<KvCache> DecodeInlinePayload(std::string payload);

// The cache's token count and tensor bytes against the options' limits.
Status CheckCacheLimits(const KvCache& cache, const EngineOptions& options);

}  // namespace kvc::engine
