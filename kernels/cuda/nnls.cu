#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/nnls.cuh"

namespace kvc::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kWarpsPerBlock = kBlock / kWarpSize;
constexpr int64_t kMaxTiles = 64;

__device__ __forceinline__ float ClampKeepNan(float x, float lo, float hi) {
  return isnan(x) ? x : fminf(fmaxf(x, lo), hi);
}

// One warp per row i of matrix b.
__global__ void __launch_bounds__(kBlock)
    RaggedMatVecKernel(const float* __restrict__ a, const float* __restrict__ x,
                       const float* __restrict__ sub, RaggedView v, float* __restrict__ out) {
  const int64_t b = blockIdx.y;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t i = int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
  if (i >= v.rows) return;  // uniform per warp: the shuffles below see full warps
  const int64_t off = v.offsets[b];
  const int64_t cols = v.offsets[b + 1] - off;
  const float* row = a + v.rows * off + i * cols;
  const float* xs = x + off;
  float acc = 0.f;
  for (int64_t j = lane; j < cols; j += kWarpSize) acc += row[j] * xs[j];
  acc = WarpSum(acc);
  if (lane == 0) out[b * v.rows + i] = acc - (sub != nullptr ? sub[b * v.rows + i] : 0.f);
}

// Grid (column chunk, row tile, matrix); one thread per column, walking the tile's rows.
__global__ void __launch_bounds__(kBlock)
    RaggedMatTVecPartialKernel(const float* __restrict__ a, const float* __restrict__ r,
                               RaggedView v, int64_t row_tile, float* __restrict__ partial) {
  const int64_t b = blockIdx.z;
  const int64_t off = v.offsets[b];
  const int64_t cols = v.offsets[b + 1] - off;
  const int64_t j = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (j >= cols) return;
  const int64_t i0 = int64_t(blockIdx.y) * row_tile;
  const int64_t i1 = i0 + row_tile < v.rows ? i0 + row_tile : v.rows;
  const float* base = a + v.rows * off;
  const float* rb = r + b * v.rows;
  float acc = 0.f;
  for (int64_t i = i0; i < i1; ++i) acc += base[i * cols + j] * rb[i];
  partial[int64_t(blockIdx.y) * v.total_cols + off + j] = acc;
}

__global__ void __launch_bounds__(kBlock)
    ProjectedStepKernel(const float* __restrict__ partial, int64_t tiles,
                        const float* __restrict__ step, float lower, float upper, RaggedView v,
                        float* __restrict__ w) {
  const int64_t b = blockIdx.y;
  const int64_t off = v.offsets[b];
  const int64_t j = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (j >= v.offsets[b + 1] - off) return;
  const int64_t c = off + j;
  float g = 0.f;
  for (int64_t t = 0; t < tiles; ++t) g += partial[t * v.total_cols + c];
  w[c] = ClampKeepNan(w[c] - step[b] * g, lower, upper);
}

// One block per segment: x = g / ||g|| with g the tile sums.
__global__ void __launch_bounds__(kBlock)
    NormalizeSegmentsKernel(const float* __restrict__ partial, int64_t tiles, RaggedView v,
                            float* __restrict__ x, float* __restrict__ norm_out,
                            float* __restrict__ inv_norm_out) {
  const int64_t b = blockIdx.x;
  const int64_t off = v.offsets[b];
  const int64_t cols = v.offsets[b + 1] - off;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += kBlock) {
    float g = 0.f;
    for (int64_t t = 0; t < tiles; ++t) g += partial[t * v.total_cols + off + j];
    x[off + j] = g;
    ss += g * g;
  }
  ss = BlockSum<kBlock>(ss);
  const float norm = sqrtf(ss);
  const float inv = norm > 0.f ? 1.f / norm : 0.f;
  for (int64_t j = threadIdx.x; j < cols; j += kBlock) x[off + j] *= inv;  // own writes only
  if (threadIdx.x == 0) {
    if (norm_out != nullptr) norm_out[b] = norm;
    inv_norm_out[b] = inv;
  }
}

