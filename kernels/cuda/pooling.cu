#include <climits>
#include <cmath>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/pooling.cuh"

namespace kvc::cuda {
namespace {

constexpr int kBlock = 256;

// cpu::Pool1d at position t of one query head's raw scores (raw = colsum * row_scale in f32).
__device__ __forceinline__ float PoolAt(const double* __restrict__ row, int64_t t,
                                        const PoolSpec& p) {
  const int64_t pad = p.kernel / 2;
  const int64_t lo = t - pad > 0 ? t - pad : 0;
  const int64_t last = t - pad + p.kernel - 1;
  const int64_t hi = last < p.prefix - 1 ? last : p.prefix - 1;
  if (p.max_pool) {
    float m = -INFINITY;
    for (int64_t j = lo; j <= hi; ++j) m = fmaxf(m, float(row[j] * p.row_scale));
    return m;
  }
  double sum = 0.0;
  for (int64_t j = lo; j <= hi; ++j) sum += double(float(row[j] * p.row_scale));
  return float(sum / double(p.kernel));
}

// Grid (column chunk, b): one thread per (b, t), walking the group in order.
__global__ void __launch_bounds__(kBlock)
    PooledGroupMeanKernel(const double* __restrict__ colsum, int64_t group, int64_t tokens,
                          PoolSpec p, float* __restrict__ out) {
  const int64_t t = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (t >= tokens) return;
  const int64_t b = blockIdx.y;
  const float group_f = float(group);
  float acc = 0.f;
  for (int64_t g = 0; g < group; ++g) {
    const double* row = colsum + (b * group + g) * tokens;
    const float pooled = t < p.prefix ? PoolAt(row, t, p) : float(row[t] * p.row_scale);
    acc += pooled / group_f;  // as the CPU: divide, then add
  }
  out[b * tokens + t] = acc;
}

template <GroupSumMode kMode>
__global__ void __launch_bounds__(kBlock)
    GroupSumKernel(const double* __restrict__ colsum, int64_t group, int64_t tokens,
                   float* __restrict__ out) {
  const int64_t t = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (t >= tokens) return;
  const int64_t b = blockIdx.y;
  double dsum = 0.0;
  float fsum = 0.f;
  for (int64_t g = 0; g < group; ++g) {
    const double x = colsum[(b * group + g) * tokens + t];
    if constexpr (kMode == GroupSumMode::kDouble) {
      dsum += x;
    } else {
      fsum += float(x);
    }
  }
  out[b * tokens + t] = kMode == GroupSumMode::kDouble ? float(dsum) : fsum;
}

// Block-wide min and max of doubles; every thread gets both. Same REQUIRES as BlockSum.
__device__ __forceinline__ void BlockMinMax(double* lo, double* hi) {
  __shared__ double plo[kBlock / kWarpSize];
  __shared__ double phi[kBlock / kWarpSize];
  double a = *lo, b = *hi;
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) {
    a = fmin(a, __shfl_xor_sync(0xffffffffu, a, o));
    b = fmax(b, __shfl_xor_sync(0xffffffffu, b, o));
  }
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  if (lane == 0) {
    plo[warp] = a;
    phi[warp] = b;
  }
  __syncthreads();
  a = INFINITY;
  b = -INFINITY;
#pragma unroll
  for (int w = 0; w < kBlock / kWarpSize; ++w) {
    a = fmin(a, plo[w]);
    b = fmax(b, phi[w]);
  }
  __syncthreads();
  *lo = a;
  *hi = b;
}

// One block per row q: min / max, then the mean and the variance of the normalised row.
__global__ void __launch_bounds__(kBlock)
    MinMaxVarianceKernel(const double* __restrict__ colsum, int64_t tokens,
                         double* __restrict__ var) {
  const double* row = colsum + int64_t(blockIdx.x) * tokens;
  double lo = INFINITY, hi = -INFINITY;
  for (int64_t t = threadIdx.x; t < tokens; t += kBlock) {
    lo = fmin(lo, row[t]);
    hi = fmax(hi, row[t]);
  }
  BlockMinMax(&lo, &hi);
  const double range = hi - lo;
  if (!(range > 0.0)) {  // block-uniform: every thread leaves here together
    if (threadIdx.x == 0) var[blockIdx.x] = 0.0;
    return;
  }
  double sum = 0.0;
  for (int64_t t = threadIdx.x; t < tokens; t += kBlock) sum += (row[t] - lo) / range;
  const double mean = BlockSum<kBlock>(sum) / double(tokens);
  double sq = 0.0;
  for (int64_t t = threadIdx.x; t < tokens; t += kBlock) {
    const double x = (row[t] - lo) / range - mean;
    sq += x * x;
  }
  sq = BlockSum<kBlock>(sq);
  if (threadIdx.x == 0) var[blockIdx.x] = sq / double(tokens);
}

}  // namespace

