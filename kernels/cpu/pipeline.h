// Internal pipeline of the CPU reference compactor. The front (kernels/compactor.cc) runs:
//
//   Prepare -> Score -> Allocate budgets -> Select -> Post (AM fit | D2O merge | none)
//           -> Assemble CompactedCache -> Fidelity on held-out queries -> quality gate
//
// Every stage works on F32 copies (PreparedCache) whatever the input dtype.
// Not a public header: only kernels/ includes it.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "common/tensor.h"
#include "kernels/spec.h"

namespace kvc::cpu {

// F32 views of one request, made once by the front.
struct PreparedLayer {
  Tensor k;                         // F32 [n_kv, T, d]
  Tensor v;                         // F32 [n_kv, T, d]
  std::optional<Tensor> q_window;   // F32 [n_q, W, d], the last W context positions
  std::optional<Tensor> q_fit;      // F32 [n_q, N_fit, d]: q_ref without the held-out rows
  std::optional<Tensor> q_heldout;  // F32 [n_q, N_ho, d]: held-out rows of q_ref
};

struct PreparedCache {
  KvLayout layout;  // layout.dtype is the source dtype; tensors here are all F32
  std::vector<PreparedLayer> layers;

  int64_t T() const { return layout.tokens; }
  int d() const { return layout.head_dim; }
  // Row-major [T, d] block of kv head h in layer l.
  const float* K(int l, int h) const { return layers[l].k.data<float>() + size_t(h) * T() * d(); }
  const float* V(int l, int h) const { return layers[l].v.data<float>() + size_t(h) * T() * d(); }
};

// Importance of every position, per (layer, kv head); higher means keep. Positions in `forced`
// are kept in every head before anything else (sinks, recent window), in that order of priority.
struct ScoreSet {
  int n_layers = 0;
  int n_kv_heads = 0;
  int64_t T = 0;
  std::vector<float> scores;    // [L, H, T] row-major
  std::vector<int64_t> forced;  // sorted, unique positions in [0, T)

  float* at(int l, int h) { return scores.data() + (size_t(l) * n_kv_heads + h) * T; }
  const float* at(int l, int h) const { return scores.data() + (size_t(l) * n_kv_heads + h) * T; }
  static ScoreSet Zeros(int L, int H, int64_t T) {
    ScoreSet s;
    s.n_layers = L;
    s.n_kv_heads = H;
    s.T = T;
    s.scores.assign(size_t(L) * H * T, 0.f);
    return s;
  }
};

// Keys per (layer, kv head): budgets[l][h] in [0, T].
using Budgets = std::vector<std::vector<int64_t>>;

// Kept positions per (layer, kv head), sorted ascending, unique.
using Selection = std::vector<std::vector<std::vector<int64_t>>>;

// What one head contributes to the compacted cache.
struct HeadResult {
  std::vector<int64_t> positions;  // source position of each kept entry (sorted)
  std::vector<float> k;            // [t, d]
  std::vector<float> v;            // [t, d]
  std::vector<float> beta;         // [t]; zeros for selection-only methods
};
using LayerResults = std::vector<std::vector<HeadResult>>;  // [L][H]

// ---- Scoring (kernels/cpu/<method>.cc). Each fails with InvalidArgument naming the missing
// query kind when the method needs queries that were not sent. ---------------------------------
Result<ScoreSet> ScoreStreamingLlm(const PreparedCache& c, const StreamingLlmOptions& o);
Result<ScoreSet> ScoreH2o(const PreparedCache& c, const H2oOptions& o, int64_t head_budget);
// H2O's query check: InvalidArgument unless every layer has q_fit [n_q, N >= 1, d].
Status CheckH2oFitQueries(const PreparedCache& c);
Result<ScoreSet> ScoreSnapKv(const PreparedCache& c, const SnapKvOptions& o);
Result<ScoreSet> ScoreDynamicKv(const PreparedCache& c, const DynamicKvOptions& o);
Result<ScoreSet> ScoreD2o(const PreparedCache& c, const D2oOptions& o, int64_t head_budget);
Result<ScoreSet> ScoreOkDmd(const PreparedCache& c, const OkDmdOptions& o, uint64_t seed);
// AM highest-attention: score_j = sqrt(mean_i a_ij^2) over the fit queries of the GQA group.
Result<ScoreSet> ScoreHighestAttention(const PreparedCache& c);
// Dispatch on spec.method (and spec.am.selector when the method is AM with kScores).
Result<ScoreSet> ComputeScores(const PreparedCache& c, const CompactionSpec& spec,
                               int64_t head_budget);

// ---- Budget allocation (kernels/cpu/budgets.cc). `head_budget` is the average per head; the
// result sums to exactly L * H * head_budget (less only where T caps it), every entry in [0, T].
Result<Budgets> AllocateBudgets(const PreparedCache& c, const ScoreSet& scores,
                                const CompactionSpec& spec, int64_t head_budget);

// The data-driven AM allocator (Allocator::kAm), in kernels/cpu/am_allocator.cc: gives each
// head the keys that buy the most held-out fidelity, capped at 0.75 of a head's keys.
Result<Budgets> AllocateAmBudgets(const PreparedCache& c, const CompactionSpec& spec,
                                  int64_t head_budget);

// ---- Selection: forced positions first (as many as the budget allows), then top scores;
// ties broken by the lower position. Deterministic. ----------------------------------------------
Selection SelectTopK(const ScoreSet& scores, const Budgets& budgets);

// ---- Post steps. ------------------------------------------------------------------------------
// Selection only: copies K and V at the kept positions, beta = 0.
LayerResults GatherSelected(const PreparedCache& c, const Selection& sel);
// D2O: merges each evicted token into its most similar kept key (EMA threshold), per layer.
Result<LayerResults> D2oMerge(const PreparedCache& c, const Selection& sel, const D2oOptions& o);
// AM: fits beta and values on the fit queries for the given selection (or selects itself for
// OMP / OMP-fast, using budgets). Implemented in kernels/cpu/attention_matching.cc.
Result<LayerResults> AttentionMatchingFit(const PreparedCache& c, const Selection& sel,
                                          const Budgets& budgets, const AmOptions& o);

}  // namespace kvc::cpu
