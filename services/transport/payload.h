// Conversion between the project's caches and the transport's payloads.
//
// Outgoing: a KvCache or CompactedCache becomes a descriptor plus one Tensor per frame, sharing
// the cache's storage (no copies; CompactedLayer::offsets is the one small copy, into an I64
// tensor). Incoming: the staged buffers of a complete payload become a cache whose tensors are
// views over them, each holding its StagingRef.
// Thread safety: pure functions.
#pragma once

#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "common/tensor.h"
#include "services/transport/staging_pool.h"
#include "services/transport/wire.h"

namespace kvc::transport {

// A payload ready to send: tensors[i] holds the bytes announced by descriptor.tensors[i].
// Tools and tests may edit both before sending (a payload whose tensors do not match its
// descriptor is refused by the receiver with Corruption).
struct OutgoingPayload {
  PayloadDescriptor descriptor;
  std::vector<Tensor> tensors;

  uint64_t total_bytes() const { return descriptor.total_bytes(); }
};

// Faults a sender can inject on purpose, for tests and tools that check how receivers cope.
// The defaults inject nothing.
struct SendFaults {
  // Send only the first n tensor frames (-1: all).
  int64_t stop_after_frames = -1;
  // Send the end marker after the frames.
  bool send_end = true;
  // Announce a wrong checksum for this frame index (-1: none).
  int64_t corrupt_checksum_of = -1;
};

// InvalidArgument when the cache fails KvCache::Validate(/*check_finite=*/false).
Result<OutgoingPayload> MakeUploadPayload(const KvCache& cache);
// InvalidArgument when the cache fails CompactedCache::Validate().
Result<OutgoingPayload> MakeFetchPayload(const CompactedCache& cache);

// REQUIRES: desc passed CheckDescriptor and buffers[i].size() == desc.tensors[i].nbytes.
// Returns InvalidArgument if the assembled cache fails validation.
Result<KvCache> BuildKvCache(const PayloadDescriptor& desc, const std::vector<StagingRef>& buffers);
Result<CompactedCache> BuildCompactedCache(const PayloadDescriptor& desc,
                                           const std::vector<StagingRef>& buffers);

}  // namespace kvc::transport
