// Reference op: am_omp.h's OMP / OMP-fast selection in double precision, one head at a time.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cuda/reference_ops.h"

namespace kvc::cuda::ref {
namespace {

// One head's selection state: Phi_S column by column, weights, power vector, residual.
struct OmpHead {
  const float* phi = nullptr;  // n x T
  const float* z = nullptr;    // n
  int64_t n = 0, T = 0;
  std::vector<std::vector<double>> cols;
  std::vector<double> w, v, r;
  double step = 0;
};

double ClampW(double x, const OmpFastOptions& o) {
  if (std::isnan(x)) return o.lower;
  return std::min(std::max(x, double(o.lower)), double(o.upper));
}

// out = Phi_S x.
std::vector<double> ColsMatVec(const OmpHead& h, const std::vector<double>& x) {
  std::vector<double> out(size_t(h.n), 0.0);
  for (size_t c = 0; c < h.cols.size(); ++c) {
    for (int64_t i = 0; i < h.n; ++i) out[i] += h.cols[c][i] * x[c];
  }
  return out;
}

// g = Phi_S^T u.
std::vector<double> ColsMatTVec(const OmpHead& h, const std::vector<double>& u) {
  std::vector<double> g(h.cols.size(), 0.0);
  for (size_t c = 0; c < h.cols.size(); ++c) {
    for (int64_t i = 0; i < h.n; ++i) g[c] += h.cols[c][i] * u[i];
  }
  return g;
}

void Residual(OmpHead& h) {
  const std::vector<double> cur = ColsMatVec(h, h.w);
  for (int64_t i = 0; i < h.n; ++i) h.r[i] = double(h.z[i]) - cur[i];
}

void Refit(OmpHead& h, const OmpFastOptions& o) {
  for (int it = 0; it < o.power_iters; ++it) {
    const std::vector<double> y = ColsMatTVec(h, ColsMatVec(h, h.v));
    double ss = 0;
    for (double x : y) ss += x * x;
    const double norm = std::sqrt(ss);
    h.step = norm > 0 ? 1.0 / norm : 0.0;
    for (size_t c = 0; c < y.size(); ++c) h.v[c] = y[c] * h.step;
  }
  for (int s = 0; s < o.refit_pg_steps; ++s) {
    Residual(h);
    const std::vector<double> g = ColsMatTVec(h, h.r);
    for (size_t c = 0; c < g.size(); ++c) h.w[c] = ClampW(h.w[c] + h.step * g[c], o);
  }
  Residual(h);
}

// Greedy picks of one round: argmax of corr over free positions (NaN = -inf, ties: lower j).
void PickRound(OmpHead& h, int64_t p, const OmpFastOptions& o, std::vector<char>& taken) {
  std::vector<double> corr(size_t(h.T), 0.0);
  for (int64_t i = 0; i < h.n; ++i) {
    for (int64_t j = 0; j < h.T; ++j) corr[j] += double(h.phi[i * h.T + j]) * h.r[i];
  }
  const double count = double(h.cols.size() + size_t(p));
  for (int64_t q = 0; q < p; ++q) {
    int64_t best = -1;
    double best_v = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < h.T; ++j) {
      if (taken[j]) continue;
      const double val = std::isnan(corr[j]) ? -std::numeric_limits<double>::infinity() : corr[j];
      if (best < 0 || val > best_v) {
        best = j;
        best_v = val;
      }
    }
    if (best < 0) return;  // cannot happen: the plan never asks for more keys than are free
    taken[best] = 1;
    std::vector<double> col(size_t(h.n));
    double ss = 0;
    for (int64_t i = 0; i < h.n; ++i) {
      col[i] = h.phi[i * h.T + best];
      ss += col[i] * col[i];
    }
    h.cols.push_back(std::move(col));
    h.w.push_back(ss > 0 ? ClampW(corr[best] / (double(p) * ss), o) : double(o.lower));
    h.v.push_back(1.0 / std::sqrt(count));
  }
}

}  // namespace

std::vector<int32_t> OmpFastSelect(const Vec& phi, const Vec& z, int64_t batch, int64_t n,
                                   int64_t T, const std::vector<int64_t>& budgets,
                                   const OmpFastOptions& o) {
  std::vector<int32_t> out;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<char> taken(size_t(T), 0);
    if (budgets[b] >= T) {
      std::fill(taken.begin(), taken.end(), 1);
    } else {
      OmpHead h;
      h.phi = phi.data() + b * n * T;
      h.z = z.data() + b * n;
      h.n = n;
      h.T = T;
      h.r.assign(h.z, h.z + n);
      const std::vector<int64_t> rounds = OmpRoundSizes(budgets[b], o.schedule);
      for (size_t ri = 0; ri < rounds.size(); ++ri) {
        PickRound(h, rounds[ri], o, taken);
        if (ri + 1 < rounds.size()) Refit(h, o);
      }
    }
    for (int64_t j = 0; j < T; ++j) {
      if (taken[j]) out.push_back(int32_t(j));
    }
  }
  return out;
}

}  // namespace kvc::cuda::ref
