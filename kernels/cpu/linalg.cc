#include "kernels/cpu/linalg.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>

namespace kvc::cpu {
namespace {

blasint B(int64_t v) { return static_cast<blasint>(v); }

// Mirrors the upper triangle of a row-major n x n float matrix into a double matrix.
std::vector<double> MirrorUpper(const std::vector<float>& up, int64_t n) {
  std::vector<double> g(static_cast<size_t>(n * n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = i; j < n; ++j) {
      const double v = up[i * n + j];
      g[i * n + j] = v;
      g[j * n + i] = v;
    }
  }
  return g;
}

double MeanDiagonal(const std::vector<double>& g, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += g[i * n + i];
  return n > 0 ? s / static_cast<double>(n) : 0.0;
}

bool AllFinite(const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

// QR least squares for m >= n. Returns false when sgels fails, R is ill conditioned or the
// solution is not finite.
bool SolveQr(const float* a, int64_t m, int64_t n, const float* b, int64_t k, float* x) {
  std::vector<float> qa(a, a + m * n);
  std::vector<float> qb(b, b + m * k);
  const lapack_int info =
      LAPACKE_sgels(LAPACK_ROW_MAJOR, 'N', static_cast<lapack_int>(m), static_cast<lapack_int>(n),
                    static_cast<lapack_int>(k), qa.data(), static_cast<lapack_int>(n), qb.data(),
                    static_cast<lapack_int>(k));
  if (info != 0) return false;
  float rmin = std::numeric_limits<float>::infinity(), rmax = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    const float r = std::fabs(qa[i * n + i]);
    rmin = std::min(rmin, r);
    rmax = std::max(rmax, r);
  }
  if (!(rmax > 0.f) || rmin < 1e-6f * rmax) return false;
  if (!AllFinite(qb.data(), n * k)) return false;
  std::memcpy(x, qb.data(), sizeof(float) * n * k);
  return true;
}

// Normal equations (A^T A + lambda I) X = A^T B, with an extra relative ridge `rel_jitter`.
Status SolveNormal(const float* a, int64_t m, int64_t n, const float* b, int64_t k, double lambda,
                   double rel_jitter, float* x, LsInfo* info) {
  std::vector<double> g = GramCols(a, m, n, n);
  std::vector<float> rhs(static_cast<size_t>(n * k));
  Gemm(true, false, n, k, m, 1.f, a, n, b, k, 0.f, rhs.data(), k);
  std::vector<double> rd(rhs.begin(), rhs.end());
  const double extra = rel_jitter * MeanDiagonal(g, n);
  double jitter = 0;
  KVC_RETURN_IF_ERROR(CholeskySolve(g, n, lambda + extra, rd.data(), k, &jitter));
  for (int64_t i = 0; i < n * k; ++i) x[i] = static_cast<float>(rd[i]);
  if (info) {
    info->path = LsPath::kNormal;
    info->jitter = extra + jitter;
  }
  return Status::OK();
}

// Minimum-norm solution for m < n: X = A^T (A A^T + lambda I)^{-1} B.
Status SolveMinNorm(const float* a, int64_t m, int64_t n, const float* b, int64_t k, double lambda,
                    float* x, LsInfo* info) {
  std::vector<double> h = GramRows(a, m, n, n);
  std::vector<double> u(b, b + m * k);
  double jitter = 0;
  KVC_RETURN_IF_ERROR(CholeskySolve(h, m, lambda, u.data(), k, &jitter));
  std::vector<float> uf(u.begin(), u.end());
  Gemm(true, false, n, k, m, 1.f, a, n, uf.data(), k, 0.f, x, k);
  if (info) {
    info->path = LsPath::kMinNorm;
    info->jitter = jitter;
  }
  return Status::OK();
}

// Row loops run over whole rows of n x T score matrices: they are built for several x86 ISAs
// (runtime dispatch) and vectorised with OpenMP simd reductions (-fopenmp-simd, see am.cmake).
// Not under ThreadSanitizer: gcc's ifunc resolvers run before TSan's runtime is up and crash the
// program at load.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define KVC_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define KVC_SIMD_CLONES
#endif

// Vectorisable exp for one float (Cephes polynomial, range-reduced by powers of two).
__attribute__((always_inline)) inline float ExpOne(float x) {
  const float kLog2e = 1.44269504088896341f;
  const float kC1 = 0.693359375f, kC2 = -2.12194440e-4f;
  const float kRound = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  float xc = x < -87.33f ? -87.33f : x;
  xc = xc > 88.3f ? 88.3f : xc;
  const float fn = (xc * kLog2e + kRound) - kRound;
  const float r = xc - fn * kC1 - fn * kC2;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.f;
  const float scale = std::bit_cast<float>((static_cast<int32_t>(fn) + 127) << 23);
  return x < -87.33f ? 0.f : e * scale;
}

}  // namespace

void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    }
    return;
  }
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, B(m), B(n), B(k), alpha, a, B(lda), b, B(ldb),
              beta, c, B(ldc));
}

