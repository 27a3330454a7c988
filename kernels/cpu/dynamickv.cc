// DynamicKV (design §4): task-aware, layer-adaptive budgets. Scores are the pooled window
// attention; the layer budgets come from a global top-k over the layers' best scores
// (DynamicKvLayerBudgets), run once over all layers (default) or every m layers (progressive).
#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cpu/attention_scores.h"
#include "kernels/cpu/budgets.h"

namespace kvc::cpu {
namespace {

// One ranked candidate of the global top-k: a pooled score of (layer, head, position).
struct Candidate {
  float value;
  int layer;
  int head;
  int64_t pos;
};

bool Better(const Candidate& a, const Candidate& b) {
  if (a.value != b.value) return a.value > b.value;
  if (a.layer != b.layer) return a.layer < b.layer;
  if (a.head != b.head) return a.head < b.head;
  return a.pos < b.pos;
}

// Per (layer, head): the top `size` prefix scores (positions < prefix), best first.
std::vector<std::vector<Candidate>> TopPrefixScores(const ScoreSet& s, int64_t prefix,
                                                    int64_t size) {
  std::vector<std::vector<Candidate>> top;
  for (int l = 0; l < s.n_layers; ++l) {
    for (int h = 0; h < s.n_kv_heads; ++h) {
      const float* v = s.at(l, h);
      std::vector<Candidate> c(prefix);
      for (int64_t j = 0; j < prefix; ++j) {
        c[j] = {std::isnan(v[j]) ? -INFINITY : v[j], l, h, j};
      }
      std::partial_sort(c.begin(), c.begin() + size, c.end(), Better);
      c.resize(size);
      top.push_back(std::move(c));
    }
  }
  return top;
}

// One re-normalisation step over layers [0, seen): the global top (base * H * seen) of every
// head's retained candidates; b_l = count_l / sum(count) * base * L, floored, the last seen layer
// taking the rounding; retained_l <- min(retained_l, b_l).
void RenormaliseStep(const std::vector<std::vector<Candidate>>& top, int H, int seen, int L,
                     int64_t base, std::vector<int64_t>* retained) {
  std::vector<Candidate> pool;
  for (int l = 0; l < seen; ++l) {
    for (int h = 0; h < H; ++h) {
      const std::vector<Candidate>& c = top[static_cast<size_t>(l) * H + h];
      pool.insert(pool.end(), c.begin(), c.begin() + std::min<int64_t>(c.size(), (*retained)[l]));
    }
  }
  const int64_t n = std::min<int64_t>(base * H * seen, pool.size());
  if (n > 0) std::nth_element(pool.begin(), pool.begin() + (n - 1), pool.end(), Better);
  std::vector<int64_t> count(seen, 0);
  for (int64_t i = 0; i < n; ++i) ++count[pool[i].layer];
  int64_t total = 0;
  for (int64_t k : count) total += k;
  const int64_t target = base * L;
  int64_t given = 0;
  for (int l = 0; l < seen; ++l) {
    int64_t b;
    if (l == seen - 1) {
      b = target - given;
    } else {
      const double share = total > 0 ? static_cast<double>(count[l]) / total : 1.0 / seen;
      b = static_cast<int64_t>(std::floor(share * static_cast<double>(target)));
    }
    given += b;
    (*retained)[l] = std::min((*retained)[l], std::max<int64_t>(b, 0));
  }
}

}  // namespace

// Design §4: base = cap - w; every head first keeps its top budget_size = min(radio_max * base,
// T - w) prefix scores; then every m layers (or once, after all L) RenormaliseStep truncates the
// layers seen so far. Returns b_l + w per layer. cap <= w (or no prefix): every layer gets cap.
std::vector<int64_t> DynamicKvLayerBudgets(const ScoreSet& scores, const DynamicKvOptions& o,
                                           int64_t w, int64_t cap) {
  const int L = scores.n_layers, H = scores.n_kv_heads;
  const int64_t prefix = scores.T - w;
  if (cap <= w || prefix <= 0 || L <= 0) return std::vector<int64_t>(std::max(L, 0), cap);
  const int64_t base = cap - w;
  const int64_t size = std::clamp<int64_t>(
      static_cast<int64_t>(std::floor(o.radio_max * static_cast<double>(base))), 0, prefix);
  const std::vector<std::vector<Candidate>> top = TopPrefixScores(scores, prefix, size);
  std::vector<int64_t> retained(L, size);
  const int m = o.progressive ? std::max(o.every_m, 1) : L;
  for (int seen = std::min(m, L);; seen = std::min(seen + m, L)) {
    RenormaliseStep(top, H, seen, L, base, &retained);
    if (seen == L) break;
  }
  for (int64_t& b : retained) b += w;
  return retained;
}

// score_h[j] = mean_{q in group(h)} Pool1d( sum_{r < w} softmax_causal(q_r . k / sqrt(d))_j ),
// j < T - w (design §4: summed over the window queries, pooled with stride 1 and padding
// kernel/2); forced = the window positions T-w..T-1.
Result<ScoreSet> ScoreDynamicKv(const PreparedCache& c, const DynamicKvOptions& o) {
  KVC_RETURN_IF_ERROR(CheckPrepared(c));
  if (o.window < 1 || o.kernel < 1 || !(o.radio_max > 0.0) || o.every_m < 1) {
    return Status::InvalidArgument(
        "dynamickv: window, kernel and every_m must be >= 1 and radio_max > 0");
  }
  KVC_ASSIGN_OR_RETURN(const int64_t rows, WindowRows(c, o.window, "dynamickv"));
  return WindowPooledScores(c, rows, o.kernel, o.pooling, /*mean_over_rows=*/false);
}

}  // namespace kvc::cpu
