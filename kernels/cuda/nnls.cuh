// Batched, box-constrained non-negative least squares for Attention Matching's beta (design §4):
// for every head b, w_b = argmin_{lower <= w <= upper} 0.5 ||Phi_b w - z_b||^2, where Phi_b
// (rows x t_b, ragged layout, see ragged.h) holds exp(s_ij - m_i) of the kept keys and z_b the row
// masses sum_j exp(s_ij - m_i) over all keys. beta = log w.
//
// Algorithm (the CPU reference in reference_ops.h runs the same one):
//   L_b = ||Phi^T Phi v_K|| after K = power_iters power iterations v <- Phi^T Phi v / ||.|| from
//         v_0 = ones / sqrt(t_b)  (an estimate of sigma_max(Phi_b)^2 from below);
//   repeat pg_steps times:  w <- clamp(w - (1 / L_b) Phi^T (Phi w - z), lower, upper).
// The starting w is the caller's (NnlsUniformInit, or a clamped least-squares solution).
// NaN is never clamped away: it propagates so that callers' finiteness checks see it.
//
// Stream semantics: queued on `stream`; nothing synchronises.
// Thread safety: stateless.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "common/status.h"
#include "kernels/cuda/memory_pool.h"
#include "kernels/cuda/ragged.h"

namespace kvc::cuda {

struct NnlsOptions {
  int pg_steps = 30;     // projected-gradient steps. Default: 30 (AmOptions::nnls_pg_steps).
  int power_iters = 16;  // power iterations for the step size. Default: 16.
  // Box on w. Default: [e^-3, e^3], design §4's bounds after highest-attention selection
  // (after OMP they are [1e-12, e^7]).
  float lower = 0.049787068f;
  float upper = 20.085537f;
};

// ---- Launchers (no validation). Row vectors are [batch, rows]; column vectors ragged. --------

// out = A x - sub (sub may be null).
cudaError_t LaunchRaggedMatVec(const float* a, const float* x, const float* sub,
                               const RaggedView& v, float* out, cudaStream_t stream);
// partial[t * total + c] = sum_{i in row tile t} A_ic r_i.
cudaError_t LaunchRaggedMatTVecPartial(const float* a, const float* r, const RaggedView& v,
                                       int64_t row_tile, float* partial, cudaStream_t stream);
// w_c = clamp(w_c - step_b * sum_t partial[t * total + c], lower, upper).
cudaError_t LaunchProjectedStep(const float* partial, int64_t tiles, const float* step, float lower,
                                float upper, const RaggedView& v, float* w, cudaStream_t stream);
// g = sum_t partial; norm_b = ||g_b||; x = g / norm_b; inv_norm_b = 1 / norm_b (x and inv_norm
// are 0 when norm_b = 0). norm may be null. One block per segment.
cudaError_t LaunchNormalizeSegments(const float* partial, int64_t tiles, const RaggedView& v,
                                    float* x, float* norm, float* inv_norm, cudaStream_t stream);
// x_c = 1 / sqrt(t_b) for every column c of segment b.
cudaError_t LaunchFillNormalizedOnes(const RaggedView& v, float* x, cudaStream_t stream);
// c_b = <z_b, u_b> / <u_b, u_b> (1 when u_b = 0); w_c = clamp(c_b) over segment b.
cudaError_t LaunchUniformInit(const float* u, const float* z, const RaggedView& v, float lower,
                              float upper, float* w, cudaStream_t stream);
// 0.5 ||r_b||^2 per segment for r [batch, rows].
cudaError_t LaunchHalfSquaredNorm(const float* r, int64_t batch, int64_t rows, float* out,
                                  cudaStream_t stream);

// ---- Validated entry points --------------------------------------------------------------------
// Common REQUIRES (else InvalidArgument): CheckRagged(layout, rows), non-null pointers,
// 0 < lower <= upper, pg_steps >= 0, power_iters >= 1.

// Runs the algorithm above on w (in: start, out: result). `lipschitz` (optional, [batch]) gets
// L_b. Scratch comes from `pool`.
Status NnlsProjectedGradient(const float* phi, const RaggedLayout& layout, int64_t rows,
                             const float* z, const NnlsOptions& options, float* w,
                             DeviceMemoryPool& pool, cudaStream_t stream,
                             float* lipschitz = nullptr);

// The cheap start: w_b = clamp(c_b) * ones with c_b the best uniform scale
// <z_b, Phi_b 1> / ||Phi_b 1||^2.
Status NnlsUniformInit(const float* phi, const RaggedLayout& layout, int64_t rows, const float* z,
                       float lower, float upper, float* w, DeviceMemoryPool& pool,
                       cudaStream_t stream);

// objective[b] = 0.5 ||Phi_b w_b - z_b||^2.
Status NnlsObjective(const float* phi, const RaggedLayout& layout, int64_t rows, const float* z,
                     const float* w, float* objective, DeviceMemoryPool& pool, cudaStream_t stream);

// Elementwise helpers over `count` values: clamp into [lower, upper] in place (NaN kept), and
// beta = log(w).
Status ClampValues(float* w, int64_t count, float lower, float upper, cudaStream_t stream);
Status LogValues(const float* w, int64_t count, float* beta, cudaStream_t stream);

}  // namespace kvc::cuda
