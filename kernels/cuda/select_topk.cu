#include <cfloat>
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/select_topk.cuh"

namespace kvc::cuda {
namespace {

constexpr int kBlock = 256;

__global__ void __launch_bounds__(kBlock)
    RankValuesKernel(const float* x, float* y, int64_t count, bool cap_infinity) {
  const int64_t i = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (i >= count) return;
  float v = x[i];
  if (isnan(v)) v = -INFINITY;
  if (v == 0.f) v = 0.f;  // -0 -> +0
  if (cap_infinity && v == INFINITY) v = FLT_MAX;
  y[i] = v;
}

// Grid (priority chunk, b).
__global__ void __launch_bounds__(kBlock)
    MarkForcedKernel(float* __restrict__ y, int64_t tokens, const int32_t* __restrict__ priority,
                     int64_t n, const int64_t* __restrict__ budgets) {
  const int64_t i = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  const int64_t b = blockIdx.y;
  const int64_t take = budgets[b] < n ? budgets[b] : n;
  if (i >= take) return;
  y[b * tokens + priority[i]] = INFINITY;
}

}  // namespace

cudaError_t LaunchRankValues(const float* x, float* y, int64_t count, bool cap_infinity,
                             cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  RankValuesKernel<<<unsigned(CeilDiv(count, kBlock)), kBlock, 0, stream>>>(x, y, count,
                                                                            cap_infinity);
  return cudaGetLastError();
}

cudaError_t LaunchMarkForced(float* y, int64_t batch, int64_t tokens, const int32_t* priority,
                             int64_t n, const int64_t* budgets, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  dim3 grid(unsigned(CeilDiv(n, kBlock)), unsigned(batch));
  MarkForcedKernel<<<grid, kBlock, 0, stream>>>(y, tokens, priority, n, budgets);
  return cudaGetLastError();
}

Status RankValues(const float* x, float* y, int64_t count, bool cap_infinity, cudaStream_t stream) {
  if (count < 0 || (count > 0 && (x == nullptr || y == nullptr))) {
    return Status::InvalidArgument("RankValues: bad arguments");
  }
  return FromCuda(LaunchRankValues(x, y, count, cap_infinity, stream), "RankValues launch");
}

Status MarkForced(float* y, int64_t batch, int64_t tokens, const int32_t* priority, int64_t n,
                  const int64_t* budgets, cudaStream_t stream) {
  if (batch < 1 || batch > 65535 || tokens < 1 || n < 0 ||
      (n > 0 && (y == nullptr || priority == nullptr || budgets == nullptr))) {
    return Status::InvalidArgument("MarkForced: bad arguments");
  }
  return FromCuda(LaunchMarkForced(y, batch, tokens, priority, n, budgets, stream),
                  "MarkForced launch");
}

}  // namespace kvc::cuda
