// Reference ops: NNLS, ridge least squares, the AM pipeline and held-out fidelity.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "kernels/cuda/reference_ops.h"

namespace kvc::cuda::ref {
namespace {

int64_t Cols(const Offsets& o, int64_t b) { return o[b + 1] - o[b]; }

float ClampKeepNan(float x, float lo, float hi) {
  return std::isnan(x) ? x : std::min(std::max(x, lo), hi);
}

// u = A x (rows), A row-major rows x t.
template <typename Acc>
std::vector<Acc> MatVec(const float* a, int64_t rows, int64_t t, const std::vector<Acc>& x) {
  std::vector<Acc> u(size_t(rows), Acc(0));
  for (int64_t i = 0; i < rows; ++i) {
    Acc acc = 0;
    for (int64_t j = 0; j < t; ++j) acc += Acc(a[i * t + j]) * x[j];
    u[i] = acc;
  }
  return u;
}

// g = A^T r (t).
template <typename Acc>
std::vector<Acc> MatTVec(const float* a, int64_t rows, int64_t t, const std::vector<Acc>& r) {
  std::vector<Acc> g(size_t(t), Acc(0));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < t; ++j) g[j] += Acc(a[i * t + j]) * r[i];
  }
  return g;
}

template <typename Acc>
void NnlsHead(const float* a, int64_t rows, int64_t t, const float* z, const NnlsOptions& o,
              float* w, float* lipschitz) {
  std::vector<Acc> v(size_t(t), Acc(1) / std::sqrt(Acc(t)));
  Acc norm = 0;
  for (int k = 0; k < o.power_iters; ++k) {
    std::vector<Acc> g = MatTVec<Acc>(a, rows, t, MatVec<Acc>(a, rows, t, v));
    Acc ss = 0;
    for (Acc x : g) ss += x * x;
    norm = std::sqrt(ss);
    const Acc inv = norm > 0 ? Acc(1) / norm : Acc(0);
    for (int64_t j = 0; j < t; ++j) v[j] = g[j] * inv;
  }
  if (lipschitz != nullptr) *lipschitz = float(norm);
  const float step = norm > 0 ? float(Acc(1) / norm) : 0.f;
  std::vector<Acc> wa(static_cast<size_t>(t));
  for (int s = 0; s < o.pg_steps; ++s) {
    for (int64_t j = 0; j < t; ++j) wa[j] = Acc(w[j]);
    std::vector<Acc> r = MatVec<Acc>(a, rows, t, wa);
    for (int64_t i = 0; i < rows; ++i) r[i] -= Acc(z[i]);
    std::vector<Acc> g = MatTVec<Acc>(a, rows, t, r);
    for (int64_t j = 0; j < t; ++j) {
      w[j] = ClampKeepNan(float(Acc(w[j]) - Acc(step) * g[j]), o.lower, o.upper);
    }
  }
}

// In-place Cholesky (lower, row-major m x m, full storage). False on a non-positive pivot.
template <typename Acc>
bool Cholesky(std::vector<Acc>& g, int64_t m) {
  for (int64_t j = 0; j < m; ++j) {
    Acc d = g[j * m + j];
    for (int64_t k = 0; k < j; ++k) d -= g[j * m + k] * g[j * m + k];
    if (!(d > 0)) return false;
    const Acc l = std::sqrt(d);
    g[j * m + j] = l;
    for (int64_t i = j + 1; i < m; ++i) {
      Acc s = g[i * m + j];
      for (int64_t k = 0; k < j; ++k) s -= g[i * m + k] * g[j * m + k];
      g[i * m + j] = s / l;
    }
  }
  return true;
}

