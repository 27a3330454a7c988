// PyramidKV (design §4 "Baselines"): SnapKV scores (snapkv.cc) with per-layer budgets decreasing
// linearly from max at layer 0 to min at layer L-1. This file holds the schedule; budgets.cc turns
// it into exact integer budgets.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/budgets.h"

namespace kvc::cpu {

// cap = w + T(1 - r) is the average per-head capacity (the head budget, window included);
//   min = (cap - w) / beta, max = 2 (cap - w) - min,
//   budget_l = w + round(max - l (max - min) / (L - 1)).
// The mean of max - l (max - min) / (L - 1) over l is (max + min) / 2 = cap - w, so the layers
// average cap before rounding. A budget above T is left to the caller's cap at T.
std::vector<double> PyramidLayerBudgets(int L, int64_t cap, int64_t w, double beta) {
  std::vector<double> out(std::max(L, 0), static_cast<double>(cap));
  if (L <= 1 || cap <= w || beta <= 0.0) return out;
  const double free = static_cast<double>(cap - w);
  const double lo = free / beta;
  const double hi = 2.0 * free - lo;
  for (int l = 0; l < L; ++l) {
    out[l] = static_cast<double>(w) + std::round(hi - l * (hi - lo) / (L - 1));
  }
  return out;
}

}  // namespace kvc::cpu