// ---- Launchers ---------------------------------------------------------------------------------

cudaError_t LaunchPooledGroupMean(const double* colsum, int64_t batch, int64_t group,
                                  int64_t tokens, const PoolSpec& pool, float* out,
                                  cudaStream_t stream) {
  dim3 grid(unsigned(CeilDiv(tokens, kBlock)), unsigned(batch));
  PooledGroupMeanKernel<<<grid, kBlock, 0, stream>>>(colsum, group, tokens, pool, out);
  return cudaGetLastError();
}

cudaError_t LaunchGroupSum(const double* colsum, int64_t batch, int64_t group, int64_t tokens,
                           GroupSumMode mode, float* out, cudaStream_t stream) {
  dim3 grid(unsigned(CeilDiv(tokens, kBlock)), unsigned(batch));
  if (mode == GroupSumMode::kDouble) {
    GroupSumKernel<GroupSumMode::kDouble><<<grid, kBlock, 0, stream>>>(colsum, group, tokens, out);
  } else {
    GroupSumKernel<GroupSumMode::kFloat><<<grid, kBlock, 0, stream>>>(colsum, group, tokens, out);
  }
  return cudaGetLastError();
}

cudaError_t LaunchMinMaxVariance(const double* colsum, int64_t rows, int64_t tokens, double* var,
                                 cudaStream_t stream) {
  MinMaxVarianceKernel<<<unsigned(rows), kBlock, 0, stream>>>(colsum, tokens, var);
  return cudaGetLastError();
}

// ---- Entry points ------------------------------------------------------------------------------

namespace {

Status CheckGroupShape(int64_t batch, int64_t group, int64_t tokens, const void* in,
                       const void* out, const char* op) {
  if (batch < 1 || batch > 65535 || group < 1 || tokens < 1 || in == nullptr || out == nullptr) {
    return Status::InvalidArgument(std::string(op) + ": bad sizes or null pointer");
  }
  return Status::OK();
}

}  // namespace

Status PooledGroupMean(const double* colsum, int64_t batch, int64_t group, int64_t tokens,
                       const PoolSpec& pool, float* out, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckGroupShape(batch, group, tokens, colsum, out, "PooledGroupMean"));
  if (pool.prefix < 0 || pool.prefix > tokens || pool.kernel < 1) {
    return Status::InvalidArgument("PooledGroupMean: need 0 <= prefix <= T and kernel >= 1");
  }
  return FromCuda(LaunchPooledGroupMean(colsum, batch, group, tokens, pool, out, stream),
                  "PooledGroupMean launch");
}

Status GroupSum(const double* colsum, int64_t batch, int64_t group, int64_t tokens,
                GroupSumMode mode, float* out, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckGroupShape(batch, group, tokens, colsum, out, "GroupSum"));
  return FromCuda(LaunchGroupSum(colsum, batch, group, tokens, mode, out, stream),
                  "GroupSum launch");
}

Status MinMaxVariance(const double* colsum, int64_t rows, int64_t tokens, double* var,
                      cudaStream_t stream) {
  if (rows < 1 || rows > INT_MAX || tokens < 1 || colsum == nullptr || var == nullptr) {
    return Status::InvalidArgument("MinMaxVariance: bad sizes or null pointer");
  }
  return FromCuda(LaunchMinMaxVariance(colsum, rows, tokens, var, stream), "MinMaxVariance launch");
}

}  // namespace kvc::cuda