__global__ void FillNormalizedOnesKernel(RaggedView v, float* __restrict__ x) {
  const int64_t b = blockIdx.y;
  const int64_t off = v.offsets[b];
  const int64_t cols = v.offsets[b + 1] - off;
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j < cols) x[off + j] = rsqrtf(float(cols));
}

__global__ void FillKernel(float* __restrict__ x, int64_t count, float value) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) x[i] = value;
}

// One block per segment.
__global__ void __launch_bounds__(kBlock)
    UniformInitKernel(const float* __restrict__ u, const float* __restrict__ z, RaggedView v,
                      float lower, float upper, float* __restrict__ w) {
  const int64_t b = blockIdx.x;
  float zu = 0.f, uu = 0.f;
  for (int64_t i = threadIdx.x; i < v.rows; i += kBlock) {
    const float ui = u[b * v.rows + i];
    zu += z[b * v.rows + i] * ui;
    uu += ui * ui;
  }
  zu = BlockSum<kBlock>(zu);
  uu = BlockSum<kBlock>(uu);
  const float c = ClampKeepNan(uu > 0.f ? zu / uu : 1.f, lower, upper);
  const int64_t off = v.offsets[b];
  const int64_t cols = v.offsets[b + 1] - off;
  for (int64_t j = threadIdx.x; j < cols; j += kBlock) w[off + j] = c;
}

__global__ void __launch_bounds__(kBlock)
    HalfSquaredNormKernel(const float* __restrict__ r, int64_t rows, float* __restrict__ out) {
  const int64_t b = blockIdx.x;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < rows; i += kBlock) {
    const float x = r[b * rows + i];
    ss += x * x;
  }
  ss = BlockSum<kBlock>(ss);
  if (threadIdx.x == 0) out[b] = 0.5f * ss;
}

__global__ void ClampKernel(float* __restrict__ w, int64_t count, float lower, float upper) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) w[i] = ClampKeepNan(w[i], lower, upper);
}

__global__ void LogKernel(const float* __restrict__ w, int64_t count, float* __restrict__ beta) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) beta[i] = logf(w[i]);
}

int64_t TileRows(int64_t rows) { return std::max<int64_t>(1, CeilDiv(rows, kMaxTiles)); }

Status CheckNnlsArgs(const RaggedLayout& layout, int64_t rows, const void* phi, const void* z,
                     const void* w, const char* op) {
  KVC_RETURN_IF_ERROR(CheckRagged(layout, rows, op));
  if ((phi == nullptr && layout.total() > 0) || z == nullptr || w == nullptr) {
    return Status::InvalidArgument(std::string(op) + ": null pointer");
  }
  return Status::OK();
}

}  // namespace

// ---- Launchers ---------------------------------------------------------------------------------

cudaError_t LaunchRaggedMatVec(const float* a, const float* x, const float* sub,
                               const RaggedView& v, float* out, cudaStream_t stream) {
  const dim3 grid(unsigned(CeilDiv(v.rows, kWarpsPerBlock)), unsigned(v.batch));
  RaggedMatVecKernel<<<grid, kBlock, 0, stream>>>(a, x, sub, v, out);
  return cudaGetLastError();
}

cudaError_t LaunchRaggedMatTVecPartial(const float* a, const float* r, const RaggedView& v,
                                       int64_t row_tile, float* partial, cudaStream_t stream) {
  if (v.max_cols == 0) return cudaSuccess;
  const dim3 grid(unsigned(CeilDiv(v.max_cols, kBlock)), unsigned(CeilDiv(v.rows, row_tile)),
                  unsigned(v.batch));
  RaggedMatTVecPartialKernel<<<grid, kBlock, 0, stream>>>(a, r, v, row_tile, partial);
  return cudaGetLastError();
}

