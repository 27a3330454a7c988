// Kernels of the GPU OMP / OMP-fast selection (am_omp.h). Every kernel skips heads that have no
// work in the current round; "block-uniform" below marks early returns that every thread of a
// block takes together (so that the block reductions after them see the whole block).
#include <cub/block/block_scan.cuh>

#include "kernels/cuda/am_omp.h"
#include "kernels/cuda/common.cuh"

namespace kvc::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarpsPerBlock = kBlock / kWarpSize;
constexpr int kPickBlock = 1024;
constexpr int kScanBlock = 1024;

// A candidate key: value and position; j < 0 means "none".
struct Cand {
  float v;
  int32_t j;
};

// Strict total order: a valid candidate beats none; then the larger value; then the lower
// position. Values are never NaN here (mapped to -inf on load).
__device__ __forceinline__ bool Better(Cand a, Cand b) {
  if (a.j < 0) return false;
  if (b.j < 0) return true;
  if (a.v != b.v) return a.v > b.v;
  return a.j < b.j;
}

__device__ __forceinline__ Cand WarpArgmax(Cand c) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) {
    Cand other{__shfl_xor_sync(0xffffffffu, c.v, o), __shfl_xor_sync(0xffffffffu, c.j, o)};
    if (Better(other, c)) c = other;
  }
  return c;
}

// Every thread gets the block's best candidate. REQUIRES: called by all kThreads threads.
template <int kThreads>
__device__ Cand BlockArgmax(Cand c) {
  __shared__ float sv[kThreads / kWarpSize];
  __shared__ int32_t sj[kThreads / kWarpSize];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  c = WarpArgmax(c);
  if (lane == 0) {
    sv[warp] = c.v;
    sj[warp] = c.j;
  }
  __syncthreads();
  Cand best{-INFINITY, -1};
  for (int w = 0; w < kThreads / kWarpSize; ++w) {
    const Cand o{sv[w], sj[w]};
    if (Better(o, best)) best = o;
  }
  __syncthreads();  // sv / sj may be rewritten by the next call
  return best;
}

__device__ __forceinline__ float ClampW(float x, float lo, float hi) {
  return fminf(fmaxf(x, lo), hi);  // NaN -> lo (fmaxf returns the non-NaN operand)
}

__global__ void CorrFinalizeKernel(const float* __restrict__ partial, int64_t tiles, int64_t count,
                                   float* __restrict__ corr) {
  const int64_t x = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (x >= count) return;
  float s = 0.f;
  for (int64_t t = 0; t < tiles; ++t) s += partial[t * count + x];
  corr[x] = s;
}

__global__ void __launch_bounds__(kPickBlock)
    PickKernel(const float* __restrict__ corr, int64_t tokens, const int32_t* __restrict__ picks,
               const int32_t* __restrict__ before, const int64_t* __restrict__ sel_off,
               uint8_t* __restrict__ taken, int32_t* __restrict__ order) {
  const int64_t b = blockIdx.x;
  const int p = picks[b];
  if (p <= 0) return;  // block-uniform
  const float* cb = corr + b * tokens;
  uint8_t* tb = taken + b * tokens;
  int32_t* ob = order + sel_off[b] + before[b];
  for (int q = 0; q < p; ++q) {
    Cand best{-INFINITY, -1};
    for (int64_t j = threadIdx.x; j < tokens; j += kPickBlock) {
      if (tb[j] != 0) continue;
      const float v = cb[j];
      const Cand c{isnan(v) ? -INFINITY : v, int32_t(j)};
      if (Better(c, best)) best = c;
    }
    best = BlockArgmax<kPickBlock>(best);
    if (threadIdx.x == 0) {
      if (best.j >= 0) tb[best.j] = 1;
      ob[q] = best.j;  // -1 only if the plan asked for more keys than are free (never)
    }
    __syncthreads();  // the mark is visible to the whole block before the next scan
  }
}

