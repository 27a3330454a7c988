// Selection (pipeline.h): which positions each (layer, KV head) keeps under its budget, and the
// plain gather of the kept K and V rows for selection-only methods.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/cpu/pipeline.h"

namespace kvc::cpu {
namespace {

// NaN ranks below everything so the ordering stays a strict weak order.
float RankValue(float s) { return std::isnan(s) ? -std::numeric_limits<float>::infinity() : s; }

// The order in which forced positions are kept when a budget cannot hold them all: the sinks
// (the run of forced positions starting at 0) first, oldest first, then the others most recent
// first, so a short budget keeps the sinks and the newest part of the recent window.
std::vector<int64_t> ForcedPriority(const std::vector<int64_t>& forced) {
  size_t sinks = 0;
  while (sinks < forced.size() && forced[sinks] == static_cast<int64_t>(sinks)) ++sinks;
  std::vector<int64_t> order(forced.begin(), forced.begin() + sinks);
  order.insert(order.end(), forced.rbegin(), forced.rend() - sinks);
  return order;
}

// Keeps, for one head of budget b: the first min(b, |forced|) positions of ForcedPriority, then
// the b - taken highest-scoring other positions, ties to the lower position. Returns the kept
// positions sorted ascending.
std::vector<int64_t> SelectHead(const float* score, int64_t T, const std::vector<int64_t>& forced,
                                int64_t budget) {
  const int64_t b = std::clamp<int64_t>(budget, 0, T);
  std::vector<int64_t> kept;
  kept.reserve(b);
  std::vector<char> taken(T, 0);
  for (int64_t p : forced) {
    if (static_cast<int64_t>(kept.size()) == b) break;
    if (p < 0 || p >= T || taken[p]) continue;
    taken[p] = 1;
    kept.push_back(p);
  }
  const int64_t need = b - static_cast<int64_t>(kept.size());
  if (need > 0) {
    std::vector<int64_t> rest;
    rest.reserve(T - kept.size());
    for (int64_t j = 0; j < T; ++j) {
      if (!taken[j]) rest.push_back(j);
    }
    auto better = [score](int64_t a, int64_t c) {
      const float sa = RankValue(score[a]), sc = RankValue(score[c]);
      return sa != sc ? sa > sc : a < c;
    };
    std::nth_element(rest.begin(), rest.begin() + (need - 1), rest.end(), better);
    kept.insert(kept.end(), rest.begin(), rest.begin() + need);
  }
  std::sort(kept.begin(), kept.end());
  return kept;
}

}  // namespace

Selection SelectTopK(const ScoreSet& scores, const Budgets& budgets) {
  const std::vector<int64_t> forced = ForcedPriority(scores.forced);
  Selection sel(scores.n_layers, std::vector<std::vector<int64_t>>(scores.n_kv_heads));
  for (int l = 0; l < scores.n_layers; ++l) {
    for (int h = 0; h < scores.n_kv_heads; ++h) {
      const bool has =
          l < static_cast<int>(budgets.size()) && h < static_cast<int>(budgets[l].size());
      sel[l][h] = SelectHead(scores.at(l, h), scores.T, forced, has ? budgets[l][h] : 0);
    }
  }
  return sel;
}

// For every kept position p of head h: k = K[h][p], v = V[h][p], beta = 0.
LayerResults GatherSelected(const PreparedCache& c, const Selection& sel) {
  const int d = c.d();
  LayerResults out(sel.size());
  for (size_t l = 0; l < sel.size(); ++l) {
    out[l].resize(sel[l].size());
    for (size_t h = 0; h < sel[l].size(); ++h) {
      HeadResult& r = out[l][h];
      const std::vector<int64_t>& pos = sel[l][h];
      r.positions = pos;
      r.k.resize(pos.size() * d);
      r.v.resize(pos.size() * d);
      r.beta.assign(pos.size(), 0.0f);
      const float* K = c.K(static_cast<int>(l), static_cast<int>(h));
      const float* V = c.V(static_cast<int>(l), static_cast<int>(h));
      for (size_t i = 0; i < pos.size(); ++i) {
        std::memcpy(&r.k[i * d], K + pos[i] * d, sizeof(float) * d);
        std::memcpy(&r.v[i * d], V + pos[i] * d, sizeof(float) * d);
      }
    }
  }
  return out;
}

}  // namespace kvc::cpu