cudaError_t LaunchProjectedStep(const float* partial, int64_t tiles, const float* step, float lower,
                                float upper, const RaggedView& v, float* w, cudaStream_t stream) {
  if (v.max_cols == 0) return cudaSuccess;
  const dim3 grid(unsigned(CeilDiv(v.max_cols, kBlock)), unsigned(v.batch));
  ProjectedStepKernel<<<grid, kBlock, 0, stream>>>(partial, tiles, step, lower, upper, v, w);
  return cudaGetLastError();
}

cudaError_t LaunchNormalizeSegments(const float* partial, int64_t tiles, const RaggedView& v,
                                    float* x, float* norm, float* inv_norm, cudaStream_t stream) {
  NormalizeSegmentsKernel<<<unsigned(v.batch), kBlock, 0, stream>>>(partial, tiles, v, x, norm,
                                                                    inv_norm);
  return cudaGetLastError();
}

cudaError_t LaunchFillNormalizedOnes(const RaggedView& v, float* x, cudaStream_t stream) {
  if (v.max_cols == 0) return cudaSuccess;
  const dim3 grid(unsigned(CeilDiv(v.max_cols, kBlock)), unsigned(v.batch));
  FillNormalizedOnesKernel<<<grid, kBlock, 0, stream>>>(v, x);
  return cudaGetLastError();
}

cudaError_t LaunchUniformInit(const float* u, const float* z, const RaggedView& v, float lower,
                              float upper, float* w, cudaStream_t stream) {
  UniformInitKernel<<<unsigned(v.batch), kBlock, 0, stream>>>(u, z, v, lower, upper, w);
  return cudaGetLastError();
}

cudaError_t LaunchHalfSquaredNorm(const float* r, int64_t batch, int64_t rows, float* out,
                                  cudaStream_t stream) {
  HalfSquaredNormKernel<<<unsigned(batch), kBlock, 0, stream>>>(r, rows, out);
  return cudaGetLastError();
}

// ---- Entry points ------------------------------------------------------------------------------

Status NnlsProjectedGradient(const float* phi, const RaggedLayout& layout, int64_t rows,
                             const float* z, const NnlsOptions& o, float* w, DeviceMemoryPool& pool,
                             cudaStream_t stream, float* lipschitz) {
  KVC_RETURN_IF_ERROR(CheckNnlsArgs(layout, rows, phi, z, w, "NnlsProjectedGradient"));
  if (!(o.lower > 0.f && o.lower <= o.upper) || o.pg_steps < 0 || o.power_iters < 1) {
    return Status::InvalidArgument("NnlsProjectedGradient: bad options");
  }
  const RaggedView v = layout.View(rows);
  const int64_t tile = TileRows(rows);
  const int64_t tiles = CeilDiv(rows, tile);
  const int64_t batch = layout.batch();
  KVC_ASSIGN_OR_RETURN(DeviceBuffer u, pool.AllocateArray<float>(size_t(batch * rows)));
  KVC_ASSIGN_OR_RETURN(
      DeviceBuffer partial,
      pool.AllocateArray<float>(size_t(std::max<int64_t>(1, tiles * v.total_cols))));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer x,
                       pool.AllocateArray<float>(size_t(std::max<int64_t>(1, v.total_cols))));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer step, pool.AllocateArray<float>(size_t(batch)));
  float* pu = u.as<float>();
  float* pp = partial.as<float>();
  float* px = x.as<float>();
  float* ps = step.as<float>();
  KVC_CUDA_RETURN_IF_ERROR(LaunchFillNormalizedOnes(v, px, stream), "Nnls: start vector");
  for (int k = 0; k < o.power_iters; ++k) {
    KVC_CUDA_RETURN_IF_ERROR(LaunchRaggedMatVec(phi, px, nullptr, v, pu, stream), "Nnls: Phi v");
    KVC_CUDA_RETURN_IF_ERROR(LaunchRaggedMatTVecPartial(phi, pu, v, tile, pp, stream),
                             "Nnls: Phi^T u");
    KVC_CUDA_RETURN_IF_ERROR(LaunchNormalizeSegments(pp, tiles, v, px, lipschitz, ps, stream),
                             "Nnls: normalise");
  }
  for (int s = 0; s < o.pg_steps; ++s) {
    KVC_CUDA_RETURN_IF_ERROR(LaunchRaggedMatVec(phi, w, z, v, pu, stream), "Nnls: residual");
    KVC_CUDA_RETURN_IF_ERROR(LaunchRaggedMatTVecPartial(phi, pu, v, tile, pp, stream),
                             "Nnls: gradient");
    KVC_CUDA_RETURN_IF_ERROR(LaunchProjectedStep(pp, tiles, ps, o.lower, o.upper, v, w, stream),
                             "Nnls: projected step");
  }
  return Status::OK();
}

