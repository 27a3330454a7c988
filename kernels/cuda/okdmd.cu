// OK-DMD kernels (okdmd.cuh): trajectory pairs, chunk sums, the block Householder QR of the basis
// refresh, the power iteration, the streaming RLS update and the survival scores.
#include <algorithm>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/okdmd.cuh"

namespace kvc::cuda {
namespace {

constexpr int kBlock = kOkDmdBlock;
constexpr int kWarps = kBlock / kWarpSize;
constexpr int64_t kMaxGrid = 65535;

// Blocks for a grid-stride loop over n elements. REQUIRES: n >= 1.
unsigned ElementwiseBlocks(int64_t n) {
  return unsigned(std::min<int64_t>(std::max<int64_t>(CeilDiv(n, kBlock), 1), kMaxGrid));
}

__device__ __forceinline__ int64_t GlobalThread() {
  return int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t GridStride() { return int64_t(gridDim.x) * blockDim.x; }

__global__ void __launch_bounds__(kBlock)
    TrajectoryPairsKernel(const float* __restrict__ keys, int64_t batch, int64_t T, int d,
                          int64_t padded, double* __restrict__ x, double* __restrict__ y) {
  const int64_t per_head = padded * d;
  const int64_t n = batch * per_head;
  for (int64_t e = GlobalThread(); e < n; e += GridStride()) {
    const int64_t b = e / per_head;
    const int64_t i = (e % per_head) / d;
    const int64_t c = e % d;
    const bool pair = i + 1 < T;
    x[e] = pair ? double(keys[(b * T + i) * d + c]) : 0.0;
    y[e] = pair ? double(keys[(b * T + i + 1) * d + c]) : 0.0;
  }
}

__global__ void __launch_bounds__(kBlock)
    SumChunksKernel(const double* __restrict__ part_xx, const double* __restrict__ part_yx,
                    int64_t batch, int64_t chunks, int d, double sigma, double* __restrict__ g,
                    double* __restrict__ yx) {
  const int64_t dd = int64_t(d) * d;
  for (int64_t e = GlobalThread(); e < batch * dd; e += GridStride()) {
    const int64_t b = e / dd;
    const int64_t rc = e % dd;
    double sxx = 0.0, syx = 0.0;
    for (int64_t j = 0; j < chunks; ++j) {
      sxx += part_xx[(b * chunks + j) * dd + rc];
      syx += part_yx[(b * chunks + j) * dd + rc];
    }
    g[e] = rc / d == rc % d ? sxx + sigma : sxx;
    yx[e] = syx;
  }
}

__global__ void __launch_bounds__(kBlock)
    FillIdentityKernel(double* __restrict__ m, int64_t batch, int d, double value) {
  const int64_t dd = int64_t(d) * d;
  for (int64_t e = GlobalThread(); e < batch * dd; e += GridStride()) {
    const int64_t rc = e % dd;
    m[e] = rc / d == rc % d ? value : 0.0;
  }
}

// Each unordered pair {r, c} is read and written by the one thread that owns (r <= c).
__global__ void __launch_bounds__(kBlock)
    SymmetrizeKernel(double* __restrict__ m, int64_t batch, int d) {
  const int64_t dd = int64_t(d) * d;
  for (int64_t e = GlobalThread(); e < batch * dd; e += GridStride()) {
    const int64_t b = e / dd;
    const int64_t r = (e % dd) / d;
    const int64_t c = e % d;
    if (r > c) continue;
    double* mb = m + b * dd;
    const double v = 0.5 * (mb[r * d + c] + mb[c * d + r]);
    mb[r * d + c] = v;
    mb[c * d + r] = v;
  }
}

__global__ void __launch_bounds__(kBlock)
    CopyKeyRowKernel(const float* __restrict__ keys, int64_t batch, int64_t rows, int64_t row,
                     int d, double* __restrict__ dst) {
  for (int64_t e = GlobalThread(); e < batch * d; e += GridStride()) {
    const int64_t b = e / d;
    dst[e] = double(keys[(b * rows + row) * d + e % d]);
  }
}

// ---- Block-level linear algebra (one block of kBlock threads per head) -------------------------

// Applies H = I - tau v v^T to columns [c0, k) of m (rows x k, row-major) restricted to rows
// [j, rows), with v_j = 1 and v_r = w[r * k + j] below (w may alias m). One warp per column.
// REQUIRES: called by every thread of the block; tau uniform across it.
__device__ void ApplyReflector(const double* w, double* m, int rows, int k, int j, int c0,
                               double tau) {
  const int lane = threadIdx.x % kWarpSize;
  for (int c = c0 + int(threadIdx.x / kWarpSize); c < k; c += kWarps) {
    double dot = 0.0;
    for (int r = j + lane; r < rows; r += kWarpSize) {
      dot += (r == j ? 1.0 : w[r * k + j]) * m[r * k + c];
    }
    dot = WarpSum(dot);
    for (int r = j + lane; r < rows; r += kWarpSize) {
      m[r * k + c] -= tau * (r == j ? 1.0 : w[r * k + j]) * dot;
    }
  }
}

// Column j of dgeqr2 (dlarfg): run by warp 0 only. Leaves v below the diagonal, beta on it and
// tau in s_tau[j].
__device__ void HouseholderColumn(double* w, int d, int k, int j, double* s_tau) {
  const int lane = threadIdx.x % kWarpSize;
  const double alpha = w[j * k + j];
  double ss = 0.0;
  for (int r = j + 1 + lane; r < d; r += kWarpSize) ss += w[r * k + j] * w[r * k + j];
  ss = WarpSum(ss);  // bitwise identical in every lane (xor butterfly, commutative adds)
  double tau = 0.0, beta = alpha;
  if (ss > 0.0) {
    beta = -copysign(sqrt(alpha * alpha + ss), alpha);
    tau = (beta - alpha) / beta;
    const double scale = 1.0 / (alpha - beta);
    for (int r = j + 1 + lane; r < d; r += kWarpSize) w[r * k + j] *= scale;
  }
  __syncwarp();  // every lane has read alpha before lane 0 overwrites it
  if (lane == 0) {
    w[j * k + j] = beta;
    s_tau[j] = tau;
  }
}

// q (d x k) <- the Q factor of the thin Householder QR of w (d x k; destroyed). s_tau: shared [k].
// REQUIRES: 1 <= k <= d, every thread of the block calls it. Ends with __syncthreads.
__device__ void BlockHouseholderQ(double* w, int d, int k, double* q, double* s_tau) {
  for (int j = 0; j < k; ++j) {
    if (threadIdx.x < kWarpSize) HouseholderColumn(w, d, k, j, s_tau);
    __syncthreads();
    const double tau = s_tau[j];
    if (tau != 0.0) ApplyReflector(w, w, d, k, j, j + 1, tau);
    __syncthreads();
  }
  for (int e = threadIdx.x; e < d * k; e += kBlock) q[e] = e / k == e % k ? 1.0 : 0.0;
  __syncthreads();
  for (int j = k - 1; j >= 0; --j) {  // Q = H_0 (H_1 (... H_{k-1} [I; 0]))
    const double tau = s_tau[j];
    if (tau != 0.0) ApplyReflector(w, q, d, k, j, j, tau);
    __syncthreads();
  }
}

// q <- qr(a q) with w (d x k) as workspace. Same REQUIRES as BlockHouseholderQ.
__device__ void BlockRefreshBasis(const double* a, double* q, double* w, int d, int k,
                                  double* s_tau) {
  for (int e = threadIdx.x; e < d * k; e += kBlock) {
    const int r = e / k, c = e % k;
    double acc = 0.0;
    for (int x = 0; x < d; ++x) acc += a[r * d + x] * q[x * k + c];
    w[e] = acc;
  }
  __syncthreads();
  BlockHouseholderQ(w, d, k, q, s_tau);
}

__global__ void __launch_bounds__(kBlock)
    PowerIterationKernel(const double* __restrict__ a, double* q, double* w, int d, int k,
                         int iters) {
  extern __shared__ double s_tau[];  // [k]
  const int64_t b = blockIdx.x;
  const int64_t dd = int64_t(d) * d, dk = int64_t(d) * k;
  for (int it = 0; it < iters; ++it)
    BlockRefreshBasis(a + b * dd, q + b * dk, w + b * dk, d, k, s_tau);
}

// u = P kp and e = kt - A kp, one warp per row.
__device__ void RlsProducts(const double* p, const double* a, const double* kp, const double* kt,
                            int d, double* u, double* e) {
  const int lane = threadIdx.x % kWarpSize;
  for (int r = int(threadIdx.x / kWarpSize); r < d; r += kWarps) {
    double pu = 0.0, ak = 0.0;
    for (int c = lane; c < d; c += kWarpSize) {
      pu += p[r * d + c] * kp[c];
      ak += a[r * d + c] * kp[c];
    }
    pu = WarpSum(pu);
    ak = WarpSum(ak);
    if (lane == 0) {
      u[r] = pu;
      e[r] = kt[r] - ak;
    }
  }
}

// P <- sym((P - g u^T) / lambda) + sigma I and A <- A + e g^T with g = u / denom. The pair
// {r, c} of P is owned by the thread with r <= c (reads both, writes both).
__device__ void RlsUpdate(double* p, double* a, const double* u, const double* e, double denom,
                          double lambda, double sigma, int d) {
  for (int idx = threadIdx.x; idx < d * d; idx += kBlock) {
    const int r = idx / d, c = idx % d;
    const double gr = u[r] / denom, gc = u[c] / denom;
    a[idx] += e[r] * gc;
    if (r > c) continue;
    double v = 0.5 * ((p[r * d + c] - gr * u[c]) + (p[c * d + r] - gc * u[r])) / lambda;
    if (r == c) v += sigma;
    p[r * d + c] = v;
    p[c * d + r] = v;
  }
}

__global__ void __launch_bounds__(kBlock)
    PushKernel(OkDmdStateView s, const float* __restrict__ keys, int64_t steps, int64_t start,
               int64_t updates_before, double lambda, double sigma, int refresh_every) {
  extern __shared__ double smem[];  // kp[d], kt[d], u[d], e[d], tau[k]
  const int d = s.d, k = s.k;
  const int64_t b = blockIdx.x;
  const int64_t dd = int64_t(d) * d, dk = int64_t(d) * k;
  double* kp = smem;
  double* kt = smem + d;
  double* u = smem + 2 * d;
  double* e = smem + 3 * d;
  double* tau = smem + 4 * d;
  double* a = s.a + b * dd;
  double* p = s.p + b * dd;
  for (int x = threadIdx.x; x < d; x += kBlock) kp[x] = s.prev[b * d + x];
  int64_t done = updates_before;
  for (int64_t t = start; t < steps; ++t) {
    const float* key = keys + (b * steps + t) * d;
    for (int x = threadIdx.x; x < d; x += kBlock) kt[x] = double(key[x]);
    __syncthreads();
    RlsProducts(p, a, kp, kt, d, u, e);
    __syncthreads();
    double part = 0.0;
    for (int x = threadIdx.x; x < d; x += kBlock) part += kp[x] * u[x];
    const double denom = lambda + BlockSum<kBlock>(part) + 1e-6;
    RlsUpdate(p, a, u, e, denom, lambda, sigma, d);
    __syncthreads();
    double* swap = kp;  // k_t becomes k_{t-1}; the old buffer is refilled next step
    kp = kt;
    kt = swap;
    if (++done % refresh_every == 0) BlockRefreshBasis(a, s.q + b * dk, s.work + b * dk, d, k, tau);
  }
  for (int x = threadIdx.x; x < d; x += kBlock) s.prev[b * d + x] = kp[x];
}

__global__ void __launch_bounds__(kBlock)
    ToFloatKernel(const double* __restrict__ src, int64_t n, float* __restrict__ dst) {
  for (int64_t i = GlobalThread(); i < n; i += GridStride()) dst[i] = float(src[i]);
}

__global__ void __launch_bounds__(kBlock)
    RowSquaredNormsKernel(const float* __restrict__ proj, int64_t rows, int k,
                          float* __restrict__ out) {
  for (int64_t i = GlobalThread(); i < rows; i += GridStride()) {
    double acc = 0.0;
    for (int m = 0; m < k; ++m) {
      const double v = proj[i * k + m];
      acc += v * v;
    }
    out[i] = float(acc);
  }
}

}  // namespace

cudaError_t LaunchOkDmdTrajectoryPairs(const float* keys, int64_t batch, int64_t tokens, int d,
                                       int64_t padded, double* x, double* y, cudaStream_t stream) {
  const int64_t n = batch * padded * d;
  if (n == 0) return cudaSuccess;
  TrajectoryPairsKernel<<<ElementwiseBlocks(n), kBlock, 0, stream>>>(keys, batch, tokens, d, padded,
                                                                     x, y);
  return cudaGetLastError();
}

cudaError_t LaunchOkDmdSumChunks(const double* part_xx, const double* part_yx, int64_t batch,
                                 int64_t chunks, int d, double sigma, double* g, double* yx,
                                 cudaStream_t stream) {
  const int64_t n = batch * d * d;
  if (n == 0) return cudaSuccess;
  SumChunksKernel<<<ElementwiseBlocks(n), kBlock, 0, stream>>>(part_xx, part_yx, batch, chunks, d,
                                                               sigma, g, yx);
  return cudaGetLastError();
}

cudaError_t LaunchOkDmdFillIdentity(double* m, int64_t batch, int d, double value,
                                    cudaStream_t stream) {
  const int64_t n = batch * d * d;
  if (n == 0) return cudaSuccess;
  FillIdentityKernel<<<ElementwiseBlocks(n), kBlock, 0, stream>>>(m, batch, d, value);
  return cudaGetLastError();
}

cudaError_t LaunchOkDmdSymmetrize(double* m, int64_t batch, int d, cudaStream_t stream) {
  const int64_t n = batch * d * d;
  if (n == 0) return cudaSuccess;
  SymmetrizeKernel<<<ElementwiseBlocks(n), kBlock, 0, stream>>>(m, batch, d);
  return cudaGetLastError();
}

cudaError_t LaunchOkDmdCopyKeyRow(const float* keys, int64_t batch, int64_t rows, int64_t row,
                                  int d, double* dst, cudaStream_t stream) {
  const int64_t n = batch * d;
  if (n == 0) return cudaSuccess;
  CopyKeyRowKernel<<<ElementwiseBlocks(n), kBlock, 0, stream>>>(keys, batch, rows, row, d, dst);
  return cudaGetLastError();
}

cudaError_t LaunchOkDmdPowerIteration(const double* a, double* q, double* work, int64_t batch,
                                      int d, int k, int iters, cudaStream_t stream) {
  if (batch == 0 || iters == 0) return cudaSuccess;
  const size_t shared = size_t(k) * sizeof(double);
  PowerIterationKernel<<<unsigned(batch), kBlock, shared, stream>>>(a, q, work, d, k, iters);
  return cudaGetLastError();
}

cudaError_t LaunchOkDmdPush(const OkDmdStateView& s, const float* keys, int64_t steps,
                            int64_t start, int64_t updates_before, double lambda, double sigma,
                            int refresh_every, cudaStream_t stream) {
  if (s.batch == 0 || start >= steps) return cudaSuccess;
  const size_t shared = size_t(4 * s.d + s.k) * sizeof(double);
  PushKernel<<<unsigned(s.batch), kBlock, shared, stream>>>(s, keys, steps, start, updates_before,
                                                            lambda, sigma, refresh_every);
  return cudaGetLastError();
}

cudaError_t LaunchOkDmdToFloat(const double* src, int64_t n, float* dst, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  ToFloatKernel<<<ElementwiseBlocks(n), kBlock, 0, stream>>>(src, n, dst);
  return cudaGetLastError();
}

cudaError_t LaunchOkDmdRowSquaredNorms(const float* proj, int64_t rows, int k, float* out,
                                       cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  RowSquaredNormsKernel<<<ElementwiseBlocks(rows), kBlock, 0, stream>>>(proj, rows, k, out);
  return cudaGetLastError();
}

}  // namespace kvc::cuda
