#include <algorithm>
#include <climits>
#include <cmath>
#include <cub/cub.cuh>
#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/d2o_merge.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gather.cuh"
#include "kernels/cuda/gemm.h"

namespace kvc::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kRowsPerBlock = kBlock / kWarpSize;  // one warp per row
constexpr int kMergeBlock = 128;
// Bound on the f32 similarity buffer of one GEMM chunk.
constexpr int64_t kSimBytes = int64_t(256) << 20;

// The head b of flat entry i: the last b in [0, batch) with offsets[b] <= i.
// REQUIRES: 0 <= i < offsets[batch].
__device__ __forceinline__ int64_t SegmentOf(const int64_t* offsets, int64_t batch, int64_t i) {
  int64_t lo = 0, hi = batch;
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (offsets[mid] <= i) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// One warp per row. In-place safe: a lane reads and then writes the same elements.
__global__ void __launch_bounds__(kBlock)
    UnitRowsKernel(const float* in, int64_t rows, int64_t d, float* out) {
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  if (r >= rows) return;  // warp-uniform
  const int lane = threadIdx.x % kWarpSize;
  const float* x = in + r * d;
  double n2 = 0.0;
  for (int64_t c = lane; c < d; c += kWarpSize) n2 += double(x[c]) * double(x[c]);
  n2 = WarpSum(n2);
  const float inv = n2 > 0.0 ? float(1.0 / sqrt(n2)) : 0.f;
  for (int64_t c = lane; c < d; c += kWarpSize) out[r * d + c] = x[c] * inv;
}

// One warp per row: the maximum and the lowest column reaching it (std::max_element's choice).
__global__ void __launch_bounds__(kBlock)
    RowMaxArgmaxKernel(const float* __restrict__ x, int64_t rows, int64_t cols,
                       float* __restrict__ best, int32_t* __restrict__ arg) {
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarpSize;
  if (r >= rows) return;  // warp-uniform
  const int lane = threadIdx.x % kWarpSize;
  const float* row = x + r * cols;
  float bv = -INFINITY;
  int bi = INT_MAX;
  for (int64_t c = lane; c < cols; c += kWarpSize) {
    const float v = row[c];
    if (v > bv) {
      bv = v;
      bi = int(c);
    }
  }
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > bv || (ov == bv && oi < bi)) {
      bv = ov;
      bi = oi;
    }
  }
  if (lane == 0) {
    best[r] = bv;
    arg[r] = bi == INT_MAX ? 0 : bi;  // every value -inf: the first column
  }
}

// Grid (entry chunk, b).
__global__ void __launch_bounds__(kBlock)
    ScatterEvictedKernel(const float* __restrict__ s, const int32_t* __restrict__ evicted,
                         RaggedView ev, int64_t tokens, float* __restrict__ dense) {
  const int64_t b = blockIdx.y;
  const int64_t off = ev.offsets[b];
  const int64_t i = off + int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (i >= ev.offsets[b + 1]) return;
  dense[b * tokens + evicted[i]] = s[i];
}

// Grid (position chunk, layer): the heads in order, as the CPU sums them.
__global__ void __launch_bounds__(kBlock)
    MeanSimilarityKernel(const float* __restrict__ dense, int64_t heads, int64_t tokens,
                         double* __restrict__ mean) {
  const int64_t e = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (e >= tokens) return;
  const int64_t l = blockIdx.y;
  double sum = 0.0;
  int count = 0;
  for (int64_t h = 0; h < heads; ++h) {
    const float v = dense[(l * heads + h) * tokens + e];
    if (isnan(v)) continue;
    sum += double(v);
    ++count;
  }
  mean[l * tokens + e] = count > 0 ? sum / double(count) : double(NAN);
}

// One block per layer.
__global__ void __launch_bounds__(kBlock)
    LayerMeanStatsKernel(const double* __restrict__ mean, int64_t tokens,
                         double* __restrict__ stats) {
  const double* row = mean + int64_t(blockIdx.x) * tokens;
  double sum = 0.0, count = 0.0;
  for (int64_t e = threadIdx.x; e < tokens; e += kBlock) {
    if (isnan(row[e])) continue;
    sum += row[e];
    count += 1.0;
  }
  sum = BlockSum<kBlock>(sum);
  count = BlockSum<kBlock>(count);
  if (threadIdx.x == 0) {
    stats[2 * blockIdx.x] = sum;
    stats[2 * blockIdx.x + 1] = count;
  }
}