// Grid (max picks, batch): block (q, b) copies the q-th new column of head b.
__global__ void __launch_bounds__(kBlock)
    AddColumnsKernel(const float* __restrict__ phi, const float* __restrict__ corr, int64_t n,
                     int64_t tokens, const int32_t* __restrict__ picks,
                     const int32_t* __restrict__ before, const int64_t* __restrict__ sel_off,
                     const int32_t* __restrict__ order, float lower, float upper,
                     float* __restrict__ cols, float* __restrict__ w, float* __restrict__ v) {
  const int64_t b = blockIdx.y;
  const int p = picks[b];
  if (int(blockIdx.x) >= p) return;  // block-uniform
  const int64_t count = int64_t(before[b]) + p;
  const int64_t slot = sel_off[b] + before[b] + blockIdx.x;
  const int32_t j = order[slot];
  const bool valid = j >= 0 && j < tokens;
  float* col = cols + slot * n;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += kBlock) {
    const float x = valid ? phi[(b * n + i) * tokens + j] : 0.f;
    col[i] = x;
    ss += x * x;
  }
  ss = BlockSum<kBlock>(ss);
  if (threadIdx.x == 0) {
    const float c = valid ? corr[b * tokens + j] : 0.f;
    w[slot] = ss > 0.f ? ClampW(c / (float(p) * ss), lower, upper) : lower;
    v[slot] = rsqrtf(float(count));
  }
}

// Grid (row chunks, batch); one thread per row, walking the head's columns.
__global__ void __launch_bounds__(kBlock)
    ColsMatVecKernel(const float* __restrict__ cols, const float* __restrict__ x,
                     const float* __restrict__ z, int64_t n, const int32_t* __restrict__ active,
                     const int32_t* __restrict__ picks, const int32_t* __restrict__ before,
                     const int64_t* __restrict__ sel_off, float* __restrict__ out) {
  const int64_t b = blockIdx.y;
  if (active[b] == 0) return;
  const int64_t i = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (i >= n) return;
  const int64_t count = int64_t(before[b]) + picks[b];
  const float* base = cols + sel_off[b] * n + i;
  const float* xs = x + sel_off[b];
  float acc = 0.f;
#pragma unroll 4
  for (int64_t c = 0; c < count; ++c) acc += base[c * n] * xs[c];
  out[b * n + i] = z != nullptr ? z[b * n + i] - acc : acc;
}

// Grid (column chunks of kWarpsPerBlock, batch); one warp per column.
__global__ void __launch_bounds__(kBlock)
    ColsMatTVecKernel(const float* __restrict__ cols, const float* __restrict__ u, int64_t n,
                      const int32_t* __restrict__ active, const int32_t* __restrict__ picks,
                      const int32_t* __restrict__ before, const int64_t* __restrict__ sel_off,
                      const float* __restrict__ step, float lower, float upper,
                      float* __restrict__ y) {
  const int64_t b = blockIdx.y;
  if (active[b] == 0) return;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t c = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (c >= int64_t(before[b]) + picks[b]) return;  // warp-uniform: the shuffles see full warps
  const float* col = cols + (sel_off[b] + c) * n;
  const float* ub = u + b * n;
  float acc = 0.f;
  for (int64_t i = lane; i < n; i += kWarpSize) acc += col[i] * ub[i];
  acc = WarpSum(acc);
  if (lane == 0) {
    const int64_t slot = sel_off[b] + c;
    y[slot] = step != nullptr ? ClampW(y[slot] + step[b] * acc, lower, upper) : acc;
  }
}

__global__ void __launch_bounds__(kBlock)
    NormalizeKernel(const float* __restrict__ y, const int32_t* __restrict__ active,
                    const int32_t* __restrict__ picks, const int32_t* __restrict__ before,
                    const int64_t* __restrict__ sel_off, float* __restrict__ v,
                    float* __restrict__ step) {
  const int64_t b = blockIdx.x;
  if (active[b] == 0) return;  // block-uniform
  const int64_t count = int64_t(before[b]) + picks[b];
  const int64_t off = sel_off[b];
  float ss = 0.f;
  for (int64_t c = threadIdx.x; c < count; c += kBlock) ss += y[off + c] * y[off + c];
  ss = BlockSum<kBlock>(ss);
  const float norm = sqrtf(ss);
  const float inv = norm > 0.f ? 1.f / norm : 0.f;
  for (int64_t c = threadIdx.x; c < count; c += kBlock) v[off + c] = y[off + c] * inv;
  if (threadIdx.x == 0) step[b] = inv;
}

