// Budget allocation helpers (design §4 "Budget allocation"). AllocateBudgets (pipeline.h) picks an
// allocator; every allocator computes real-valued shares per (layer, head) and turns them into
// integers with ApportionExact, so every result sums exactly to its total.
//
// Not a public header. Thread safety: free functions over const inputs.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/pipeline.h"
#include "kernels/spec.h"

namespace kvc::cpu {

// Largest-remainder apportionment with per-entry caps: returns integers b_i in [0, caps[i]] with
// sum_i b_i = min(total, sum_i caps[i]), b_i as close as possible to total * shares[i] /
// sum(shares). Entries whose ideal exceeds their cap are fixed at the cap and the rest is
// re-apportioned over the others (water filling); the leftover units after flooring go to the
// largest fractional parts, ties to the lower index. Negative or non-finite shares count as 0; when
// every share is 0 the shares are taken as equal. REQUIRES: shares.size() == caps.size(), total >=
// 0, caps[i] >= 0.
std::vector<int64_t> ApportionExact(const std::vector<double>& shares, int64_t total,
                                    const std::vector<int64_t>& caps);

// Shares [L * H] (layer-major) -> Budgets with an exact total of min(total, L * H * T),
// every entry in [0, T]. The one path every allocator uses to produce its result.
Budgets BudgetsFromShares(const std::vector<double>& shares, int L, int H, int64_t T,
                          int64_t total);

// PyramidKV's schedule (design §4), per layer, window w, average per-head capacity cap:
//   min = (cap - w) / beta, max = 2 (cap - w) - min,
//   budget_l = w + round(max - l (max - min) / (L - 1))      (L = 1: budget_0 = cap).
// Returns L reals (not yet scaled to the exact total). When cap <= w every layer gets cap.
std::vector<double> PyramidLayerBudgets(int L, int64_t cap, int64_t w, double beta);

// DynamicKV's re-normalisation (design §4) over the scores of a ScoreSet, returning the per-head
// budget of every layer b_l + w (integers, summing to L * cap when cap > w). w = the observation
// window (positions T-w..T-1 are not ranked), cap = head_budget. See dynamickv.cc.
std::vector<int64_t> DynamicKvLayerBudgets(const ScoreSet& scores, const DynamicKvOptions& o,
                                           int64_t w, int64_t cap);

// D2O layer ratios (design §4): ratio_l = clamp(softmax(-sigma)_l * L * rho, 0.01, 1),
// rho = hh_ratio + recent_ratio, sigma_l = mean over the layer's query heads of the variance over
// positions of the min-max-normalised column sums of the window attention. Needs q_window.
Result<std::vector<double>> D2oLayerRatios(const PreparedCache& c, const D2oOptions& o);

// The arithmetic half of D2oLayerRatios, from the per-layer statistics sigma_l (L entries), so a
// GPU backend that computes sigma on the device shares this allocation exactly.
// REQUIRES: sigma non-empty.
std::vector<double> D2oRatiosFromSigma(const std::vector<double>& sigma, const D2oOptions& o);

// D2O's budgets (Allocator::kD2o) from its layer ratios (L entries): uncompressed layers get T
// per head when `total` allows it, the rest of `total` is spread over the other layers in
// proportion to ratio_l (capped at T); when `total` cannot hold the uncompressed layers whole,
// every layer shares it in proportion to its ratio, the uncompressed layers with ratio 1.
Budgets D2oBudgetsFromRatios(std::vector<double> ratio, const D2oOptions& o, int L, int H,
                             int64_t T, int64_t total);

// Uncompressed layers of D2O as indices in [0, L): negative entries count from the end;
// out-of-range entries are ignored (the default {0, 1, -1} must fit any depth); sorted, unique.
std::vector<int> D2oUncompressedLayers(const D2oOptions& o, int L);

}  // namespace kvc::cpu