void Gemv(bool trans, int64_t m, int64_t n, float alpha, const float* a, int64_t lda,
          const float* x, float beta, float* y) {
  if (m <= 0 || n <= 0) {
    const int64_t len = trans ? n : m;
    for (int64_t i = 0; i < len; ++i) y[i] = beta == 0.f ? 0.f : beta * y[i];
    return;
  }
  cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, B(m), B(n), alpha, a, B(lda), x, 1,
              beta, y, 1);
}

void SymvD(int64_t n, const double* a, int64_t lda, const double* x, double* y) {
  if (n <= 0) return;
  cblas_dsymv(CblasRowMajor, CblasLower, B(n), 1.0, a, B(lda), x, 1, 0.0, y, 1);
}

void TriangularSolveLower(bool trans, int64_t n, const double* l, int64_t lda, double* x) {
  if (n <= 0) return;
  cblas_dtrsv(CblasRowMajor, CblasLower, trans ? CblasTrans : CblasNoTrans, CblasNonUnit, B(n), l,
              B(lda), x, 1);
}

std::vector<double> GramCols(const float* a, int64_t m, int64_t n, int64_t lda) {
  std::vector<float> up(static_cast<size_t>(n * n), 0.f);
  if (m > 0 && n > 0) {
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, B(n), B(m), 1.f, a, B(lda), 0.f, up.data(),
                B(n));
  }
  return MirrorUpper(up, n);
}

std::vector<double> GramRows(const float* a, int64_t m, int64_t n, int64_t lda) {
  std::vector<float> up(static_cast<size_t>(m * m), 0.f);
  if (m > 0 && n > 0) {
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, B(m), B(n), 1.f, a, B(lda), 0.f, up.data(),
                B(m));
  }
  return MirrorUpper(up, m);
}

KVC_SIMD_CLONES void ExpInPlace(float* x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = ExpOne(x[i]);
}

namespace {

KVC_SIMD_CLONES float RowMax(const float* row, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < n; ++j) mx = row[j] > mx ? row[j] : mx;
  return mx;
}

KVC_SIMD_CLONES void ExpShift(float* row, int64_t n, float shift) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) row[j] = ExpOne(row[j] - shift);
}

// Sum of n floats: f32 SIMD partial sums over blocks of 256, accumulated in double.
KVC_SIMD_CLONES double SumFloats(const float* x, int64_t n) {
  double total = 0;
  for (int64_t b = 0; b < n; b += 256) {
    const int64_t e = std::min<int64_t>(n, b + 256);
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = b; j < e; ++j) s += x[j];
    total += s;
  }
  return total;
}

}  // namespace

void ExpShiftRows(float* x, int64_t rows, int64_t cols, int64_t ld, float* row_max,
                  double* row_sum) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * ld;
    const float mx = RowMax(row, cols);
    ExpShift(row, cols, std::isfinite(mx) ? mx : 0.f);
    if (row_max) row_max[r] = mx;
    if (row_sum) row_sum[r] = SumFloats(row, cols);
  }
}

