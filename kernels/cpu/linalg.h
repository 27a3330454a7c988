// Dense linear algebra for the CPU reference kernels: thin wrappers over OpenBLAS (cblas) and
// LAPACKE, plus the few composite solvers Attention Matching and the fidelity metrics need.
//
// Conventions: every matrix is row-major float with an explicit leading dimension (elements
// between consecutive rows). All products run in f32 (sgemm / sgemv / ssyrk); factorizations of
// normal equations run in double on f32-formed Gram matrices. Nothing here allocates more than
// O(rows * cols) of its inputs.
//
// Thread safety: every function is reentrant; concurrent calls on disjoint outputs are safe.
// BLAS threading is process-global (see ScopedBlasThreads).
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace kvc::cpu {

// ---- BLAS level 2/3 --------------------------------------------------------------------------

// C (m x n) = alpha * op(A) * op(B) + beta * C, where op(A) is m x k and op(B) is k x n.
// op(X) = X^T when the corresponding trans flag is set.
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// y = alpha * op(A) x + beta * y, A is m x n (op(A) = A^T when trans).
void Gemv(bool trans, int64_t m, int64_t n, float alpha, const float* a, int64_t lda,
          const float* x, float beta, float* y);

// out (n) = A^T (A x - z) for A (m x n) (z null: out = A^T A x) in one pass over A: each row's
// residual and its contribution are formed while the row is in cache.
void NormalMatvec(const float* a, int64_t m, int64_t n, const float* x, const float* z, float* out);

// y = A x for the top-left n x n block of a symmetric double matrix (leading dimension lda);
// reads the lower triangle only.
void SymvD(int64_t n, const double* a, int64_t lda, const double* x, double* y);

// Solves L x = b (trans = false) or L^T x = b (trans = true) in place; L is the lower triangle of
// the top-left n x n block of a double matrix with leading dimension lda.
void TriangularSolveLower(bool trans, int64_t n, const double* l, int64_t lda, double* x);

// G (n x n, full symmetric, double) = A^T A for A (m x n); f32 product (ssyrk), widened.
std::vector<double> GramCols(const float* a, int64_t m, int64_t n, int64_t lda);
// H (m x m, full symmetric, double) = A A^T for A (m x n); f32 product (ssyrk), widened.
std::vector<double> GramRows(const float* a, int64_t m, int64_t n, int64_t lda);

// ---- Softmax ---------------------------------------------------------------------------------

// x[i] <- exp(x[i]) for n floats (max relative error about 2 ulp; inputs below -87.3 give 0).
void ExpInPlace(float* x, int64_t n);

// acc[j] += (x[j] * scale)^2 for j < n (f32 products, double accumulation).
void AccumulateScaledSquares(const float* x, int64_t n, float scale, double* acc);

// For each row r of x (rows x cols, leading dimension ld): x[r, :] <- exp(x[r, :] - max_r) and
// returns max_r in row_max[r] and the sum of the shifted exponentials (accumulated in double) in
// row_sum[r] (>= 1 when cols > 0). Either output may be null.
void ExpShiftRows(float* x, int64_t rows, int64_t cols, int64_t ld, float* row_max,
                  double* row_sum);

// Numerically stable row softmax in place; lse[r] (optional) receives log(sum_j exp(x[r, j])).
// A row of -inf only (or cols == 0) becomes zeros with lse = -inf.
void SoftmaxRows(float* x, int64_t rows, int64_t cols, int64_t ld, double* lse);

// ---- Solvers ---------------------------------------------------------------------------------

// Which path LeastSquares took.
enum class LsPath : uint8_t {
  kQr = 0,       // Householder QR (sgels): m >= n, lambda == 0, well conditioned
  kNormal = 1,   // Cholesky on A^T A + lambda I (double); also the QR fallback
  kMinNorm = 2,  // m < n: X = A^T (A A^T + lambda I)^{-1} B, Cholesky in double
};
struct LsInfo {
  LsPath path = LsPath::kQr;
  double jitter = 0.0;  // diagonal added beyond lambda to make the Cholesky succeed
};

// X (n x k) = argmin ||A X - B||_F^2 + lambda ||X||_F^2 for A (m x n), B (m x k), all dense
// (lda = n, ldb = ldx = k).
// - m >= n, lambda == 0: QR (sgels). When A is rank deficient or ill conditioned (smallest /
//   largest |R_ii| below 1e-6) it falls back to the normal equations with a ridge of 1e-6 of the
//   mean diagonal of A^T A (reported in info->jitter).
// - m >= n, lambda > 0: Cholesky on A^T A + lambda I.
// - m < n: the minimum-norm solution via A A^T (+ lambda I).
// Returns InvalidArgument for non-positive sizes or a negative/non-finite lambda, Internal when
// no Cholesky succeeds (a matrix that is not finite).
Status LeastSquares(const float* a, int64_t m, int64_t n, const float* b, int64_t k, double lambda,
                    float* x, LsInfo* info = nullptr);

// Solves (G + ridge I) X = B in place for symmetric positive semi-definite G (n x n, double,
// row-major) and B (n x k, double). When the Cholesky factorization fails it retries with
// jitter 1e-12, 1e-10, ... 1e-4 times the mean diagonal added; *jitter (optional) receives what
// was added beyond ridge. G is overwritten with its factor. Internal when every retry fails.
Status CholeskySolve(std::vector<double>& g, int64_t n, double ridge, double* b, int64_t k,
                     double* jitter = nullptr);

// The largest eigenvalue of A^T A (= sigma_max(A)^2) for A (m x n) by power iteration from the
// all-ones vector, stopping when the estimate changes by less than tol (relative) or after
// max_iters. 0 for a zero matrix. The estimate approaches lambda_max from below; 1e-6 is ample
// for a projected-gradient step (stable for any step below 2 / lambda_max).
double SpectralNormSq(const float* a, int64_t m, int64_t n, int max_iters = 100, double tol = 1e-6);

// Box-constrained least squares, the NNLS of Attention Matching (design §4, step 2):
//   w = argmin_{lo <= w <= hi} ||A w - z||^2, A (m x n), z (m), w (n).
// Algorithm: the unconstrained least-squares solution nearest to `prior` (the solution of
// A d = z - A prior, minimum norm when m < n; w = prior + d), clamped to [lo, hi], then
// `pg_steps` projected-gradient steps w <- clamp(w - A^T (A w - z) / sigma_max(A)^2).
// `prior` may be null (zeros). REQUIRES: 0 <= lo <= hi, m, n >= 1.
// When the unconstrained solve fails (numerically singular), the projected gradient starts from
// the prior. Errors only for empty problems or bad bounds.
Status BoundedLeastSquares(const float* a, int64_t m, int64_t n, const float* z, const float* prior,
                           double lo, double hi, int pg_steps, float* w);

// ---- BLAS threads ----------------------------------------------------------------------------

// Sets OpenBLAS's thread count while at least one scope is alive and restores the value found by
// the first scope when the last one ends. The setting is process-global: the compactor uses one
// BLAS thread and parallelises over (layer, head) itself, which also keeps results independent
// of thread counts. Concurrent and nested scopes (several compactions in one worker) share the
// setting: the first scope's count holds until the last scope ends, so one compaction finishing
// never hands BLAS threads back while another runs.
// Thread safety: constructor and destructor may run on any threads concurrently.
class ScopedBlasThreads {
 public:
  explicit ScopedBlasThreads(int threads);
  ~ScopedBlasThreads();
  ScopedBlasThreads(const ScopedBlasThreads&) = delete;
  ScopedBlasThreads& operator=(const ScopedBlasThreads&) = delete;

  // OpenBLAS's current thread count (for tests).
  static int Current();
};

}  // namespace kvc::cpu