__global__ void __launch_bounds__(kScanBlock)
    CompactKernel(const uint8_t* __restrict__ taken, int64_t tokens,
                  const int64_t* __restrict__ sel_off, int32_t* __restrict__ indices) {
  using Scan = cub::BlockScan<int, kScanBlock>;
  __shared__ typename Scan::TempStorage temp;
  const int64_t b = blockIdx.x;
  const uint8_t* tb = taken + b * tokens;
  const int64_t room = sel_off[b + 1] - sel_off[b];
  int32_t* out = indices + sel_off[b];
  int64_t carry = 0;
  for (int64_t start = 0; start < tokens; start += kScanBlock) {
    const int64_t j = start + threadIdx.x;
    const int flag = (j < tokens && tb[j] != 0) ? 1 : 0;
    int excl = 0, agg = 0;
    Scan(temp).ExclusiveSum(flag, excl, agg);
    if (flag != 0 && carry + excl < room) out[carry + excl] = int32_t(j);
    carry += agg;
    __syncthreads();  // temp is reused by the next chunk's scan
  }
}

}  // namespace

cudaError_t LaunchOmpCorrFinalize(const float* partial, int64_t tiles, int64_t count, float* corr,
                                  cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  CorrFinalizeKernel<<<unsigned(CeilDiv(count, kBlock)), kBlock, 0, stream>>>(partial, tiles, count,
                                                                              corr);
  return cudaGetLastError();
}

cudaError_t LaunchOmpPick(const float* corr, int64_t batch, int64_t tokens, const int32_t* picks,
                          const int32_t* before, const int64_t* sel_off, uint8_t* taken,
                          int32_t* order, cudaStream_t stream) {
  PickKernel<<<unsigned(batch), kPickBlock, 0, stream>>>(corr, tokens, picks, before, sel_off,
                                                         taken, order);
  return cudaGetLastError();
}

cudaError_t LaunchOmpAddColumns(const float* phi, const float* corr, int64_t batch, int64_t n,
                                int64_t tokens, int32_t max_picks, const int32_t* picks,
                                const int32_t* before, const int64_t* sel_off, const int32_t* order,
                                float lower, float upper, float* cols, float* w, float* v,
                                cudaStream_t stream) {
  if (max_picks <= 0) return cudaSuccess;
  const dim3 grid(unsigned(max_picks), static_cast<unsigned>(batch));
  AddColumnsKernel<<<grid, kBlock, 0, stream>>>(phi, corr, n, tokens, picks, before, sel_off, order,
                                                lower, upper, cols, w, v);
  return cudaGetLastError();
}

cudaError_t LaunchOmpColsMatVec(const float* cols, const float* x, const float* z, int64_t batch,
                                int64_t n, const int32_t* active, const int32_t* picks,
                                const int32_t* before, const int64_t* sel_off, float* out,
                                cudaStream_t stream) {
  const dim3 grid(unsigned(CeilDiv(n, kBlock)), static_cast<unsigned>(batch));
  ColsMatVecKernel<<<grid, kBlock, 0, stream>>>(cols, x, z, n, active, picks, before, sel_off, out);
  return cudaGetLastError();
}

cudaError_t LaunchOmpColsMatTVec(const float* cols, const float* u, int64_t batch, int64_t n,
                                 int64_t max_count, const int32_t* active, const int32_t* picks,
                                 const int32_t* before, const int64_t* sel_off, const float* step,
                                 float lower, float upper, float* y, cudaStream_t stream) {
  if (max_count <= 0) return cudaSuccess;
  const dim3 grid(unsigned(CeilDiv(max_count, kWarpsPerBlock)), static_cast<unsigned>(batch));
  ColsMatTVecKernel<<<grid, kBlock, 0, stream>>>(cols, u, n, active, picks, before, sel_off, step,
                                                 lower, upper, y);
  return cudaGetLastError();
}

cudaError_t LaunchOmpNormalize(const float* y, int64_t batch, const int32_t* active,
                               const int32_t* picks, const int32_t* before, const int64_t* sel_off,
                               float* v, float* step, cudaStream_t stream) {
  NormalizeKernel<<<unsigned(batch), kBlock, 0, stream>>>(y, active, picks, before, sel_off, v,
                                                          step);
  return cudaGetLastError();
}

cudaError_t LaunchOmpCompact(const uint8_t* taken, int64_t batch, int64_t tokens,
                             const int64_t* sel_off, int32_t* indices, cudaStream_t stream) {
  CompactKernel<<<unsigned(batch), kScanBlock, 0, stream>>>(taken, tokens, sel_off, indices);
  return cudaGetLastError();
}

}  // namespace kvc::cuda
