#include "kernels/cpu/am_allocator.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "kernels/cpu/attention_matching.h"
#include "kernels/cpu/linalg.h"

namespace kvc::cpu {
namespace {

constexpr double kFactors[] = {0.25, 0.5, 1.0, 2.0, 4.0};

// Error of each candidate budget for one head (budgets ascending, unique).
struct Curve {
  std::vector<int64_t> budget;
  std::vector<double> error;
};

std::vector<float> PackRows(const float* src, int d, const std::vector<int64_t>& rows) {
  std::vector<float> out(rows.size() * static_cast<size_t>(d));
  for (size_t i = 0; i < rows.size(); ++i) {
    std::copy(src + rows[i] * d, src + (rows[i] + 1) * d, out.begin() + i * d);
  }
  return out;
}

// out [N, d] = softmax(q k^T / sqrt(d) + bias) v.
void Attend(const float* q, int64_t N, int d, const float* k, const float* v, const float* bias,
            int64_t m, float* out) {
  std::vector<float> s(static_cast<size_t>(N * m));
  Gemm(false, true, N, m, d, 1.f / std::sqrt(static_cast<float>(d)), q, d, k, d, 0.f, s.data(), m);
  for (int64_t i = 0; bias && i < N; ++i) {
    for (int64_t j = 0; j < m; ++j) s[i * m + j] += bias[j];
  }
  SoftmaxRows(s.data(), N, m, m, nullptr);
  Gemm(false, false, N, d, m, 1.f, s.data(), m, v, d, 0.f, out, d);
}

double MeanOneMinusCos(const std::vector<float>& o, const std::vector<float>& c, int64_t N, int d) {
  double sum = 0;
  for (int64_t i = 0; i < N; ++i) {
    double oo = 0, cc = 0, oc = 0;
    for (int j = 0; j < d; ++j) {
      const double x = o[i * d + j], y = c[i * d + j];
      oo += x * x;
      cc += y * y;
      oc += x * y;
    }
    sum += 1.0 - ((oo > 0 && cc > 0) ? oc / std::sqrt(oo * cc) : 0.0);
  }
  return N > 0 ? sum / static_cast<double>(N) : 0.0;
}

Result<Curve> HeadCurve(const AmHead& head, const std::vector<int64_t>& cands, const AmOptions& o,
                        AttentionStats& st) {
  std::vector<int64_t> fit_rows, ho_rows;
  for (int64_t i = 0; i < head.n; ++i) {
    (head.n >= 4 && i % 4 == 3 ? ho_rows : fit_rows).push_back(i);
  }
  if (ho_rows.empty()) ho_rows = fit_rows;
  const int d = head.d;
  const std::vector<float> qf = PackRows(head.q, d, fit_rows), qh = PackRows(head.q, d, ho_rows);
  AmHead fit = head;
  fit.q = qf.data();
  fit.n = static_cast<int64_t>(fit_rows.size());
  const int64_t nh = static_cast<int64_t>(ho_rows.size());
  ComputeAttentionStats(fit, st);
  const std::vector<float> scores = HighestAttentionScores(st);
  std::vector<float> full(static_cast<size_t>(nh * d)), comp(full.size());
  Attend(qh.data(), nh, d, head.k, head.v, nullptr, head.T, full.data());
  Curve curve;
  for (int64_t b : cands) {
    const std::vector<int64_t> sel = TopPositions(scores, b, {});
    std::vector<float> beta(sel.size(), 0.f);
    if (o.fit_beta) {
      KVC_ASSIGN_OR_RETURN(beta, FitBeta(st, sel, kBetaLoHighest, kBetaHiHighest, o.nnls_pg_steps));
    }
    std::vector<float> cv = PackRows(head.v, d, sel);
    if (o.fit_values) {
      KVC_ASSIGN_OR_RETURN(cv, FitValues(fit, st, sel, beta, o.ridge));
    }
    const std::vector<float> ks = PackRows(head.k, d, sel);
    Attend(qh.data(), nh, d, ks.data(), cv.data(), beta.data(), b, comp.data());
    curve.budget.push_back(b);
    curve.error.push_back(MeanOneMinusCos(full, comp, nh, d));
  }
  return curve;
}

// Indices of the lower convex hull of the curve, cut where the error stops decreasing.
std::vector<size_t> DecreasingHull(const Curve& c) {
  std::vector<size_t> hull;
  for (size_t i = 0; i < c.budget.size(); ++i) {
    while (hull.size() >= 2) {
      const size_t a = hull[hull.size() - 2], b = hull.back();
      // Drop b when it lies on or above the chord a -> i.
      const double cross = (c.budget[b] - c.budget[a]) * (c.error[i] - c.error[a]) -
                           (c.error[b] - c.error[a]) * (c.budget[i] - c.budget[a]);
      if (cross <= 0) {
        hull.pop_back();
      } else {
        break;
      }
    }
    hull.push_back(i);
  }
  size_t keep = 1;
  while (keep < hull.size() && c.error[hull[keep]] < c.error[hull[keep - 1]]) ++keep;
  hull.resize(keep);
  return hull;
}

std::vector<int64_t> Candidates(int64_t head_budget, int64_t cap) {
  std::vector<int64_t> out;
  for (double f : kFactors) {
    const int64_t b = std::llround(static_cast<double>(head_budget) * f);
    out.push_back(std::clamp<int64_t>(b, 1, cap));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// Greedy allocation over the hull segments of every head (see am_allocator.h).
std::vector<int64_t> Distribute(const std::vector<Curve>& curves, int64_t total, int64_t cap) {
  const size_t heads = curves.size();
  std::vector<int64_t> alloc(heads);
  // (gain per key, head, from, to)
  std::vector<std::tuple<double, size_t, int64_t, int64_t>> segs;
  int64_t left = total;
  for (size_t h = 0; h < heads; ++h) {
    const Curve& c = curves[h];
    alloc[h] = c.budget.front();
    left -= alloc[h];
    const std::vector<size_t> hull = DecreasingHull(c);
    for (size_t s = 1; s < hull.size(); ++s) {
      const int64_t from = c.budget[hull[s - 1]], to = c.budget[hull[s]];
      const double gain = (c.error[hull[s - 1]] - c.error[hull[s]]) / double(to - from);
      segs.emplace_back(gain, h, from, to);
    }
  }
  std::stable_sort(segs.begin(), segs.end(), [](const auto& a, const auto& b) {
    return std::get<0>(a) > std::get<0>(b) ||
           (std::get<0>(a) == std::get<0>(b) && std::get<1>(a) < std::get<1>(b));
  });
  for (const auto& [gain, h, from, to] : segs) {
    if (left <= 0) break;
    const int64_t take = std::min(left, to - from);
    alloc[h] += take;
    left -= take;
  }
  while (left > 0) {
    bool progressed = false;
    for (size_t h = 0; h < heads && left > 0; ++h) {
      if (alloc[h] < cap) {
        ++alloc[h];
        --left;
        progressed = true;
      }
    }
    if (!progressed) break;
  }
  return alloc;
}

}  // namespace

Result<Budgets> AllocateAmBudgets(const PreparedCache& c, const CompactionSpec& spec,
                                  int64_t head_budget, ThreadPool& pool) {
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads;
  const int64_t T = c.T();
  if (head_budget < 1 || head_budget > T) {
    return Status::InvalidArgument("AM allocator: head budget " + std::to_string(head_budget) +
                                   " outside [1, T]");
  }
  for (int l = 0; l < L; ++l) {
    if (!c.layers[l].q_fit) {
      return Status::InvalidArgument("allocator am needs fit queries (q_ref) in layer " +
                                     std::to_string(l));
    }
  }
  const int64_t cap = std::max<int64_t>(head_budget, (3 * T) / 4);
  const std::vector<int64_t> cands = Candidates(head_budget, cap);
  std::vector<Curve> curves(static_cast<size_t>(L) * H);
  std::vector<AttentionStats> scratch(static_cast<size_t>(pool.threads()));
  KVC_RETURN_IF_ERROR(pool.ParallelFor(int64_t{L} * H, [&](int64_t task, int worker) -> Status {
    const int l = static_cast<int>(task / H), h = static_cast<int>(task % H);
    Result<Curve> r = HeadCurve(MakeAmHead(c, l, h), cands, spec.am, scratch[worker]);
    if (!r.ok()) {
      return r.status().WithContext("AM allocator, layer " + std::to_string(l) + " kv head " +
                                    std::to_string(h));
    }
    curves[task] = std::move(r).value();
    return Status::OK();
  }));
  const std::vector<int64_t> alloc = Distribute(curves, int64_t{L} * H * head_budget, cap);
  Budgets out(static_cast<size_t>(L), std::vector<int64_t>(static_cast<size_t>(H)));
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) out[l][h] = alloc[static_cast<size_t>(l) * H + h];
  }
  return out;
}

Result<Budgets> AllocateAmBudgets(const PreparedCache& c, const CompactionSpec& spec,
                                  int64_t head_budget) {
  ThreadPool pool(spec.threads);
  return AllocateAmBudgets(c, spec, head_budget, pool);
}

}  // namespace kvc::cpu
