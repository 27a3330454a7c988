// OMP and OMP-fast key selection for Attention Matching (design §4, step 1).
//
// The state keeps the selected columns of Phi, their Gram matrix G = Phi_S^T Phi_S + delta I and
// its Cholesky factor, both grown by one row per added key (O(k n + k^2) per key), so that a refit
// costs O(k^2) per solve instead of a new factorization.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/attention_matching.h"
#include "kernels/cpu/linalg.h"

namespace kvc::cpu {
namespace {

class OmpState {
 public:
  OmpState(const AttentionStats& st, int64_t cap, int pg_steps)
      : st_(st), cap_(cap), pg_steps_(pg_steps) {
    const size_t n = static_cast<size_t>(st.n), c = static_cast<size_t>(cap);
    cols_.assign(c * n, 0.f);
    gram_.assign(c * c, 0.0);
    chol_.assign(c * c, 0.0);
    b_.assign(c, 0.0);
    r_.assign(st.z.begin(), st.z.end());
    double max_norm = 0;
    std::vector<double> norms(static_cast<size_t>(st.T), 0.0);
    for (int64_t i = 0; i < st.n; ++i) {
      const float* row = st.phi.data() + i * st.T;
      for (int64_t j = 0; j < st.T; ++j) norms[j] += static_cast<double>(row[j]) * row[j];
    }
    for (double v : norms) max_norm = std::max(max_norm, v);
    delta_ = std::max(1e-7 * max_norm, std::numeric_limits<double>::min());
  }

  int64_t size() const { return static_cast<int64_t>(sel_.size()); }
  const std::vector<int64_t>& selected() const { return sel_; }
  const std::vector<float>& residual() const { return r_; }

  // Appends column j of Phi and extends the Gram matrix and its Cholesky factor.
  void Add(int64_t j) {
    const int64_t k = size(), n = st_.n;
    float* col = cols_.data() + k * n;
    double djj = delta_, bj = 0;
    for (int64_t i = 0; i < n; ++i) {
      col[i] = st_.phi[i * st_.T + j];
      djj += static_cast<double>(col[i]) * col[i];
      bj += static_cast<double>(col[i]) * st_.z[i];
    }
    std::vector<float> g(static_cast<size_t>(k));
    Gemv(false, k, n, 1.f, cols_.data(), n, col, 0.f, g.data());
    double* grow = gram_.data() + k * cap_;
    double* lrow = chol_.data() + k * cap_;
    for (int64_t i = 0; i < k; ++i) lrow[i] = grow[i] = g[i];
    grow[k] = djj;
    TriangularSolveLower(false, k, chol_.data(), cap_, lrow);
    double ll = 0;
    for (int64_t i = 0; i < k; ++i) ll += lrow[i] * lrow[i];
    lrow[k] = std::sqrt(std::max(djj - ll, delta_));
    b_[k] = bj;
    sel_.push_back(j);
  }

  // w = NNLS refit on the selected columns; residual r = z - Phi_S w.
  void Refit() {
    const int64_t k = size(), n = st_.n;
    if (k == 0) return;
    std::vector<double> w(b_.begin(), b_.begin() + k);
    TriangularSolveLower(false, k, chol_.data(), cap_, w.data());
    TriangularSolveLower(true, k, chol_.data(), cap_, w.data());
    for (double& v : w) v = Clamp(v);
    if (pg_steps_ > 0) {
      const double lmax = LargestEigen(k);
      std::vector<double> grad(static_cast<size_t>(k));
      for (int s = 0; s < pg_steps_ && lmax > 0; ++s) {
        SymvD(k, gram_.data(), cap_, w.data(), grad.data());
        for (int64_t i = 0; i < k; ++i) w[i] = Clamp(w[i] - (grad[i] - b_[i]) / lmax);
      }
    }
    std::vector<float> wf(w.begin(), w.end());
    std::vector<float> cur(static_cast<size_t>(n));
    Gemv(true, k, n, 1.f, cols_.data(), n, wf.data(), 0.f, cur.data());
    for (int64_t i = 0; i < n; ++i) r_[i] = st_.z[i] - cur[i];
  }

 private:
  static double Clamp(double v) { return std::clamp(v, kBetaLoOmp, kBetaHiOmp); }

