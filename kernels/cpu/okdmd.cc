// OK-DMD (design §4): prefill fit of the key-trajectory operator A and the RLS inverse P, the
// dominant basis Q of A by power iteration, the streaming RLS update, and ScoreOkDmd.
#include "kernels/cpu/okdmd.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>
#include <string>

#include "kernels/cpu/attention_scores.h"
#include "kernels/cpu/pipeline.h"

namespace kvc::cpu {
namespace {

// Key rows converted to double per block when forming X X^T and Y X^T.
constexpr int64_t kRowBlock = 2048;
// Keys scored per GEMM in ScoreOkDmd.
constexpr int64_t kScoreBlock = 4096;

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

Status CheckOptions(int d, const OkDmdOptions& o) {
  if (d < 1 || o.k_modes < 1 || !(o.sigma > 0.0) || !(o.lambda > 0.0 && o.lambda <= 1.0) ||
      o.refresh_every < 1 || o.power_iters < 0 || o.sinks < 0 || o.recent < 0) {
    return Status::InvalidArgument(
        "okdmd: need head_dim, k_modes, refresh_every >= 1, sigma > 0, lambda in (0, 1], "
        "power_iters, sinks, recent >= 0");
  }
  return Status::OK();
}

// In place: M (rows x cols, row-major) <- the Q factor of its thin Householder QR.
void OrthonormalizeColumns(std::vector<double>* m, int rows, int cols) {
  std::vector<double> tau(cols);
  LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, rows, cols, m->data(), cols, tau.data());
  LAPACKE_dorgqr(LAPACK_ROW_MAJOR, rows, cols, cols, m->data(), cols, tau.data());
}

// A d x k matrix of independent N(0, 1) draws (Box-Muller over mt19937_64, so the stream of
// numbers is the same with every standard library).
std::vector<double> GaussianMatrix(int d, int k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&rng] { return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53; };
  std::vector<double> g(static_cast<size_t>(d) * k);
  for (size_t i = 0; i < g.size(); i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double theta = 2.0 * std::numbers::pi * uniform();
    g[i] = r * std::cos(theta);
    if (i + 1 < g.size()) g[i + 1] = r * std::sin(theta);
  }
  return g;
}

// Accumulates XX = X X^T and YX = Y X^T over keys [T, d] with X = K[0:T-1]^T, Y = K[1:T]^T:
//   XX = sum_{i < T-1} k_i k_i^T,  YX = sum_{i < T-1} k_{i+1} k_i^T  (double, row-major d x d).
void TrajectoryMoments(const float* keys, int64_t T, int d, std::vector<double>* xx,
                       std::vector<double>* yx) {
  std::vector<double> z;
  for (int64_t b0 = 0; b0 + 1 < T; b0 += kRowBlock) {
    const int64_t n = std::min(kRowBlock, T - 1 - b0);  // pairs (k_i, k_{i+1}), i in [b0, b0+n)
    z.assign(keys + b0 * d, keys + (b0 + n + 1) * d);
    const double* x = z.data();
    const double* y = z.data() + d;
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, static_cast<int>(n), 1.0, x, d, 1.0,
                xx->data(), d);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, static_cast<int>(n), 1.0, y, d, x, d,
                1.0, yx->data(), d);
  }
  for (int r = 0; r < d; ++r) {
    for (int c = 0; c < r; ++c) (*xx)[r * d + c] = (*xx)[c * d + r];
  }
}

// P = M^-1 for the symmetric positive definite M (Cholesky), falling back to an LU solve.
Status InvertSpd(std::vector<double> m, int d, std::vector<double>* p) {
  std::vector<double> chol = m;
  if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', d, chol.data(), d) == 0 &&
      LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', d, chol.data(), d) == 0) {
    for (int r = 0; r < d; ++r) {
      for (int c = 0; c < d; ++c) (*p)[r * d + c] = r <= c ? chol[r * d + c] : chol[c * d + r];
    }
    return Status::OK();
  }
  std::vector<lapack_int> ipiv(d);
  p->assign(static_cast<size_t>(d) * d, 0.0);
  for (int i = 0; i < d; ++i) (*p)[i * d + i] = 1.0;
  if (LAPACKE_dgesv(LAPACK_ROW_MAJOR, d, d, m.data(), d, ipiv.data(), p->data(), d) != 0) {
    return Status::Internal("okdmd: X X^T + sigma I is singular");
  }
  return Status::OK();
}

}  // namespace

uint64_t OkDmdHeadSeed(uint64_t seed, int layer, int head) {
  return SplitMix64(SplitMix64(SplitMix64(seed) ^ static_cast<uint64_t>(layer)) ^
                    static_cast<uint64_t>(head));
}

OkDmdStream::OkDmdStream(int d, const OkDmdOptions& o) : d_(d), k_(std::min(o.k_modes, d)), o_(o) {}

Result<OkDmdStream> OkDmdStream::Create(int head_dim, const OkDmdOptions& o, uint64_t seed) {
  KVC_RETURN_IF_ERROR(CheckOptions(head_dim, o));
  OkDmdStream s(head_dim, o);
  const size_t dd = static_cast<size_t>(head_dim) * head_dim;
  s.a_.assign(dd, 0.0);
  s.p_.assign(dd, 0.0);
  for (int i = 0; i < head_dim; ++i) s.p_[i * head_dim + i] = 1.0 / o.sigma;
  s.q_ = GaussianMatrix(head_dim, s.k_, seed);
  OrthonormalizeColumns(&s.q_, head_dim, s.k_);
  return s;
}