// Solves L L^T X = B in place; B is m x r row-major.
template <typename Acc>
void CholeskySolve(const std::vector<Acc>& l, int64_t m, std::vector<Acc>& b, int64_t r) {
  for (int64_t c = 0; c < r; ++c) {
    for (int64_t i = 0; i < m; ++i) {  // L y = b
      Acc s = b[i * r + c];
      for (int64_t k = 0; k < i; ++k) s -= l[i * m + k] * b[k * r + c];
      b[i * r + c] = s / l[i * m + i];
    }
    for (int64_t i = m - 1; i >= 0; --i) {  // L^T x = y
      Acc s = b[i * r + c];
      for (int64_t k = i + 1; k < m; ++k) s -= l[k * m + i] * b[k * r + c];
      b[i * r + c] = s / l[i * m + i];
    }
  }
}

// Gram of A (rows x t): A A^T when row_form, else A^T A; plus lambda on the diagonal.
template <typename Acc>
std::vector<Acc> RidgeGram(const float* a, int64_t rows, int64_t t, bool row_form, double coef) {
  const int64_t m = row_form ? rows : t;
  std::vector<Acc> g(size_t(m * m), Acc(0));
  for (int64_t x = 0; x < m; ++x) {
    for (int64_t y = 0; y <= x; ++y) {
      Acc s = 0;
      if (row_form) {
        for (int64_t j = 0; j < t; ++j) s += Acc(a[x * t + j]) * a[y * t + j];
      } else {
        for (int64_t i = 0; i < rows; ++i) s += Acc(a[i * t + x]) * a[i * t + y];
      }
      g[x * m + y] = g[y * m + x] = s;
    }
  }
  double trace = 0;
  for (int64_t x = 0; x < m; ++x) trace += double(g[x * m + x]);
  for (int64_t x = 0; x < m; ++x) g[x * m + x] += Acc(trace * coef);
  return g;
}

template <typename Acc>
void LstsqHead(const float* a, int64_t rows, int64_t t, const float* b, int64_t r,
               const LstsqOptions& o, float* c) {
  const bool row_form = rows < t;
  const int64_t m = row_form ? rows : t;
  const double coef = o.ridge / double(t) + o.min_relative_ridge / double(m);
  std::vector<Acc> g;
  for (int retry = 0; retry <= o.max_retries; ++retry) {
    g = RidgeGram<Acc>(a, rows, t, row_form, coef * std::pow(10.0, retry));
    if (Cholesky(g, m)) break;
    if (retry == o.max_retries) {
      std::fill(c, c + t * r, std::numeric_limits<float>::quiet_NaN());
      return;
    }
  }
  std::vector<Acc> rhs(size_t(m * r), Acc(0));
  if (row_form) {
    for (int64_t i = 0; i < rows * r; ++i) rhs[i] = Acc(b[i]);
  } else {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < t; ++j)
        for (int64_t k = 0; k < r; ++k) rhs[j * r + k] += Acc(a[i * t + j]) * b[i * r + k];
  }
  CholeskySolve(g, m, rhs, r);
  if (!row_form) {
    for (int64_t i = 0; i < t * r; ++i) c[i] = float(rhs[i]);
    return;
  }
  for (int64_t j = 0; j < t; ++j) {  // C = A^T W
    for (int64_t k = 0; k < r; ++k) {
      Acc s = 0;
      for (int64_t i = 0; i < rows; ++i) s += Acc(a[i * t + j]) * rhs[i * r + k];
      c[j * r + k] = float(s);
    }
  }
}

}  // namespace

Vec NnlsProjectedGradient(const Vec& phi, const Offsets& offsets, int64_t rows, const Vec& z,
                          const NnlsOptions& o, Vec w, Vec* lipschitz, Accum acc) {
  const int64_t batch = int64_t(offsets.size()) - 1;
  if (lipschitz != nullptr) lipschitz->assign(size_t(batch), 0.f);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t t = Cols(offsets, b);
    const float* a = phi.data() + rows * offsets[b];
    float* lb = lipschitz != nullptr ? &(*lipschitz)[b] : nullptr;
    if (acc == Accum::kDouble) {
      NnlsHead<double>(a, rows, t, z.data() + b * rows, o, w.data() + offsets[b], lb);
    } else {
      NnlsHead<float>(a, rows, t, z.data() + b * rows, o, w.data() + offsets[b], lb);
    }
  }
  return w;
}

