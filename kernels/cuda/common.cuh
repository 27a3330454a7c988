// Device-side helpers shared by the kernels of kernels/cuda: warp and block reductions and grid
// arithmetic. Included only by .cu files.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

namespace kvc::cuda {

constexpr int kWarpSize = 32;

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ double WarpSum(double v) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Online softmax state: running max m and sum s of exp(x - m). m = -inf means "no element".
struct MaxSum {
  float m;
  float s;
};

__device__ __forceinline__ MaxSum MaxSumCombine(MaxSum a, MaxSum b) {
  if (a.m == -INFINITY) return b;
  if (b.m == -INFINITY) return a;
  float m = fmaxf(a.m, b.m);
  return MaxSum{m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

// Adds one element x to the state; x = -inf contributes nothing.
__device__ __forceinline__ MaxSum MaxSumPush(MaxSum a, float x) {
  if (x == -INFINITY) return a;
  if (x > a.m) return MaxSum{x, a.s * expf(a.m - x) + 1.f};  // a.m = -inf gives a.s * 0 = 0
  return MaxSum{a.m, a.s + expf(x - a.m)};
}

__device__ __forceinline__ MaxSum WarpMaxSum(MaxSum v) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) {
    MaxSum other{__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = MaxSumCombine(v, other);
  }
  return v;
}

// Block-wide sum; every thread gets the result. REQUIRES: blockDim.x == kBlock, a multiple of 32,
// called by every thread of the block. Uses __syncthreads (twice).
template <int kBlock, typename T>
__device__ __forceinline__ T BlockSum(T v) {
  static_assert(kBlock % kWarpSize == 0 && kBlock <= 1024, "block size");
  __shared__ T partial[kBlock / kWarpSize];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  v = WarpSum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  T total = T(0);
#pragma unroll
  for (int w = 0; w < kBlock / kWarpSize; ++w) total += partial[w];  // same order everywhere
  __syncthreads();  // partial may be reused by a following call
  return total;
}

// Block-wide online max/sum combine; every thread gets the result. Same REQUIRES as BlockSum.
template <int kBlock>
__device__ __forceinline__ MaxSum BlockMaxSum(MaxSum v) {
  __shared__ float pm[kBlock / kWarpSize];
  __shared__ float ps[kBlock / kWarpSize];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  v = WarpMaxSum(v);
  if (lane == 0) {
    pm[warp] = v.m;
    ps[warp] = v.s;
  }
  __syncthreads();
  MaxSum total{-INFINITY, 0.f};
#pragma unroll
  for (int w = 0; w < kBlock / kWarpSize; ++w) total = MaxSumCombine(total, MaxSum{pm[w], ps[w]});
  __syncthreads();
  return total;
}

}  // namespace kvc::cuda