Result<OkDmdStream> OkDmdStream::Prefill(const float* keys, int64_t T, int head_dim,
                                         const OkDmdOptions& o, uint64_t seed) {
  KVC_ASSIGN_OR_RETURN(OkDmdStream s, Create(head_dim, o, seed));
  const int d = head_dim;
  if (T >= 2) {
    std::vector<double> xx(static_cast<size_t>(d) * d, 0.0), yx(xx.size(), 0.0);
    TrajectoryMoments(keys, T, d, &xx, &yx);
    for (int i = 0; i < d; ++i) xx[i * d + i] += o.sigma;
    KVC_RETURN_IF_ERROR(InvertSpd(std::move(xx), d, &s.p_));
    // A = (Y X^T) P
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, yx.data(), d, s.p_.data(),
                d, 0.0, s.a_.data(), d);
  }
  for (int it = 0; it < o.power_iters; ++it) s.RefreshBasis();
  if (T >= 1) s.prev_.assign(keys + (T - 1) * d, keys + T * d);
  return s;
}

void OkDmdStream::RefreshBasis() {
  std::vector<double> aq(static_cast<size_t>(d_) * k_);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d_, k_, d_, 1.0, a_.data(), d_, q_.data(),
              k_, 0.0, aq.data(), k_);
  OrthonormalizeColumns(&aq, d_, k_);
  q_ = std::move(aq);
}

void OkDmdStream::Push(const float* key) {
  const int d = d_;
  if (prev_.empty()) {
    prev_.assign(key, key + d);
    return;
  }
  const std::vector<double>& kp = prev_;
  std::vector<double> u(d), e(d);
  cblas_dgemv(CblasRowMajor, CblasNoTrans, d, d, 1.0, p_.data(), d, kp.data(), 1, 0.0, u.data(), 1);
  const double denom = o_.lambda + cblas_ddot(d, kp.data(), 1, u.data(), 1) + 1e-6;
  std::vector<double> g(d);
  for (int i = 0; i < d; ++i) g[i] = u[i] / denom;
  // P <- (P - g u^T) / lambda, then symmetrised plus sigma I.
  cblas_dger(CblasRowMajor, d, d, -1.0, g.data(), 1, u.data(), 1, p_.data(), d);
  for (int r = 0; r < d; ++r) {
    for (int c = r; c < d; ++c) {
      const double sym = 0.5 * (p_[r * d + c] + p_[c * d + r]) / o_.lambda;
      p_[r * d + c] = p_[c * d + r] = sym;
    }
    p_[r * d + r] += o_.sigma;
  }
  // e = k_t - A k_{t-1};  A <- A + e g^T
  for (int i = 0; i < d; ++i) e[i] = key[i];
  cblas_dgemv(CblasRowMajor, CblasNoTrans, d, d, -1.0, a_.data(), d, kp.data(), 1, 1.0, e.data(),
              1);
  cblas_dger(CblasRowMajor, d, d, 1.0, e.data(), 1, g.data(), 1, a_.data(), d);
  prev_.assign(key, key + d);
  ++updates_;
  if (updates_ % o_.refresh_every == 0) RefreshBasis();
}

double OkDmdStream::Score(const float* key) const {
  double total = 0.0;
  for (int c = 0; c < k_; ++c) {
    double proj = 0.0;
    for (int x = 0; x < d_; ++x) proj += q_[static_cast<size_t>(x) * k_ + c] * key[x];
    total += proj * proj;
  }
  return total;
}

// Per (layer, KV head): Prefill on its keys with OkDmdHeadSeed(seed, l, h), then
// score[i] = ||Q^T k_i||^2 for every key; forced = the sinks and the recent window.
Result<ScoreSet> ScoreOkDmd(const PreparedCache& c, const OkDmdOptions& o, uint64_t seed) {
  KVC_RETURN_IF_ERROR(CheckPrepared(c));
  KVC_RETURN_IF_ERROR(CheckOptions(c.d(), o));
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads, d = c.d();
  const int64_t T = c.T();
  ScoreSet out = ScoreSet::Zeros(L, H, T);
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) {
      KVC_ASSIGN_OR_RETURN(OkDmdStream s,
                           OkDmdStream::Prefill(c.K(l, h), T, d, o, OkDmdHeadSeed(seed, l, h)));
      const int k = s.modes();
      const std::vector<float> q(s.Q().begin(), s.Q().end());
      std::vector<float> proj(static_cast<size_t>(std::min(kScoreBlock, T)) * k);
      float* dst = out.at(l, h);
      for (int64_t i0 = 0; i0 < T; i0 += kScoreBlock) {
        const int64_t n = std::min(kScoreBlock, T - i0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n), k, d, 1.0f,
                    c.K(l, h) + i0 * d, d, q.data(), k, 0.0f, proj.data(), k);
        for (int64_t i = 0; i < n; ++i) {
          double e = 0.0;
          for (int m = 0; m < k; ++m) e += double(proj[i * k + m]) * proj[i * k + m];
          dst[i0 + i] = static_cast<float>(e);
        }
      }
    }
  }
  out.forced = SinksAndRecent(T, o.sinks, o.recent);
  return out;
}

}  // namespace kvc::cpu