  // Largest eigenvalue of the k x k Gram block by power iteration, warm-started from the
  // previous eigenvector (new coordinates start at the mean of the old ones).
  double LargestEigen(int64_t k) {
    const double fill = ev_.empty() ? 1.0 : std::max(1e-3, Mean(ev_));
    ev_.resize(static_cast<size_t>(k), fill);
    Normalize(ev_);
    std::vector<double> y(static_cast<size_t>(k));
    double est = 0;
    for (int it = 0; it < 300; ++it) {
      SymvD(k, gram_.data(), cap_, ev_.data(), y.data());
      double norm = 0;
      for (double v : y) norm += v * v;
      norm = std::sqrt(norm);
      if (!(norm > 0)) return 0.0;
      for (int64_t i = 0; i < k; ++i) ev_[i] = y[i] / norm;
      if (it > 0 && std::fabs(norm - est) <= 1e-9 * norm) return norm;
      est = norm;
    }
    return est;
  }

  static double Mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? 0.0 : s / static_cast<double>(v.size());
  }
  static void Normalize(std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x * x;
    s = std::sqrt(s);
    if (s > 0) {
      for (double& x : v) x /= s;
    }
  }

  const AttentionStats& st_;
  int64_t cap_;
  int pg_steps_;
  double delta_ = 0;
  std::vector<int64_t> sel_;
  std::vector<float> cols_;   // [cap, n]: selected columns of Phi, one per row
  std::vector<double> gram_;  // [cap, cap]: lower triangle of Phi_S^T Phi_S + delta I
  std::vector<double> chol_;  // [cap, cap]: its lower Cholesky factor
  std::vector<double> b_;     // [cap]: Phi_S^T z
  std::vector<double> ev_;    // power-iteration vector (warm start)
  std::vector<float> r_;      // residual z - Phi_S w
};

const OmpStage& StageFor(const std::vector<OmpStage>& schedule, int64_t selected) {
  for (const OmpStage& s : schedule) {
    if (selected < s.up_to) return s;
  }
  return schedule.back();
}

// Unselected, unblocked position with the largest correlation (ties: lower position); -1 if none.
int64_t ArgmaxFree(const std::vector<float>& corr, const std::vector<char>& taken) {
  int64_t best = -1;
  for (int64_t j = 0; j < static_cast<int64_t>(corr.size()); ++j) {
    if (!taken[j] && (best < 0 || corr[j] > corr[best])) best = j;
  }
  return best;
}

}  // namespace

std::vector<int64_t> OmpSelect(const AttentionStats& st, int64_t t,
                               const std::vector<OmpStage>& schedule,
                               const std::vector<int64_t>& start, const std::vector<char>& blocked,
                               int pg_steps) {
  t = std::clamp<int64_t>(t, 0, st.T);
  OmpState state(st, std::max<int64_t>(t, static_cast<int64_t>(start.size())), pg_steps);
  std::vector<char> taken(static_cast<size_t>(st.T), 0);
  for (int64_t j = 0; j < st.T && !blocked.empty(); ++j) taken[j] = blocked[j];
  for (int64_t j : start) {  // sorted, unique
    state.Add(j);
    taken[j] = 1;
  }
  if (state.size() > 0) state.Refit();
  std::vector<float> corr(static_cast<size_t>(st.T));
  bool corr_valid = false;
  int since_refit = 0;
  while (state.size() < t) {
    const OmpStage& stage = StageFor(schedule, state.size());
    if (!corr_valid) {
      // corr = Phi^T r
      Gemv(true, st.n, st.T, 1.f, st.phi.data(), st.T, state.residual().data(), 0.f, corr.data());
      corr_valid = true;
    }
    const int64_t want = std::min<int64_t>(stage.keys_per_step, t - state.size());
    bool exhausted = false;
    for (int64_t q = 0; q < want; ++q) {
      const int64_t j = ArgmaxFree(corr, taken);
      if (j < 0) {
        exhausted = true;
        break;
      }
      taken[j] = 1;
      state.Add(j);
    }
    if (++since_refit >= stage.refit_every || state.size() == t || exhausted) {
      state.Refit();
      corr_valid = false;
      since_refit = 0;
    }
    if (exhausted) break;
  }
  std::vector<int64_t> out = state.selected();
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace kvc::cpu