KVC_SIMD_CLONES void AccumulateScaledSquares(const float* x, int64_t n, float scale, double* acc) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const float a = x[j] * scale;
    acc[j] += static_cast<double>(a * a);
  }
}

namespace {

KVC_SIMD_CLONES float Dot(const float* x, const float* y, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += x[j] * y[j];
  return s;
}

KVC_SIMD_CLONES void Axpy(float alpha, const float* x, int64_t n, float* y) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] += alpha * x[j];
}

}  // namespace

void NormalMatvec(const float* a, int64_t m, int64_t n, const float* x, const float* z,
                  float* out) {
  std::fill(out, out + n, 0.f);
  for (int64_t i = 0; i < m; ++i) {
    const float* row = a + i * n;
    const float r = Dot(row, x, n) - (z ? z[i] : 0.f);
    Axpy(r, row, n, out);
  }
}

void SoftmaxRows(float* x, int64_t rows, int64_t cols, int64_t ld, double* lse) {
  std::vector<float> mx(static_cast<size_t>(std::max<int64_t>(rows, 1)));
  std::vector<double> sum(static_cast<size_t>(std::max<int64_t>(rows, 1)));
  ExpShiftRows(x, rows, cols, ld, mx.data(), sum.data());
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * ld;
    if (!(sum[r] > 0.0) || !std::isfinite(mx[r])) {
      std::fill(row, row + cols, 0.f);
      if (lse) lse[r] = -std::numeric_limits<double>::infinity();
      continue;
    }
    const float inv = static_cast<float>(1.0 / sum[r]);
    for (int64_t j = 0; j < cols; ++j) row[j] *= inv;
    if (lse) lse[r] = static_cast<double>(mx[r]) + std::log(sum[r]);
  }
}

Status CholeskySolve(std::vector<double>& g, int64_t n, double ridge, double* b, int64_t k,
                     double* jitter) {
  if (n <= 0) return Status::OK();
  if (!std::isfinite(ridge) || ridge < 0) {
    return Status::InvalidArgument("CholeskySolve: ridge must be finite and >= 0");
  }
  const std::vector<double> orig = g;
  const double scale = std::max(MeanDiagonal(orig, n), std::numeric_limits<double>::min());
  for (int attempt = 0; attempt <= 5; ++attempt) {
    const double extra = attempt == 0 ? 0.0 : scale * std::pow(10.0, -14.0 + 2.0 * attempt);
    g = orig;
    for (int64_t i = 0; i < n; ++i) g[i * n + i] += ridge + extra;
    const lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', static_cast<lapack_int>(n),
                                           g.data(), static_cast<lapack_int>(n));
    if (info != 0) continue;
    const lapack_int sinfo = LAPACKE_dpotrs(
        LAPACK_ROW_MAJOR, 'U', static_cast<lapack_int>(n), static_cast<lapack_int>(k), g.data(),
        static_cast<lapack_int>(n), b, static_cast<lapack_int>(k));
    if (sinfo != 0) break;
    if (jitter) *jitter = extra;
    return Status::OK();
  }
  return Status::Internal("CholeskySolve: matrix of order " + std::to_string(n) +
                          " is not positive definite even with jitter (non-finite input?)");
}

Status LeastSquares(const float* a, int64_t m, int64_t n, const float* b, int64_t k, double lambda,
                    float* x, LsInfo* info) {
  if (m <= 0 || n <= 0 || k <= 0) {
    return Status::InvalidArgument("LeastSquares: sizes must be positive");
  }
  if (!std::isfinite(lambda) || lambda < 0) {
    return Status::InvalidArgument("LeastSquares: lambda must be finite and >= 0");
  }
  if (m < n) return SolveMinNorm(a, m, n, b, k, lambda, x, info);
  if (lambda == 0.0) {
    if (SolveQr(a, m, n, b, k, x)) {
      if (info) *info = LsInfo{LsPath::kQr, 0.0};
      return Status::OK();
    }
    return SolveNormal(a, m, n, b, k, 0.0, 1e-6, x, info);
  }
  return SolveNormal(a, m, n, b, k, lambda, 0.0, x, info);
}

