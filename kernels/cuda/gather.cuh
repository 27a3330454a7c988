// Gathers the kept rows of K or V per head into the ragged compacted layout:
//   out[(sel.offset(b) + r) * d + c] = src[(b * src_rows + idx[sel.offset(b) + r]) * d + c]
// with src dense [batch, src_rows, d] and idx the positions from SegmentedTopK.
//
// Stream semantics: queued on `stream`; nothing synchronises.
// Thread safety: stateless.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "kernels/cuda/ragged.h"

namespace kvc::cuda {

cudaError_t LaunchGatherRows(const float* src, int64_t src_rows, int64_t d, const int32_t* idx,
                             const RaggedView& sel, float* out, cudaStream_t stream);

// REQUIRES (else InvalidArgument): src_rows >= 1, 1 <= d <= 65536, non-null pointers. Every
// idx entry must lie in [0, src_rows): the device does not check it (SegmentedTopK guarantees it).
Status GatherRows(const float* src, int64_t src_rows, int64_t d, const int32_t* idx,
                  const RaggedLayout& sel, float* out, cudaStream_t stream);

}  // namespace kvc::cuda