__global__ void __launch_bounds__(kBlock)
    MergeKeysKernel(const int32_t* __restrict__ target, const int32_t* __restrict__ evicted,
                    RaggedView ev, const int64_t* __restrict__ kept_offsets, int64_t heads,
                    int64_t tokens, const double* __restrict__ mean, const double* __restrict__ tau,
                    int32_t* __restrict__ keys, int32_t* __restrict__ vals) {
  const int64_t i = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (i >= ev.total_cols) return;
  const int64_t b = SegmentOf(ev.offsets, ev.batch, i);
  const int64_t l = b / heads;
  const bool merge = mean[l * tokens + evicted[i]] >= tau[l];  // NaN never merges
  keys[i] = merge ? int32_t(kept_offsets[b] + target[i]) : INT_MAX;
  vals[i] = int32_t(i);
}

__global__ void __launch_bounds__(kBlock)
    SegmentBoundsKernel(const int32_t* __restrict__ keys, int64_t n, int32_t* __restrict__ start,
                        int32_t* __restrict__ end) {
  const int64_t p = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (p >= n) return;
  const int32_t k = keys[p];
  if (k == INT_MAX) return;
  if (p == 0 || keys[p - 1] != k) start[k] = int32_t(p);
  if (p == n - 1 || keys[p + 1] != k) end[k] = int32_t(p + 1);
}

// One block per kept entry j; threads over the d coordinates.
__global__ void __launch_bounds__(kMergeBlock)
    MergeRowsKernel(D2oMergeBatch m, RaggedView kept, const int32_t* __restrict__ start,
                    const int32_t* __restrict__ end, const int32_t* __restrict__ order,
                    const float* __restrict__ s, float* __restrict__ out_k,
                    float* __restrict__ out_v) {
  const int64_t j = blockIdx.x;
  const int64_t b = SegmentOf(kept.offsets, kept.batch, j);
  const int64_t d = m.dim;
  const float* kb = m.k + b * m.tokens * d;
  const float* vb = m.v + b * m.tokens * d;
  const int64_t kp = m.kept[j];
  const int32_t p0 = start[j], p1 = end[j];
  const double inv = 1.0 / double(1 + (p1 - p0));
  for (int64_t x = threadIdx.x; x < d; x += kMergeBlock) {
    double ak = 0.0, av = 0.0;
    for (int32_t p = p0; p < p1; ++p) {
      const int32_t i = order[p];
      const int64_t e = m.evicted[i];
      const double w = double(s[i]);
      ak += w * double(kb[e * d + x]);
      av += w * double(vb[e * d + x]);
    }
    out_k[j * d + x] = float((double(kb[kp * d + x]) + ak) * inv);
    out_v[j * d + x] = float((double(vb[kp * d + x]) + av) * inv);
  }
}

}  // namespace

// ---- Launchers ---------------------------------------------------------------------------------

cudaError_t LaunchUnitRows(const float* in, int64_t rows, int64_t d, float* out,
                           cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  UnitRowsKernel<<<unsigned(CeilDiv(rows, kRowsPerBlock)), kBlock, 0, stream>>>(in, rows, d, out);
  return cudaGetLastError();
}

cudaError_t LaunchRowMaxArgmax(const float* x, int64_t rows, int64_t cols, float* best,
                               int32_t* arg, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  RowMaxArgmaxKernel<<<unsigned(CeilDiv(rows, kRowsPerBlock)), kBlock, 0, stream>>>(x, rows, cols,
                                                                                    best, arg);
  return cudaGetLastError();
}

cudaError_t LaunchScatterEvicted(const float* s, const int32_t* evicted, const RaggedView& ev,
                                 int64_t tokens, float* dense, cudaStream_t stream) {
  if (ev.max_cols == 0) return cudaSuccess;
  dim3 grid(unsigned(CeilDiv(ev.max_cols, kBlock)), unsigned(ev.batch));
  ScatterEvictedKernel<<<grid, kBlock, 0, stream>>>(s, evicted, ev, tokens, dense);
  return cudaGetLastError();
}

