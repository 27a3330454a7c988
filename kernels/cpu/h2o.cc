// H2O (design §4 "Baselines"): heavy hitters by accumulated attention, plus a recent window.
#include <cmath>
#include <string>

#include "kernels/cpu/attention_scores.h"

namespace kvc::cpu {
namespace {

// Accumulated attention of every query head of KV head h's group:
//   score[j] = sum_{q in group(h)} sum_r a_rj,
// over the q_window rows (causal: row r at position T - W + r sees keys 0..T-W+r) when q_window
// was sent, else over the q_fit rows with full attention (they attend to the whole context).
void AccumulateHead(const PreparedCache& c, int l, int h, bool use_window, float* score) {
  const PreparedLayer& layer = c.layers[l];
  const Tensor& q = use_window ? *layer.q_window : *layer.q_fit;
  const int64_t n = q.dim(1), T = c.T();
  const int d = c.d(), G = c.layout.group();
  std::vector<double> sums(T, 0.0);
  for (int j = h * G; j < (h + 1) * G; ++j) {
    const float* qj = q.data<float>() + static_cast<size_t>(j) * n * d;
    AccumulateAttention(qj, n, T - n, /*causal=*/use_window, c.K(l, h), T, d, sums.data());
  }
  for (int64_t t = 0; t < T; ++t) score[t] = static_cast<float>(sums[t]);
}

}  // namespace

Status CheckH2oFitQueries(const PreparedCache& c) {
  for (size_t l = 0; l < c.layers.size(); ++l) {
    const std::optional<Tensor>& q = c.layers[l].q_fit;
    if (!q.has_value() || q->rank() != 3 || q->dim(0) != c.layout.n_q_heads || q->dim(2) != c.d() ||
        q->dim(1) <= 0) {
      return Status::InvalidArgument("h2o: layer " + std::to_string(l) +
                                     " has no usable q_fit rows [n_q, N, d]");
    }
  }
  return Status::OK();
}

// Uses q_window (causally normalised) when sent; otherwise the fit part of q_ref with full
// attention; neither is InvalidArgument. forced = the last round(recent_fraction * head_budget)
// positions; the rest of each head's budget goes to the largest accumulated attention.
Result<ScoreSet> ScoreH2o(const PreparedCache& c, const H2oOptions& o, int64_t head_budget) {
  KVC_RETURN_IF_ERROR(CheckPrepared(c));
  if (!(o.recent_fraction >= 0.0 && o.recent_fraction <= 1.0)) {
    return Status::InvalidArgument("h2o.recent_fraction must be in [0, 1]");
  }
  const bool has_window = !c.layers.empty() && c.layers[0].q_window.has_value();
  const bool has_fit = !c.layers.empty() && c.layers[0].q_fit.has_value();
  if (has_window) {
    KVC_RETURN_IF_ERROR(WindowRows(c, 0, "h2o").status());
  } else if (has_fit) {
    KVC_RETURN_IF_ERROR(CheckH2oFitQueries(c));
  } else {
    return Status::InvalidArgument("h2o needs q_window (or q_ref)");
  }
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads;
  ScoreSet out = ScoreSet::Zeros(L, H, c.T());
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) AccumulateHead(c, l, h, has_window, out.at(l, h));
  }
  const int64_t recent = std::llround(o.recent_fraction * static_cast<double>(head_budget));
  out.forced = SinksAndRecent(c.T(), 0, recent);
  return out;
}

}  // namespace kvc::cpu
