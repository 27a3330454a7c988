// Ragged top-k per segment (one segment per (layer, head)): the k_b highest scores of segment b,
// returned as positions within the segment, sorted ascending. Budgets k_b may differ per segment
// and nothing is padded. Ties are broken by the lower position (a stable descending sort over
// positions in ascending order), the same rule as the CPU reference's SelectTopK.
//
// Implementation: CUB DeviceSegmentedSort::StableSortPairsDescending over (score, position), the
// first k_b of each segment copied out, then DeviceSegmentedSort::SortKeys ascending.
//
// Stream semantics: queued on `stream`; nothing synchronises.
// Thread safety: stateless; concurrent calls on different data are safe.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "kernels/cuda/memory_pool.h"
#include "kernels/cuda/ragged.h"

namespace kvc::cuda {

// Device scratch for one call; sizes in elements (cub_bytes in bytes).
struct TopKScratch {
  float* keys_sorted = nullptr;   // segments total
  int32_t* pos_in = nullptr;      // segments total
  int32_t* pos_sorted = nullptr;  // segments total
  int32_t* picked = nullptr;      // out total
  void* cub = nullptr;
  size_t cub_bytes = 0;
};

// Bytes of CUB temporary storage needed for the given totals.
cudaError_t TopKCubBytes(int64_t segments_total, int64_t out_total, int64_t batch,
                         const int64_t* seg_offsets, const int64_t* out_offsets, size_t* bytes);

// Launcher. `seg` and `out` views have rows = 1 and the same batch.
cudaError_t LaunchSegmentedTopK(const float* scores, const RaggedView& seg, const RaggedView& out,
                                int32_t* indices, const TopKScratch& scratch, cudaStream_t stream);

// Validated entry point. REQUIRES (else InvalidArgument): segments.batch() == out.batch(),
// out.cols(b) <= segments.cols(b) for every b, every segment shorter than 2^31, non-null
// pointers. Scores must be finite (NaN order is unspecified). indices receives out.total()
// entries. Scratch comes from `pool`.
Status SegmentedTopK(const float* scores, const RaggedLayout& segments, const RaggedLayout& out,
                     int32_t* indices, DeviceMemoryPool& pool, cudaStream_t stream);

}  // namespace kvc::cuda