cudaError_t LaunchMeanSimilarity(const float* dense, int64_t layers, int64_t heads, int64_t tokens,
                                 double* mean, cudaStream_t stream) {
  dim3 grid(unsigned(CeilDiv(tokens, kBlock)), unsigned(layers));
  MeanSimilarityKernel<<<grid, kBlock, 0, stream>>>(dense, heads, tokens, mean);
  return cudaGetLastError();
}

cudaError_t LaunchLayerMeanStats(const double* mean, int64_t layers, int64_t tokens, double* stats,
                                 cudaStream_t stream) {
  LayerMeanStatsKernel<<<unsigned(layers), kBlock, 0, stream>>>(mean, tokens, stats);
  return cudaGetLastError();
}

cudaError_t LaunchMergeKeys(const int32_t* target, const int32_t* evicted, const RaggedView& ev,
                            const int64_t* kept_offsets, int64_t heads, int64_t tokens,
                            const double* mean, const double* tau, int32_t* keys, int32_t* vals,
                            cudaStream_t stream) {
  if (ev.total_cols == 0) return cudaSuccess;
  MergeKeysKernel<<<unsigned(CeilDiv(ev.total_cols, kBlock)), kBlock, 0, stream>>>(
      target, evicted, ev, kept_offsets, heads, tokens, mean, tau, keys, vals);
  return cudaGetLastError();
}

cudaError_t LaunchSegmentBounds(const int32_t* keys, int64_t n, int32_t* start, int32_t* end,
                                cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  SegmentBoundsKernel<<<unsigned(CeilDiv(n, kBlock)), kBlock, 0, stream>>>(keys, n, start, end);
  return cudaGetLastError();
}

cudaError_t LaunchMergeRows(const D2oMergeBatch& m, const RaggedView& kept, const int32_t* start,
                            const int32_t* end, const int32_t* order, const float* s, float* out_k,
                            float* out_v, cudaStream_t stream) {
  if (kept.total_cols == 0) return cudaSuccess;
  MergeRowsKernel<<<unsigned(kept.total_cols), kMergeBlock, 0, stream>>>(m, kept, start, end, order,
                                                                         s, out_k, out_v);
  return cudaGetLastError();
}

// ---- Entry points ------------------------------------------------------------------------------

namespace {

Status CheckBatch(const D2oMergeBatch& m, const char* op) {
  const std::string what(op);
  const int64_t batch = m.layers * m.heads;
  if (m.layers < 1 || m.heads < 1 || batch > 65535 || m.tokens < 1 ||
      batch * m.tokens >= (int64_t(1) << 31) || m.dim < 1 || m.dim > 65536) {
    return Status::InvalidArgument(what + ": bad sizes");
  }
  if (m.kept_layout == nullptr || m.evicted_layout == nullptr || m.kept_layout->batch() != batch ||
      m.evicted_layout->batch() != batch) {
    return Status::InvalidArgument(what + ": layouts must have layers * heads entries");
  }
  for (int64_t b = 0; b < batch; ++b) {
    if (m.kept_layout->cols(b) > m.tokens || m.evicted_layout->cols(b) > m.tokens) {
      return Status::InvalidArgument(what + ": a head has more entries than tokens");
    }
  }
  if (m.k == nullptr || m.v == nullptr || (m.kept_layout->total() > 0 && m.kept == nullptr) ||
      (m.evicted_layout->total() > 0 && m.evicted == nullptr)) {
    return Status::InvalidArgument(what + ": null pointer");
  }
  return Status::OK();
}

// Evicted rows per similarity GEMM against t kept keys.
int64_t SimChunkRows(int64_t t) {
  return std::max<int64_t>(1, kSimBytes / int64_t(sizeof(float)) / std::max<int64_t>(t, 1));
}

// The cosine GEMMs and argmaxes of head b, chunked over its evicted rows.
Status MatchHead(const D2oMergeBatch& m, int64_t b, const float* kk, const float* ke, float* sim,
                 float* s, int32_t* target, cublasHandle_t cublas, cudaStream_t stream) {
  const RaggedLayout& kept = *m.kept_layout;
  const RaggedLayout& ev = *m.evicted_layout;
  const int64_t t = kept.cols(b), n_ev = ev.cols(b), d = m.dim;
  const int64_t chunk = SimChunkRows(t);
  for (int64_t e0 = 0; e0 < n_ev; e0 += chunk) {
    const int64_t rows = std::min(chunk, n_ev - e0);
    GemmShape sh;
    sh.m = rows;
    sh.n = t;
    sh.k = d;
    sh.op_a = Op::kN;
    sh.op_b = Op::kT;
    sh.lda = d;
    sh.ldb = d;
    sh.ldc = t;
    const int64_t first = ev.offset(b) + e0;
    KVC_RETURN_IF_ERROR(
        Gemm(cublas, sh, 1.f, ke + first * d, kk + kept.offset(b) * d, 0.f, sim, MathMode::kF32));
    KVC_CUDA_RETURN_IF_ERROR(LaunchRowMaxArgmax(sim, rows, t, s + first, target + first, stream),
                             "MatchEvicted argmax");
  }
  return Status::OK();
}

}  // namespace

