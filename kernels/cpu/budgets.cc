// Budget allocators (design §4 "Budget allocation"): uniform, PyramidKV, DynamicKV, D2O and the
// data-driven AM allocator (am_allocator.cc). Each computes shares and hands them to
// ApportionExact, so the result sums exactly to L * H * head_budget (capped at L * H * T).
#include "kernels/cpu/budgets.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "kernels/cpu/attention_scores.h"

namespace kvc::cpu {
namespace {

// Water filling: ideal real amounts x_i = R w_i / sum w over the entries not fixed at their
// cap, fixing every entry whose ideal exceeds its cap until none does. Returns the ideals
// (caps for the fixed entries).
std::vector<double> WaterFill(std::vector<double> w, int64_t total,
                              const std::vector<int64_t>& caps) {
  const size_t n = w.size();
  std::vector<bool> fixed(n, false);
  std::vector<double> x(n, 0.0);
  for (size_t i = 0; i < n; ++i) fixed[i] = caps[i] <= 0;
  while (true) {
    double rest = static_cast<double>(total), wsum = 0.0;
    size_t n_free = 0;
    for (size_t i = 0; i < n; ++i) {
      if (fixed[i]) {
        rest -= static_cast<double>(std::max<int64_t>(caps[i], 0));
      } else {
        wsum += w[i];
        ++n_free;
      }
    }
    if (n_free == 0 || rest <= 0.0) break;
    if (wsum <= 0.0) {  // only zero-share entries left: spread the rest equally over them
      for (size_t i = 0; i < n; ++i) w[i] = fixed[i] ? w[i] : 1.0;
      continue;
    }
    bool violated = false;
    for (size_t i = 0; i < n; ++i) {
      if (fixed[i]) continue;
      x[i] = rest * w[i] / wsum;
      if (x[i] > static_cast<double>(caps[i])) fixed[i] = violated = true;
    }
    if (!violated) break;
  }
  for (size_t i = 0; i < n; ++i) {
    if (fixed[i]) x[i] = static_cast<double>(std::max<int64_t>(caps[i], 0));
  }
  return x;
}

}  // namespace

std::vector<int64_t> ApportionExact(const std::vector<double>& shares, int64_t total,
                                    const std::vector<int64_t>& caps) {
  const size_t n = shares.size();
  int64_t cap_sum = 0;
  for (int64_t cap : caps) cap_sum += std::max<int64_t>(cap, 0);
  const int64_t target = std::clamp<int64_t>(total, 0, cap_sum);
  std::vector<double> w(n);
  bool any = false;
  for (size_t i = 0; i < n; ++i) {
    w[i] = std::isfinite(shares[i]) && shares[i] > 0.0 ? shares[i] : 0.0;
    any = any || w[i] > 0.0;
  }
  if (!any) std::fill(w.begin(), w.end(), 1.0);
  const std::vector<double> x = WaterFill(std::move(w), target, caps);

  // Floor, then hand the leftover units to the largest fractional parts (ties: lower index).
  std::vector<int64_t> b(n);
  int64_t assigned = 0;
  for (size_t i = 0; i < n; ++i) {
    b[i] = std::clamp<int64_t>(static_cast<int64_t>(std::floor(x[i] + 1e-9)), 0,
                               std::max<int64_t>(caps[i], 0));
    assigned += b[i];
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  auto frac = [&](size_t i) { return x[i] - static_cast<double>(b[i]); };
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t c) { return frac(a) > frac(c); });
  // Each pass moves at least one unit while any entry can take (give) one; floating error only
  // ever leaves a few units, so this ends after a pass or two.
  while (assigned < target) {
    for (size_t i : order) {
      if (assigned == target) break;
      if (b[i] < caps[i]) ++b[i], ++assigned;
    }
  }
  while (assigned > target) {
    for (auto it = order.rbegin(); it != order.rend() && assigned > target; ++it) {
      if (b[*it] > 0) --b[*it], --assigned;
    }
  }
  return b;
}

Budgets BudgetsFromShares(const std::vector<double>& shares, int L, int H, int64_t T,
                          int64_t total) {
  const std::vector<int64_t> caps(static_cast<size_t>(L) * H, T);
  const std::vector<int64_t> flat = ApportionExact(shares, total, caps);
  Budgets out(L, std::vector<int64_t>(H));
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) out[l][h] = flat[static_cast<size_t>(l) * H + h];
  }
  return out;
}

