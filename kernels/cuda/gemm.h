// Row-major f32 matrix products on cuBLAS: strided-batched GEMM (scores S = Q K^T / sqrt(d),
// attention outputs P V, per-head products) and the Gram matrices of the least-squares solves.
//
// Every matrix here is row-major with a leading dimension (elements per stored row); the wrappers
// map onto cuBLAS's column-major interface. Math: MathMode::kF32 is pure f32 (CUBLAS_COMPUTE_32F);
// kTf32 lets cuBLAS use TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32: inputs rounded to 10
// mantissa bits, f32 accumulation). The mode is chosen per call through the compute type, so the
// handle's math mode is never changed. Gram matrices (SYRK) always run in f32: TF32 rounding of a
// Gram matrix ruins the Cholesky solves that follow.
//
// Stream semantics: work is queued on the handle's stream; nothing synchronises.
// Thread safety: as for the cuBLAS handle (one thread at a time per handle).
#pragma once

#include <cublas_v2.h>

#include <cstdint>

#include "common/status.h"

namespace kvc::cuda {

enum class MathMode : uint8_t {
  kF32 = 0,   // IEEE f32 products
  kTf32 = 1,  // TF32 tensor cores, f32 accumulation
};
const char* MathModeName(MathMode m);

enum class Op : uint8_t { kN = 0, kT = 1 };

// C[m, n] = alpha * op(A) op(B) + beta * C, for `batch` triples at fixed element strides.
// Stored shapes: A is m x k (op_a = kN) or k x m (kT); B is k x n (kN) or n x k (kT); C is m x n.
struct GemmShape {
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  Op op_a = Op::kN;
  Op op_b = Op::kN;
  int64_t lda = 0;  // >= stored columns of A
  int64_t ldb = 0;  // >= stored columns of B
  int64_t ldc = 0;  // >= n
  int64_t stride_a = 0;
  int64_t stride_b = 0;
  int64_t stride_c = 0;
  int64_t batch = 1;
};

// Launcher: no validation beyond what cuBLAS does.
cublasStatus_t LaunchGemm(cublasHandle_t handle, const GemmShape& s, float alpha, const float* a,
                          const float* b, float beta, float* c, MathMode mode);

// Validated entry point. REQUIRES (else InvalidArgument): m, n, k >= 1 and <= INT32_MAX,
// batch >= 1, leading dimensions as above, strides >= 0, non-null pointers.
Status Gemm(cublasHandle_t handle, const GemmShape& s, float alpha, const float* a, const float* b,
            float beta, float* c, MathMode mode);

// Scores of `batch` heads: S[b] (n x T) = scale * Q[b] (n x d) K[b]^T, with Q [batch, n, d],
// K [batch, T, d], S [batch, n, T], all dense. REQUIRES: positive sizes, non-null pointers.
Status AttentionScores(cublasHandle_t handle, const float* q, const float* k, float* s,
                       int64_t batch, int64_t n, int64_t T, int64_t d, float scale, MathMode mode);

// Outputs of `batch` heads: Y[b] (n x d) = P[b] (n x T) V[b] (T x d), dense [batch, ...] arrays.
Status AttentionOutputs(cublasHandle_t handle, const float* p, const float* v, float* y,
                        int64_t batch, int64_t n, int64_t T, int64_t d, MathMode mode);

// Gram matrix of one row-major A (rows x cols, leading dimension lda), in f32:
//   outer = true:  G = A A^T (rows x rows);  outer = false: G = A^T A (cols x cols).
// G is written to the lower triangle in cuBLAS's column-major sense (ldg >= order); the strict
// upper triangle is left untouched. This is the triangle cuSOLVER reads with
// CUBLAS_FILL_MODE_LOWER. REQUIRES: rows, cols >= 1, lda >= cols, non-null pointers.
Status Gram(cublasHandle_t handle, const float* a, int64_t rows, int64_t cols, int64_t lda,
            bool outer, float* g, int64_t ldg);

}  // namespace kvc::cuda