Status MatchEvicted(const D2oMergeBatch& m, float* s, int32_t* target, cublasHandle_t cublas,
                    DeviceMemoryPool& pool, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckBatch(m, "MatchEvicted"));
  const RaggedLayout& kept = *m.kept_layout;
  const RaggedLayout& ev = *m.evicted_layout;
  if (ev.total() == 0) return Status::OK();
  if (s == nullptr || target == nullptr) return Status::InvalidArgument("MatchEvicted: null");
  int64_t sim_elems = 0;
  for (int64_t b = 0; b < kept.batch(); ++b) {
    if (ev.cols(b) > 0 && kept.cols(b) == 0) {
      return Status::InvalidArgument("MatchEvicted: a head evicts entries but keeps none");
    }
    if (ev.cols(b) > 0) {
      sim_elems =
          std::max(sim_elems, std::min(ev.cols(b), SimChunkRows(kept.cols(b))) * kept.cols(b));
    }
  }
  const int64_t d = m.dim;
  KVC_ASSIGN_OR_RETURN(DeviceBuffer kk, pool.AllocateArray<float>(size_t(kept.total() * d)));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer ke, pool.AllocateArray<float>(size_t(ev.total() * d)));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer sim, pool.AllocateArray<float>(size_t(sim_elems)));
  KVC_RETURN_IF_ERROR(GatherRows(m.k, m.tokens, d, m.kept, kept, kk.as<float>(), stream));
  KVC_RETURN_IF_ERROR(GatherRows(m.k, m.tokens, d, m.evicted, ev, ke.as<float>(), stream));
  KVC_CUDA_RETURN_IF_ERROR(LaunchUnitRows(kk.as<float>(), kept.total(), d, kk.as<float>(), stream),
                           "MatchEvicted unit rows");
  KVC_CUDA_RETURN_IF_ERROR(LaunchUnitRows(ke.as<float>(), ev.total(), d, ke.as<float>(), stream),
                           "MatchEvicted unit rows");
  for (int64_t b = 0; b < kept.batch(); ++b) {
    if (ev.cols(b) == 0) continue;
    KVC_RETURN_IF_ERROR(MatchHead(m, b, kk.as<float>(), ke.as<float>(), sim.as<float>(), s, target,
                                  cublas, stream));
  }
  return Status::OK();  // buffers return to the pool; later users are ordered on `stream`
}

Status EvictedMeanSimilarity(const D2oMergeBatch& m, const float* s, double* mean, double* stats,
                             DeviceMemoryPool& pool, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckBatch(m, "EvictedMeanSimilarity"));
  if (mean == nullptr || stats == nullptr || (m.evicted_layout->total() > 0 && s == nullptr)) {
    return Status::InvalidArgument("EvictedMeanSimilarity: null pointer");
  }
  const int64_t batch = m.layers * m.heads;
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dense, pool.AllocateArray<float>(size_t(batch * m.tokens)));
  // All-ones bytes are a NaN: "not evicted by this head".
  KVC_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(dense.get(), 0xFF, size_t(batch * m.tokens) * sizeof(float), stream),
      "EvictedMeanSimilarity memset");
  const RaggedView ev = m.evicted_layout->View(1);
  KVC_CUDA_RETURN_IF_ERROR(
      LaunchScatterEvicted(s, m.evicted, ev, m.tokens, dense.as<float>(), stream),
      "EvictedMeanSimilarity scatter");
  KVC_CUDA_RETURN_IF_ERROR(
      LaunchMeanSimilarity(dense.as<float>(), m.layers, m.heads, m.tokens, mean, stream),
      "EvictedMeanSimilarity mean");
  KVC_CUDA_RETURN_IF_ERROR(LaunchLayerMeanStats(mean, m.layers, m.tokens, stats, stream),
                           "EvictedMeanSimilarity stats");
  return Status::OK();
}