Budgets D2oBudgetsFromRatios(std::vector<double> ratio, const D2oOptions& o, int L, int H,
                             int64_t T, int64_t total) {
  const std::vector<int> whole = D2oUncompressedLayers(o, L);
  const int64_t whole_total = static_cast<int64_t>(whole.size()) * H * T;
  for (int l : whole) ratio[l] = 1.0;
  std::vector<double> per_head;
  if (total < whole_total || static_cast<int>(whole.size()) == L) {
    for (double r : ratio) per_head.insert(per_head.end(), H, r);
    return BudgetsFromShares(per_head, L, H, T, total);
  }
  std::vector<bool> is_whole(L, false);
  for (int l : whole) is_whole[l] = true;
  for (int l = 0; l < L; ++l) {
    if (!is_whole[l]) per_head.insert(per_head.end(), H, ratio[l]);
  }
  const std::vector<int64_t> rest =
      ApportionExact(per_head, total - whole_total, std::vector<int64_t>(per_head.size(), T));
  Budgets out(L, std::vector<int64_t>(H, T));
  size_t next = 0;
  for (int l = 0; l < L; ++l) {
    if (is_whole[l]) continue;
    for (int h = 0; h < H; ++h) out[l][h] = rest[next++];
  }
  return out;
}

namespace {

// Every head of layer l gets layer_share[l].
std::vector<double> PerHeadShares(const std::vector<double>& layer_share, int H) {
  std::vector<double> shares;
  shares.reserve(layer_share.size() * H);
  for (double s : layer_share) shares.insert(shares.end(), H, s);
  return shares;
}

// The observation window of a window-based allocator: the rows of q_window its method uses, or
// 0 when no q_window was sent.
int64_t ObservationWindow(const PreparedCache& c, int requested) {
  if (c.layers.empty() || !c.layers[0].q_window.has_value()) return 0;
  Result<int64_t> rows = WindowRows(c, requested, "allocator");
  return rows.ok() ? *rows : 0;
}

// D2O (design §4): the layer ratios, then D2oBudgetsFromRatios.
Result<Budgets> D2oBudgets(const PreparedCache& c, const D2oOptions& o, int64_t total) {
  KVC_ASSIGN_OR_RETURN(std::vector<double> ratio, D2oLayerRatios(c, o));
  return D2oBudgetsFromRatios(std::move(ratio), o, c.layout.n_layers, c.layout.n_kv_heads, c.T(),
                              total);
}

}  // namespace

Result<Budgets> AllocateBudgets(const PreparedCache& c, const ScoreSet& scores,
                                const CompactionSpec& spec, int64_t head_budget) {
  KVC_RETURN_IF_ERROR(CheckPrepared(c));
  if (head_budget < 0) {
    return Status::InvalidArgument("head budget must be >= 0, got " + std::to_string(head_budget));
  }
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads;
  const int64_t T = c.T();
  const int64_t total = static_cast<int64_t>(L) * H * head_budget;
  const Allocator a = ResolvedAllocator(spec);
  switch (a) {
    case Allocator::kDefault:
    case Allocator::kUniform:
      return BudgetsFromShares(std::vector<double>(size_t(L) * H, 1.0), L, H, T, total);
    case Allocator::kPyramid: {
      const int64_t w = ObservationWindow(c, spec.snapkv.window);
      return BudgetsFromShares(
          PerHeadShares(PyramidLayerBudgets(L, head_budget, w, spec.pyramid.beta), H), L, H, T,
          total);
    }
    case Allocator::kDynamicKv: {
      if (scores.n_layers != L || scores.n_kv_heads != H || scores.T != T ||
          scores.scores.size() != size_t(L) * H * T) {
        return Status::InvalidArgument("dynamickv allocator: scores do not match the cache");
      }
      const int64_t w = ObservationWindow(c, spec.dynamickv.window);
      const std::vector<int64_t> layer =
          DynamicKvLayerBudgets(scores, spec.dynamickv, w, head_budget);
      return BudgetsFromShares(PerHeadShares({layer.begin(), layer.end()}, H), L, H, T, total);
    }
    case Allocator::kD2o:
      return D2oBudgets(c, spec.d2o, total);
    case Allocator::kAm:
      return AllocateAmBudgets(c, spec, head_budget);
  }
  return Status::NotSupported("unknown allocator " + std::to_string(static_cast<int>(a)));
}

}  // namespace kvc::cpu