Vec NnlsUniformInit(const Vec& phi, const Offsets& offsets, int64_t rows, const Vec& z, float lower,
                    float upper) {
  const int64_t batch = int64_t(offsets.size()) - 1;
  Vec w(size_t(offsets.back()));
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t t = Cols(offsets, b);
    std::vector<double> u =
        MatVec<double>(phi.data() + rows * offsets[b], rows, t, std::vector<double>(t, 1.0));
    double zu = 0, uu = 0;
    for (int64_t i = 0; i < rows; ++i) {
      zu += double(z[b * rows + i]) * u[i];
      uu += u[i] * u[i];
    }
    const float c = ClampKeepNan(uu > 0 ? float(zu / uu) : 1.f, lower, upper);
    std::fill(w.begin() + offsets[b], w.begin() + offsets[b + 1], c);
  }
  return w;
}

std::vector<double> NnlsObjective(const Vec& phi, const Offsets& offsets, int64_t rows,
                                  const Vec& z, const Vec& w) {
  const int64_t batch = int64_t(offsets.size()) - 1;
  std::vector<double> out(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t t = Cols(offsets, b);
    std::vector<double> wb(w.begin() + offsets[b], w.begin() + offsets[b + 1]);
    std::vector<double> r = MatVec<double>(phi.data() + rows * offsets[b], rows, t, wb);
    double ss = 0;
    for (int64_t i = 0; i < rows; ++i) {
      const double e = r[i] - z[b * rows + i];
      ss += e * e;
    }
    out[b] = 0.5 * ss;
  }
  return out;
}

std::vector<double> GramLambdaMax(const Vec& phi, const Offsets& offsets, int64_t rows, int iters) {
  const int64_t batch = int64_t(offsets.size()) - 1;
  std::vector<double> out(size_t(batch), 0.0);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t t = Cols(offsets, b);
    const float* a = phi.data() + rows * offsets[b];
    std::vector<double> v(size_t(t), 1.0 / std::sqrt(double(std::max<int64_t>(t, 1))));
    for (int k = 0; k < iters; ++k) {
      std::vector<double> g = MatTVec<double>(a, rows, t, MatVec<double>(a, rows, t, v));
      double ss = 0;
      for (double x : g) ss += x * x;
      out[b] = std::sqrt(ss);
      for (int64_t j = 0; j < t; ++j) v[j] = out[b] > 0 ? g[j] / out[b] : 0.0;
    }
  }
  return out;
}

Vec RidgeLeastSquares(const Vec& a, const Offsets& offsets, int64_t rows, const Vec& b, int64_t r,
                      const LstsqOptions& o, Accum acc) {
  const int64_t batch = int64_t(offsets.size()) - 1;
  Vec c(size_t(offsets.back() * r));
  for (int64_t h = 0; h < batch; ++h) {
    const int64_t t = Cols(offsets, h);
    if (t == 0) continue;
    const float* ah = a.data() + rows * offsets[h];
    const float* bh = b.data() + h * rows * r;
    float* ch = c.data() + offsets[h] * r;
    if (acc == Accum::kDouble) {
      LstsqHead<double>(ah, rows, t, bh, r, o, ch);
    } else {
      LstsqHead<float>(ah, rows, t, bh, r, o, ch);
    }
  }
  return c;
}

namespace {

// Scores of the kept keys: n x t_b blocks, scale * Q_b C_k^T.
Vec KeptScores(const AmFitHostProblem& p, const Offsets& out, const Vec& keys) {
  const int64_t n = p.n, d = p.head_dim;
  const double scale = 1.0 / std::sqrt(double(d));
  Vec sc(size_t(n * out.back()));
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t t = Cols(out, b);
    for (int64_t i = 0; i < n; ++i) {
      const float* qi = p.q.data() + (b * n + i) * d;
      for (int64_t j = 0; j < t; ++j) {
        const float* kj = keys.data() + (out[b] + j) * d;
        double acc = 0;
        for (int64_t c = 0; c < d; ++c) acc += double(qi[c]) * kj[c];
        sc[n * out[b] + i * t + j] = float(scale * acc);
      }
    }
  }
  return sc;
}

