// Conversions from the Thrift answers of idl/kvcompact.thrift to the client's plain types
// (internal to services/client). Requests are built with services/rpc/convert.h.
//
// Thread safety: pure functions.
#pragma once

#include <string>

#include "common/kv_cache.h"
#include "common/status.h"
#include "idl/kvcompact_types.h"
#include "services/client/client.h"
#include "services/engine/engine_types.h"

namespace kvc::client {

// NotSupported for a manifest with an unknown dtype (as rpc::ManifestFromThrift).
Result<engine::CompactOutcome> OutcomeFromThrift(const rpc::CompactResult& result);
engine::EngineStats StatsFromThrift(const rpc::Stats& stats);
WorkerHealth HealthFromThrift(const rpc::Health& health);

// Decodes an inline fetch answer (a safetensors compacted-cache file), taking the bytes over
// without copying them. `source` names them in errors. Errors: the loader's (Corruption,
// NotSupported, InvalidArgument).
Result<CompactedCache> DecodeCompacted(std::string bytes, const std::string& source);

// Removes the reserved keys of common/kv_io.h ("format", "n_layers", "n_q_heads",
// "source_tokens") from a cache's metadata. The inline path loses them in the loader; a cache
// that came over UCX may carry them: without this the two transports would return different
// metadata for one entry. The values are in the layout anyway.
void DropReservedMetadata(CompactedCache* cache);

}  // namespace kvc::client
