#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gather.cuh"

namespace kvc::cuda {
namespace {

constexpr int kBlock = 128;

// One block per (kept row r, head b).
__global__ void GatherRowsKernel(const float* __restrict__ src, int64_t src_rows, int64_t d,
                                 const int32_t* __restrict__ idx, RaggedView sel,
                                 float* __restrict__ out) {
  const int64_t b = blockIdx.y;
  const int64_t r = blockIdx.x;
  const int64_t off = sel.offsets[b];
  if (r >= sel.offsets[b + 1] - off) return;
  const float* from = src + (b * src_rows + idx[off + r]) * d;
  float* to = out + (off + r) * d;
  for (int64_t c = threadIdx.x; c < d; c += kBlock) to[c] = from[c];
}

}  // namespace

cudaError_t LaunchGatherRows(const float* src, int64_t src_rows, int64_t d, const int32_t* idx,
                             const RaggedView& sel, float* out, cudaStream_t stream) {
  if (sel.max_cols == 0) return cudaSuccess;
  const dim3 grid(unsigned(sel.max_cols), unsigned(sel.batch));
  GatherRowsKernel<<<grid, kBlock, 0, stream>>>(src, src_rows, d, idx, sel, out);
  return cudaGetLastError();
}

Status GatherRows(const float* src, int64_t src_rows, int64_t d, const int32_t* idx,
                  const RaggedLayout& sel, float* out, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckRagged(sel, 1, "GatherRows"));
  if (src_rows < 1 || d < 1 || d > 65536 || sel.max_cols() > INT32_MAX) {
    return Status::InvalidArgument("GatherRows: bad sizes");
  }
  if (sel.total() == 0) return Status::OK();
  if (src == nullptr || idx == nullptr || out == nullptr) {
    return Status::InvalidArgument("GatherRows: null pointer");
  }
  return FromCuda(LaunchGatherRows(src, src_rows, d, idx, sel.View(1), out, stream),
                  "GatherRows launch");
}

}  // namespace kvc::cuda