Vec FitBeta(const AmFitHostProblem& p, const AmFitOptions& o, const Offsets& out, const Vec& sc,
            const RowStatsResult& full, Accum acc) {
  if (!o.fit_beta) return Vec(size_t(out.back()), 0.f);
  const Vec phi = RowExpShift(sc, out, p.n, nullptr, full.max);
  const Vec z = RowMass(full.lse, full.max);
  Vec w;
  if (o.beta_init == BetaInit::kLeastSquares) {
    w = RidgeLeastSquares(phi, out, p.n, z, 1, o.beta_lstsq, acc);
    for (float& x : w) x = ClampKeepNan(x, o.nnls.lower, o.nnls.upper);
  } else {
    w = NnlsUniformInit(phi, out, p.n, z, o.nnls.lower, o.nnls.upper);
  }
  w = NnlsProjectedGradient(phi, out, p.n, z, o.nnls, std::move(w), nullptr, acc);
  for (float& x : w) x = std::log(x);
  return w;
}

}  // namespace

namespace {

// y_b - X_b V_S_b per head, in double (V_S: r.values as gathered).
Vec SubtractKeptOutputs(const Vec& x, const AmFitHostResult& r, int64_t n, int64_t d, Vec y) {
  for (size_t b = 0; b + 1 < r.offsets.size(); ++b) {
    const int64_t t = Cols(r.offsets, int64_t(b)), off = r.offsets[b];
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t c = 0; c < d; ++c) {
        double acc = 0;
        for (int64_t j = 0; j < t; ++j) {
          acc += double(x[size_t(n * off + i * t + j)]) * r.values[size_t((off + j) * d + c)];
        }
        y[size_t((int64_t(b) * n + i) * d + c)] -= float(acc);
      }
    }
  }
  return y;
}

}  // namespace

AmFitHostResult AmFit(const AmFitHostProblem& p, const AmFitOptions& o, Accum acc) {
  const int64_t B = p.batch, n = p.n, T = p.tokens, d = p.head_dim;
  const Offsets full_off = UniformOffsets(B, T);
  const Vec s = Scores(p.q, p.k, B, n, T, d, float(1.0 / std::sqrt(double(d))));
  const RowStatsResult full = RowStats(s, full_off, n, nullptr);
  AmFitHostResult r;
  r.scores = ColumnScores(s, full_off, n, full.lse);
  const Vec probs = RowExpShift(s, full_off, n, nullptr, full.lse);
  const Vec y = AttentionOutputs(probs, p.v, B, n, T, d);
  r.offsets = OffsetsFromCounts(p.budgets);
  AmFitOptions ob = o;  // the beta fit's options: OMP bounds after OMP selection (design §4)
  if (o.selection != AmFitSelection::kHighestAttention) {
    OmpFastOptions omp = o.omp;
    if (o.selection == AmFitSelection::kOmp) omp.schedule = PlainOmpSchedule();
    const Vec phi = RowExpShift(s, full_off, n, nullptr, full.max);
    r.indices = OmpFastSelect(phi, RowMass(full.lse, full.max), B, n, T, p.budgets, omp);
    ob.nnls.lower = o.omp.lower;
    ob.nnls.upper = o.omp.upper;
  } else {
    r.indices = TopK(p.selector.empty() ? r.scores : p.selector, full_off, r.offsets);
  }
  r.keys = GatherRows(p.k, T, d, r.indices, r.offsets);
  r.values = GatherRows(p.v, T, d, r.indices, r.offsets);
  const Vec sc = KeptScores(p, r.offsets, r.keys);
  r.beta = FitBeta(p, ob, r.offsets, sc, full, acc);
  if (o.fit_values && r.offsets.back() > 0) {
    const RowStatsResult kept = RowStats(sc, r.offsets, n, &r.beta);
    const Vec x = RowExpShift(sc, r.offsets, n, &r.beta, kept.lse);
    if (!o.values_toward_kept) {
      r.values = RidgeLeastSquares(x, r.offsets, n, y, d, o.values_lstsq, acc);
    } else {
      const Vec delta = RidgeLeastSquares(x, r.offsets, n, SubtractKeptOutputs(x, r, n, d, y), d,
                                          o.values_lstsq, acc);
      for (size_t i = 0; i < delta.size(); ++i) r.values[i] += delta[i];
    }
  }
  return r;
}