Status NnlsUniformInit(const float* phi, const RaggedLayout& layout, int64_t rows, const float* z,
                       float lower, float upper, float* w, DeviceMemoryPool& pool,
                       cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckNnlsArgs(layout, rows, phi, z, w, "NnlsUniformInit"));
  if (!(lower > 0.f && lower <= upper)) {
    return Status::InvalidArgument("NnlsUniformInit: need 0 < lower <= upper");
  }
  const RaggedView v = layout.View(rows);
  const int64_t total = std::max<int64_t>(1, v.total_cols);
  KVC_ASSIGN_OR_RETURN(DeviceBuffer ones, pool.AllocateArray<float>(size_t(total)));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer u, pool.AllocateArray<float>(size_t(layout.batch() * rows)));
  FillKernel<<<unsigned(CeilDiv(total, kBlock)), kBlock, 0, stream>>>(ones.as<float>(), total, 1.f);
  KVC_RETURN_IF_ERROR(LastLaunchError("NnlsUniformInit: fill"));
  KVC_CUDA_RETURN_IF_ERROR(
      LaunchRaggedMatVec(phi, ones.as<float>(), nullptr, v, u.as<float>(), stream),
      "NnlsUniformInit: Phi 1");
  return FromCuda(LaunchUniformInit(u.as<float>(), z, v, lower, upper, w, stream),
                  "NnlsUniformInit");
}

Status NnlsObjective(const float* phi, const RaggedLayout& layout, int64_t rows, const float* z,
                     const float* w, float* objective, DeviceMemoryPool& pool,
                     cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckNnlsArgs(layout, rows, phi, z, w, "NnlsObjective"));
  if (objective == nullptr) return Status::InvalidArgument("NnlsObjective: null objective");
  const RaggedView v = layout.View(rows);
  KVC_ASSIGN_OR_RETURN(DeviceBuffer r, pool.AllocateArray<float>(size_t(layout.batch() * rows)));
  KVC_CUDA_RETURN_IF_ERROR(LaunchRaggedMatVec(phi, w, z, v, r.as<float>(), stream),
                           "NnlsObjective: residual");
  return FromCuda(LaunchHalfSquaredNorm(r.as<float>(), layout.batch(), rows, objective, stream),
                  "NnlsObjective: norm");
}

Status ClampValues(float* w, int64_t count, float lower, float upper, cudaStream_t stream) {
  if (count < 0 || (count > 0 && w == nullptr) || !(lower <= upper)) {
    return Status::InvalidArgument("ClampValues: bad arguments");
  }
  if (count == 0) return Status::OK();
  ClampKernel<<<unsigned(CeilDiv(count, kBlock)), kBlock, 0, stream>>>(w, count, lower, upper);
  return LastLaunchError("ClampValues");
}

Status LogValues(const float* w, int64_t count, float* beta, cudaStream_t stream) {
  if (count < 0 || (count > 0 && (w == nullptr || beta == nullptr))) {
    return Status::InvalidArgument("LogValues: bad arguments");
  }
  if (count == 0) return Status::OK();
  LogKernel<<<unsigned(CeilDiv(count, kBlock)), kBlock, 0, stream>>>(w, count, beta);
  return LastLaunchError("LogValues");
}

}  // namespace kvc::cuda
