// Kernels of OK-DMD on the GPU (design §4; orchestration and the validated entry points are in
// okdmd.h). Every launcher queues one kernel on `stream`, checks nothing beyond what the caller
// of okdmd.cc has validated, and returns the launch error.
//
// Layouts: keys are f32 [batch, rows, d] row-major; the per-head state is f64 and row-major like
// kvc::cpu::OkDmdStream: A and P [batch, d, d], Q and the QR workspace [batch, d, k], the previous
// key [batch, d]. A symmetric matrix is the same in row- and column-major order, which is what
// lets cuBLAS / cuSOLVER (column-major) read G and P directly.
//
// Block-level contracts (one block per head, kOkDmdBlock threads): the QR of the basis refresh is
// Householder with LAPACK's conventions (dgeqr2: beta = -sign(alpha) ||x||, tau = 0 for a zero
// column; Q = H_0 ... H_{k-1} [I; 0] as dorg2r forms it), so a refresh reproduces the CPU basis
// column for column, zero and rank-deficient inputs included.
//
// Thread safety: stateless.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kvc::cuda {

inline constexpr int kOkDmdBlock = 256;
// Largest head_dim the block kernels accept: the streaming kernel keeps four f64 vectors of d
// and the k Householder scalars in dynamic shared memory, (4 d + k) * 8 <= 40 KiB < 48 KiB.
inline constexpr int kOkDmdMaxHeadDim = 1024;

// Trajectory pairs of the prefill fit, in f64 and zero-padded to `padded` rows per head:
//   x[b, i] = k_b[i], y[b, i] = k_b[i + 1] for i < T - 1;  x[b, i] = y[b, i] = 0 otherwise.
// x, y: [batch, padded, d]. REQUIRES: padded >= T - 1.
cudaError_t LaunchOkDmdTrajectoryPairs(const float* keys, int64_t batch, int64_t tokens, int d,
                                       int64_t padded, double* x, double* y, cudaStream_t stream);

// Sums `chunks` partial d x d products per head (deterministic order):
//   g[b] = sum_j part_xx[b * chunks + j] + sigma I,  yx[b] = sum_j part_yx[b * chunks + j].
cudaError_t LaunchOkDmdSumChunks(const double* part_xx, const double* part_yx, int64_t batch,
                                 int64_t chunks, int d, double sigma, double* g, double* yx,
                                 cudaStream_t stream);

// m[b] = value * I (d x d) for every head.
cudaError_t LaunchOkDmdFillIdentity(double* m, int64_t batch, int d, double value,
                                    cudaStream_t stream);

// m[b] <- (m[b] + m[b]^T) / 2, exactly symmetric afterwards.
cudaError_t LaunchOkDmdSymmetrize(double* m, int64_t batch, int d, cudaStream_t stream);

// dst[b] = (double) keys[b, row] for keys [batch, rows, d]; dst [batch, d].
cudaError_t LaunchOkDmdCopyKeyRow(const float* keys, int64_t batch, int64_t rows, int64_t row,
                                  int d, double* dst, cudaStream_t stream);

// `iters` basis refreshes Q <- qr(A Q) per head (the prefill power iteration). work: [batch, d, k].
// REQUIRES: 1 <= k <= d <= kOkDmdMaxHeadDim.
cudaError_t LaunchOkDmdPowerIteration(const double* a, double* q, double* work, int64_t batch,
                                      int d, int k, int iters, cudaStream_t stream);

// The streaming RLS state of `batch` heads, all f64 device arrays (see the layouts above).
struct OkDmdStateView {
  double* a = nullptr;
  double* p = nullptr;
  double* q = nullptr;
  double* prev = nullptr;
  double* work = nullptr;
  int64_t batch = 0;
  int d = 0;
  int k = 0;
};

// RLS updates for keys[b, s], s in [start, steps) of keys [batch, steps, d], one block per head
// walking the steps in order (OkDmdStream::Push; prev must hold k_{t-1}). `updates_before` is the
// number of updates applied before this call: the basis is refreshed after every update whose
// running count is a multiple of refresh_every. REQUIRES: 1 <= k <= d <= kOkDmdMaxHeadDim.
cudaError_t LaunchOkDmdPush(const OkDmdStateView& s, const float* keys, int64_t steps,
                            int64_t start, int64_t updates_before, double lambda, double sigma,
                            int refresh_every, cudaStream_t stream);

// dst[i] = (float) src[i].
cudaError_t LaunchOkDmdToFloat(const double* src, int64_t n, float* dst, cudaStream_t stream);

// out[i] = (float) sum_m (double) proj[i, m]^2 for proj [rows, k] (the survival scores).
cudaError_t LaunchOkDmdRowSquaredNorms(const float* proj, int64_t rows, int k, float* out,
                                       cudaStream_t stream);

}  // namespace kvc::cuda
