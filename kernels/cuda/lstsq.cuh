// Batched ridge least squares over ragged heads, the solver behind Attention Matching's values
// (C_v = argmin ||X C - Y||^2) and the least-squares start of beta (w = argmin ||Phi w - z||^2).
//
// For every head b with t_b > 0:  C_b = argmin_C ||A_b C - B_b||_F^2 + lambda_b ||C||_F^2
//   A_b: rows x t_b (ragged layout, see ragged.h);  B_b: rows x r, dense [batch, rows, r];
//   C_b: t_b x r, row-major at C + layout.offset(b) * r (heads concatenated, no padding).
//   lambda_b = trace(G_b) * (ridge / t_b + min_relative_ridge / m_b) * 10^retry,
//   with m_b the order of the system solved and trace(G_b) = ||A_b||_F^2 in both forms.
// Form: when rows < t_b the n x n system (A A^T + lambda I) W = B, C = A^T W (design §4: solve
// via X X^T when n < t); otherwise (A^T A + lambda I) C = A^T B. Both give the same C.
// Gram products are f32 SYRK (gemm.h); factor and solve are cholesky.h's. A factorisation that
// fails (round-off on a nearly singular Gram) is rebuilt with lambda x 10, up to max_retries.
//
// Stream semantics: synchronises `stream` once per factorisation round (pivot checks).
// REQUIRES: the handles are bound to `stream` (GpuContext does this).
// Thread safety: as for the handles.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/cuda/memory_pool.h"
#include "kernels/cuda/ragged.h"

namespace kvc::cuda {

struct LstsqOptions {
  // Ridge relative to ||A||_F^2 / t (AmOptions::ridge). Default: 0.
  double ridge = 0.0;
  // Floor relative to the mean diagonal of the Gram matrix, so that f32 Cholesky of a nearly
  // singular Gram stays well defined. Default: 1e-6.
  double min_relative_ridge = 1e-6;
  // Factorisation retries with lambda x 10 each. Default: 4.
  int max_retries = 4;
};

struct LstsqReport {
  std::vector<int> retries;    // per head: extra factorisations needed
  std::vector<bool> row_form;  // per head: true when the rows x rows (A A^T) form was used
};

// ---- Launchers ---------------------------------------------------------------------------------

// Adds lambda = trace(G) * coef to the diagonal of the column-major m x m matrix G (one block).
cudaError_t LaunchAddRidge(float* g, int64_t m, double coef, cudaStream_t stream);
// out (cols x rows, row-major) = in^T for in (rows x cols, row-major).
cudaError_t LaunchTranspose(const float* in, int64_t rows, int64_t cols, float* out,
                            cudaStream_t stream);

// ---- Validated entry point ---------------------------------------------------------------------
// REQUIRES (else InvalidArgument): CheckRagged(layout, rows), 1 <= r <= 65536, ridge >= 0,
// min_relative_ridge >= 0, max_retries >= 0, non-null pointers. Internal (naming the head) when
// a head still fails to factor after the retries. Scratch comes from `pool`.
Status RidgeLeastSquares(cublasHandle_t blas, cusolverDnHandle_t solver, const float* a,
                         const RaggedLayout& layout, int64_t rows, const float* b, int64_t r,
                         const LstsqOptions& options, float* c, DeviceMemoryPool& pool,
                         cudaStream_t stream, LstsqReport* report = nullptr);

}  // namespace kvc::cuda
