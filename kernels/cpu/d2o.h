// D2O (design §4): layer budgets from attention variance (budgets.h), token eviction by
// cumulative attention (ScoreD2o), and merging of evicted tokens into their most similar kept key
// with an EMA threshold.
//
// Not a public header. Thread safety: D2oThreshold is a value; free functions over const inputs.
#pragma once

#include <vector>

#include "common/status.h"
#include "kernels/cpu/pipeline.h"
#include "kernels/spec.h"

namespace kvc::cpu {

// The merge threshold of one layer across eviction rounds (design §4): tau = mean(s) on first
// use, then tau <- alpha tau + beta mean(s).
class D2oThreshold {
 public:
  // Folds in the mean similarity of this round's evicted tokens; returns the threshold to use.
  double Update(double mean_s, const D2oOptions& o);
  bool initialised() const { return initialised_; }
  double tau() const { return tau_; }

 private:
  bool initialised_ = false;
  double tau_ = 0.0;
};

// InvalidArgument unless sel is [L][H] with every head's positions sorted, unique, in [0, T).
Status CheckD2oSelection(const PreparedCache& c, const Selection& sel);

// One eviction round of D2O's merge over every layer. thresholds[l] carries layer l's threshold
// from round to round (a caller re-compacting a growing cache passes the same vector each time);
// it is resized to L when empty. D2oMerge (pipeline.h) is one round with fresh thresholds.
//
// Per layer l and head h, for each evicted position e (not in sel[l][h]): s_he = max_j cos(k_e,
// k_j) over the kept keys j, j*_he its argmax (ties: the earlier kept key). m_e = mean of s_he over
// the heads that evicted e; tau = thresholds[l].Update(mean_e m_e). e merges in head h iff
// m_e >= tau: k_j <- (k_j + sum_{e -> j} s_he k_e) / (1 + n_j), n_j = number merged into j; the
// same weights and assignment for values. beta = 0.
// InvalidArgument when sel does not match the cache (shape, unsorted or out-of-range positions).
Result<LayerResults> D2oMergeRound(const PreparedCache& c, const Selection& sel,
                                   const D2oOptions& o, std::vector<D2oThreshold>* thresholds);

}  // namespace kvc::cpu
