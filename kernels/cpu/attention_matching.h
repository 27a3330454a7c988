// Attention Matching (design §4), per layer and KV head: select t keys, fit a log-bias beta per
// kept key and new values C_v so that attention over the compacted cache reproduces attention
// over the full cache on the fit queries.
//
// Notation (one head): K, V [T, d]; Q [n, d] the pooled fit queries of the GQA group;
// s_ij = q_i . k_j / sqrt(d); Phi_ij = exp(s_ij - max_j s_ij); z_i = sum_j Phi_ij.
//
// Choices inside the design's definitions (documented here, tested in attention_matching_test):
// - Least squares that are underdetermined (fewer fit queries than kept keys) take, among the
//   minimisers, the one nearest to the uncompacted cache: w nearest to 1 (beta = 0) and C_v
//   nearest to the kept values V_S. With as many independent queries as keys the minimiser is
//   unique and this changes nothing; with budget T it returns the cache unchanged.
// - The ridge (AmOptions::ridge > 0) shrinks C_v towards the kept values V_S, not towards 0:
//   min ||X C_v - Y||^2 + lambda ||C_v - V_S||^2, lambda = ridge * ||X||_F^2 / t. With ridge 0
//   this is the design's least squares; with a small ridge (1e-5) it removes the loss of held-out
//   fidelity when the fit queries barely outnumber the kept keys (n ~ t), where exact least
//   squares overfits, and it does better than shrinking towards 0 at every ratio we measured.
// - Safeguard: attention outputs are convex combinations of V's rows, so when a solve returns a
//   value beyond 4x the head's largest |V| (or a non-finite one, or fails), the solve was ill-conditioned
//   (n ~ t): the ridge is raised (first 1e-4 ||X||_F^2 / t, then x10, at most 8 solves) and, if
//   no solve is sane, C_v = V_S, the limit of an infinite ridge.
// - Refinement (refine_rounds > 0) replaces dropped keys by continuing OMP (OMP modes) or by the
//   next highest-attention keys (other modes); a dropped key is never selected again.
// - OMP refits solve the NNLS on the Gram matrix Phi_S^T Phi_S + delta I, delta = 1e-7 of the
//   largest column norm squared, so that the fit stays defined past n keys.
//
// Thread safety: every function is reentrant; the pool-taking entry points parallelise over
// (layer, head) with results independent of the thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/pipeline.h"
#include "kernels/cpu/thread_pool.h"

namespace kvc::cpu {

// Bounds on w = exp(beta) (design §4, step 2).
inline constexpr double kBetaLoHighest = 0.049787068367863944;  // e^-3
inline constexpr double kBetaHiHighest = 20.085536923187668;    // e^3
inline constexpr double kBetaLoOmp = 1e-12;
inline constexpr double kBetaHiOmp = 1096.6331584284585;  // e^7
// Refinement drops keys whose beta is below this.
inline constexpr double kRefineDropBelow = -7.0;

// One KV head's inputs. Borrowed pointers; the caller keeps them alive.
struct AmHead {
  const float* k = nullptr;  // [T, d]
  const float* v = nullptr;  // [T, d]
  const float* q = nullptr;  // [n, d] pooled fit queries
  int64_t T = 0;
  int64_t n = 0;
  int d = 0;
};

// Head h of layer l with its group's fit queries pooled (they are contiguous in q_fit).
// REQUIRES: c.layers[l].q_fit has a value.
AmHead MakeAmHead(const PreparedCache& c, int l, int h);

// Full attention of the fit queries over all keys of one head.
struct AttentionStats {
  int64_t n = 0;
  int64_t T = 0;
  std::vector<float> phi;  // [n, T]: Phi_ij = exp(s_ij - max_j s_ij)
  std::vector<float> z;    // [n]: z_i = sum_j Phi_ij (summed in double), >= 1
};
AttentionStats ComputeAttentionStats(const AmHead& head);
// The same into `st`, reusing its buffers (no new allocation when the shape is unchanged: fresh
// n x T buffers cost a page fault per 4 KiB, as much as the exp pass at 32k tokens).
void ComputeAttentionStats(const AmHead& head, AttentionStats& st);

// Highest-attention score of every key: score_j = sqrt(mean_i a_ij^2), a_ij = Phi_ij / z_i.
std::vector<float> HighestAttentionScores(const AttentionStats& st);

// The `t` positions with the largest scores (ties: lower position first), always including
// `keep` and never a position with blocked[j] != 0 (blocked may be empty). Sorted ascending.
// Returns fewer than t only when not enough positions are left.
std::vector<int64_t> TopPositions(const std::vector<float>& scores, int64_t t,
                                  const std::vector<char>& blocked,
                                  const std::vector<int64_t>& keep = {});

// OMP / OMP-fast selection of `t` keys (design §4, step 1). Starts from `start` (already
// selected, refitted first), never selects a blocked position, follows `schedule` (plain OMP is
// the single stage {max, 1, 1}) and refits the weights w >= 0 within [kBetaLoOmp, kBetaHiOmp]
// with `pg_steps` projected-gradient steps. Result sorted ascending.
std::vector<int64_t> OmpSelect(const AttentionStats& st, int64_t t,
                               const std::vector<OmpStage>& schedule,
                               const std::vector<int64_t>& start, const std::vector<char>& blocked,
                               int pg_steps);

// beta = log w, w = argmin_{lo <= w <= hi} ||Phi[:, sel] w - z||^2 (BoundedLeastSquares with
// prior w = 1). `sel` non-empty.
Result<std::vector<float>> FitBeta(const AttentionStats& st, const std::vector<int64_t>& sel,
                                   double lo, double hi, int pg_steps);

// C_v [t, d] = argmin ||X C_v - Y||_F^2 + lambda ||C_v - V_S||_F^2 (see above),
// X = softmax(Q K_S^T / sqrt(d) + beta), Y = softmax(Q K^T / sqrt(d)) V.
Result<std::vector<float>> FitValues(const AmHead& head, const AttentionStats& st,
                                     const std::vector<int64_t>& sel,
                                     const std::vector<float>& beta, double ridge);

// Compacts one head to min(budget, T) keys. `sel` empty: select per o.selection (highest, OMP,
// OMP-fast); otherwise `sel` (sorted, unique, size min(budget, T)) is the selection. Honours
// o.fit_beta, o.fit_values and o.refine_rounds. InvalidArgument for a bad selection.
// `scratch` (optional) holds the head's AttentionStats; reusing one per thread saves allocations.
Result<HeadResult> FitAmHead(const AmHead& head, const std::vector<int64_t>& sel, int64_t budget,
                             const AmOptions& o, AttentionStats* scratch = nullptr);

// Pool-taking forms of the pipeline entry points (pipeline.h); those use one thread per core.
// `sel` may be empty (every head selects itself) or hold [L][H] selections.
Result<LayerResults> AttentionMatchingFit(const PreparedCache& c, const Selection& sel,
                                          const Budgets& budgets, const AmOptions& o,
                                          ThreadPool& pool);
Result<ScoreSet> ScoreHighestAttention(const PreparedCache& c, ThreadPool& pool);

}  // namespace kvc::cpu
