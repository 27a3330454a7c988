#include <algorithm>
#include <cub/device/device_segmented_sort.cuh>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/topk.cuh"

namespace kvc::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void SegmentIotaKernel(RaggedView v, int32_t* __restrict__ pos) {
  const int64_t b = blockIdx.y;
  const int64_t off = v.offsets[b];
  const int64_t cols = v.offsets[b + 1] - off;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < cols) pos[off + j] = int32_t(j);
}

// picked[out_off + r] = sorted[seg_off + r] for r < k_b.
__global__ void TakeFirstKernel(RaggedView seg, RaggedView out, const int32_t* __restrict__ sorted,
                                int32_t* __restrict__ picked) {
  const int64_t b = blockIdx.y;
  const int64_t k = out.offsets[b + 1] - out.offsets[b];
  const int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r < k) picked[out.offsets[b] + r] = sorted[seg.offsets[b] + r];
}

}  // namespace

cudaError_t TopKCubBytes(int64_t segments_total, int64_t out_total, int64_t batch,
                         const int64_t* seg_offsets, const int64_t* out_offsets, size_t* bytes) {
  size_t a = 0, b = 0;
  cudaError_t err = cub::DeviceSegmentedSort::StableSortPairsDescending(
      nullptr, a, static_cast<const float*>(nullptr), static_cast<float*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), segments_total, batch,
      seg_offsets, seg_offsets + 1);
  if (err != cudaSuccess) return err;
  err = cub::DeviceSegmentedSort::SortKeys(nullptr, b, static_cast<const int32_t*>(nullptr),
                                           static_cast<int32_t*>(nullptr), out_total, batch,
                                           out_offsets, out_offsets + 1);
  *bytes = std::max(a, b);
  return err;
}

cudaError_t LaunchSegmentedTopK(const float* scores, const RaggedView& seg, const RaggedView& out,
                                int32_t* indices, const TopKScratch& s, cudaStream_t stream) {
  if (out.total_cols == 0) return cudaSuccess;
  const dim3 iota_grid(unsigned(CeilDiv(seg.max_cols, kBlock)), unsigned(seg.batch));
  SegmentIotaKernel<<<iota_grid, kBlock, 0, stream>>>(seg, s.pos_in);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  size_t bytes = s.cub_bytes;
  err = cub::DeviceSegmentedSort::StableSortPairsDescending(
      s.cub, bytes, scores, s.keys_sorted, s.pos_in, s.pos_sorted, seg.total_cols, seg.batch,
      seg.offsets, seg.offsets + 1, stream);
  if (err != cudaSuccess) return err;
  const dim3 take_grid(unsigned(CeilDiv(out.max_cols, kBlock)), unsigned(out.batch));
  TakeFirstKernel<<<take_grid, kBlock, 0, stream>>>(seg, out, s.pos_sorted, s.picked);
  err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  bytes = s.cub_bytes;
  return cub::DeviceSegmentedSort::SortKeys(s.cub, bytes, s.picked, indices, out.total_cols,
                                            out.batch, out.offsets, out.offsets + 1, stream);
}

Status SegmentedTopK(const float* scores, const RaggedLayout& segments, const RaggedLayout& out,
                     int32_t* indices, DeviceMemoryPool& pool, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckRagged(segments, 1, "SegmentedTopK"));
  if (out.batch() != segments.batch()) {
    return Status::InvalidArgument("SegmentedTopK: budgets and segments differ in batch");
  }
  for (int64_t b = 0; b < segments.batch(); ++b) {
    if (out.cols(b) > segments.cols(b)) {
      return Status::InvalidArgument("SegmentedTopK: budget " + std::to_string(out.cols(b)) +
                                     " of segment " + std::to_string(b) + " exceeds its " +
                                     std::to_string(segments.cols(b)) + " entries");
    }
  }
  if (segments.max_cols() > INT32_MAX) {
    return Status::InvalidArgument("SegmentedTopK: segment longer than INT32_MAX");
  }
  if (out.total() == 0) return Status::OK();
  if (scores == nullptr || indices == nullptr) {
    return Status::InvalidArgument("SegmentedTopK: null pointer");
  }
  const size_t n = size_t(segments.total());
  const size_t k = size_t(out.total());
  TopKScratch s;
  KVC_CUDA_RETURN_IF_ERROR(
      TopKCubBytes(segments.total(), out.total(), segments.batch(), segments.device_offsets(),
                   out.device_offsets(), &s.cub_bytes),
      "SegmentedTopK: temp size");
  KVC_ASSIGN_OR_RETURN(DeviceBuffer keys, pool.AllocateArray<float>(n));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer pos_in, pool.AllocateArray<int32_t>(n));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer pos_sorted, pool.AllocateArray<int32_t>(n));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer picked, pool.AllocateArray<int32_t>(k));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer cub_temp, pool.Allocate(std::max<size_t>(s.cub_bytes, 1)));
  s.keys_sorted = keys.as<float>();
  s.pos_in = pos_in.as<int32_t>();
  s.pos_sorted = pos_sorted.as<int32_t>();
  s.picked = picked.as<int32_t>();
  s.cub = cub_temp.get();
  return FromCuda(LaunchSegmentedTopK(scores, segments.View(1), out.View(1), indices, s, stream),
                  "SegmentedTopK");
}

}  // namespace kvc::cuda