namespace {

// Sorts (keys, vals) by key, stably; the sorted arrays land in keys_out / vals_out.
Status SortPairs(const int32_t* keys, int32_t* keys_out, const int32_t* vals, int32_t* vals_out,
                 int64_t n, DeviceMemoryPool& pool, cudaStream_t stream) {
  size_t bytes = 0;
  KVC_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(nullptr, bytes, keys, keys_out, vals,
                                                           vals_out, int(n), 0, 32, stream),
                           "MergeEvicted sort (size)");
  KVC_ASSIGN_OR_RETURN(DeviceBuffer tmp, pool.Allocate(std::max<size_t>(bytes, 1)));
  KVC_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(tmp.get(), bytes, keys, keys_out, vals,
                                                           vals_out, int(n), 0, 32, stream),
                           "MergeEvicted sort");
  return Status::OK();
}

}  // namespace

Status MergeEvicted(const D2oMergeBatch& m, const float* s, const int32_t* target,
                    const double* mean, const double* tau, float* out_k, float* out_v,
                    DeviceMemoryPool& pool, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckBatch(m, "MergeEvicted"));
  const RaggedLayout& kept = *m.kept_layout;
  const int64_t n_ev = m.evicted_layout->total();
  if (kept.total() == 0) return Status::OK();
  if (out_k == nullptr || out_v == nullptr || mean == nullptr || tau == nullptr ||
      (n_ev > 0 && (s == nullptr || target == nullptr))) {
    return Status::InvalidArgument("MergeEvicted: null pointer");
  }
  const size_t kept_bytes = size_t(kept.total()) * sizeof(int32_t);
  KVC_ASSIGN_OR_RETURN(DeviceBuffer start, pool.Allocate(kept_bytes));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer end, pool.Allocate(kept_bytes));
  KVC_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(start.get(), 0, kept_bytes, stream), "memset");
  KVC_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(end.get(), 0, kept_bytes, stream), "memset");
  DeviceBuffer keys, vals, keys_sorted, vals_sorted;
  if (n_ev > 0) {
    KVC_ASSIGN_OR_RETURN(keys, pool.AllocateArray<int32_t>(size_t(n_ev)));
    KVC_ASSIGN_OR_RETURN(vals, pool.AllocateArray<int32_t>(size_t(n_ev)));
    KVC_ASSIGN_OR_RETURN(keys_sorted, pool.AllocateArray<int32_t>(size_t(n_ev)));
    KVC_ASSIGN_OR_RETURN(vals_sorted, pool.AllocateArray<int32_t>(size_t(n_ev)));
    KVC_CUDA_RETURN_IF_ERROR(LaunchMergeKeys(target, m.evicted, m.evicted_layout->View(1),
                                             kept.device_offsets(), m.heads, m.tokens, mean, tau,
                                             keys.as<int32_t>(), vals.as<int32_t>(), stream),
                             "MergeEvicted keys");
    KVC_RETURN_IF_ERROR(SortPairs(keys.as<int32_t>(), keys_sorted.as<int32_t>(), vals.as<int32_t>(),
                                  vals_sorted.as<int32_t>(), n_ev, pool, stream));
    KVC_CUDA_RETURN_IF_ERROR(LaunchSegmentBounds(keys_sorted.as<int32_t>(), n_ev,
                                                 start.as<int32_t>(), end.as<int32_t>(), stream),
                             "MergeEvicted bounds");
  }
  KVC_CUDA_RETURN_IF_ERROR(LaunchMergeRows(m, kept.View(1), start.as<int32_t>(), end.as<int32_t>(),
                                           vals_sorted.as<int32_t>(), s, out_k, out_v, stream),
                           "MergeEvicted merge");
  return Status::OK();
}

}  // namespace kvc::cuda