double SpectralNormSq(const float* a, int64_t m, int64_t n, int max_iters, double tol) {
  if (m <= 0 || n <= 0) return 0.0;
  std::vector<float> v(static_cast<size_t>(n), static_cast<float>(1.0 / std::sqrt(double(n))));
  std::vector<float> w(static_cast<size_t>(n));
  double est = 0.0;
  for (int it = 0; it < max_iters; ++it) {
    NormalMatvec(a, m, n, v.data(), nullptr, w.data());  // w = A^T A v
    double nw = 0;
    for (float t : w) nw += double(t) * t;
    nw = std::sqrt(nw);
    if (!(nw > 0)) return 0.0;
    // For unit v, ||A^T A v|| <= lambda_max and converges to it (from below).
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(w[i] / nw);
    if (it > 0 && std::fabs(nw - est) <= tol * nw) return nw;
    est = nw;
  }
  return est;
}

Status BoundedLeastSquares(const float* a, int64_t m, int64_t n, const float* z, const float* prior,
                           double lo, double hi, int pg_steps, float* w) {
  if (m <= 0 || n <= 0) return Status::InvalidArgument("BoundedLeastSquares: empty problem");
  if (!(lo >= 0) || !(hi >= lo)) {
    return Status::InvalidArgument("BoundedLeastSquares: bounds must satisfy 0 <= lo <= hi");
  }
  std::vector<float> w0(static_cast<size_t>(n), 0.f);
  if (prior) std::copy(prior, prior + n, w0.begin());
  std::vector<float> r(z, z + m);
  Gemv(false, m, n, -1.f, a, n, w0.data(), 1.f, r.data());  // r = z - A prior
  std::vector<float> d(static_cast<size_t>(n));
  // The least-squares solution is only the starting point of the projected gradient: when the
  // solve fails (a numerically singular system), start from the prior instead.
  if (!LeastSquares(a, m, n, r.data(), 1, 0.0, d.data()).ok()) std::fill(d.begin(), d.end(), 0.f);
  const auto clamp = [&](float v) {
    return static_cast<float>(std::clamp(static_cast<double>(v), lo, hi));
  };
  for (int64_t j = 0; j < n; ++j) w[j] = clamp(std::isfinite(d[j]) ? w0[j] + d[j] : w0[j]);
  if (pg_steps <= 0) return Status::OK();
  const double lmax = SpectralNormSq(a, m, n);
  if (!(lmax > 0)) return Status::OK();
  const float step = static_cast<float>(1.0 / lmax);
  std::vector<float> g(static_cast<size_t>(n));
  for (int s = 0; s < pg_steps; ++s) {
    NormalMatvec(a, m, n, w, z, g.data());  // g = A^T (A w - z)
    for (int64_t j = 0; j < n; ++j) w[j] = clamp(w[j] - step * g[j]);
  }
  return Status::OK();
}

namespace {

// The scopes alive and the thread count found before the first of them.
struct BlasScopes {
  std::mutex mu;
  int alive = 0;
  int previous = 1;
};

BlasScopes& Scopes() {
  static BlasScopes scopes;
  return scopes;
}

}  // namespace

ScopedBlasThreads::ScopedBlasThreads(int threads) {
  BlasScopes& s = Scopes();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.alive++ == 0) {
    s.previous = openblas_get_num_threads();
    openblas_set_num_threads(std::max(1, threads));
  }
}

ScopedBlasThreads::~ScopedBlasThreads() {
  BlasScopes& s = Scopes();
  std::lock_guard<std::mutex> lock(s.mu);
  if (--s.alive == 0) openblas_set_num_threads(s.previous);
}

int ScopedBlasThreads::Current() { return openblas_get_num_threads(); }

}  // namespace kvc::cpu