namespace {

// Softmax-weighted output of one query over `count` keys/values with per-key bias (may be null).
// Returns the log-sum-exp; o receives d values (zeros when count = 0).
double AttendOne(const float* q, const float* keys, const float* values, const float* bias,
                 int64_t count, int64_t d, std::vector<double>& o) {
  std::fill(o.begin(), o.end(), 0.0);
  if (count == 0) return -std::numeric_limits<double>::infinity();
  std::vector<double> s(static_cast<size_t>(count));
  const double scale = 1.0 / std::sqrt(double(d));
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < count; ++j) {
    double acc = 0;
    for (int64_t c = 0; c < d; ++c) acc += double(q[c]) * keys[j * d + c];
    s[j] = acc * scale + (bias != nullptr ? bias[j] : 0.0);
    m = std::max(m, s[j]);
  }
  double sum = 0;
  for (int64_t j = 0; j < count; ++j) {
    const double e = std::exp(s[j] - m);
    sum += e;
    for (int64_t c = 0; c < d; ++c) o[c] += e * values[j * d + c];
  }
  for (double& x : o) x /= sum;
  return m + std::log(sum);
}

}  // namespace

Fidelity EvaluateFidelity(const Vec& q_eval, int64_t n_eval, const AmFitHostProblem& p,
                          const AmFitHostResult& r) {
  const int64_t d = p.head_dim, T = p.tokens;
  Fidelity f;
  f.min_cosine = std::numeric_limits<double>::infinity();
  std::vector<double> o(static_cast<size_t>(d)), oc(static_cast<size_t>(d));
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t off = r.offsets[b], t = r.offsets[b + 1] - off;
    double cos_sum = 0, err2 = 0, ref2 = 0, mass = 0;
    for (int64_t i = 0; i < n_eval; ++i) {
      const float* q = q_eval.data() + (b * n_eval + i) * d;
      const double lse =
          AttendOne(q, p.k.data() + b * T * d, p.v.data() + b * T * d, nullptr, T, d, o);
      const double lse_c = AttendOne(q, r.keys.data() + off * d, r.values.data() + off * d,
                                     r.beta.data() + off, t, d, oc);
      double dot = 0, no = 0, nc = 0;
      for (int64_t c = 0; c < d; ++c) {
        dot += o[c] * oc[c];
        no += o[c] * o[c];
        nc += oc[c] * oc[c];
        err2 += (o[c] - oc[c]) * (o[c] - oc[c]);
      }
      ref2 += no;
      cos_sum += (no > 0 && nc > 0) ? dot / std::sqrt(no * nc) : 0.0;
      mass += std::abs(std::exp(lse_c - lse) - 1.0);
    }
    const double cos_head = cos_sum / double(n_eval);
    f.cosine += cos_head / double(p.batch);
    f.min_cosine = std::min(f.min_cosine, cos_head);
    f.rel_l2 += (ref2 > 0 ? std::sqrt(err2 / ref2) : 0.0) / double(p.batch);
    f.mass_error += mass / double(n_eval) / double(p.batch);
  }
  return f;
}

}  // namespace kvc::cuda::ref
