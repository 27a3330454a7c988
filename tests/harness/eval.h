// End-to-end and attention-level quality of a compacted cache against the full cache, on a real
// model, plus the trivial compactions the harness tests itself with.
//
// End to end: each held-out continuation c_0..c_{n-1} is fed token by token after the prefix
// (the full context, or the compacted cache standing for it; c_i at position T + i). After each
// fed token both runs give a next-token distribution; the harness compares them position by
// position:
//   KL(full || compacted) in nats, averaged over all positions (and its maximum);
//   top-1 agreement: share of positions where both argmaxes agree;
//   perplexity of the reference continuation c_1..c_{n-1} under both (a continuation of n
//   tokens scores n-1 targets: c_0 is predicted by the context's last logits, which a
//   compacted cache does not change).
//
// Attention level (design §4 fidelity metrics), on held-out queries: per (layer, kv head), the
// group's queries attend to the full context (softmax(qK^T/sqrt d) V) and to the compacted head
// (softmax(qK_c^T/sqrt d + beta) V_c); cosine and relative L2 error of the outputs and the mass
// error |exp(lse_c - lse_full) - 1| are averaged over queries; the report gives the mean, min
// and p10 of the per-head cosine and means of the others. An empty head has cosine 0.
//
// Thread safety: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "tests/harness/llama2.h"

namespace kvc::harness {

struct EndToEndMetrics {
  double mean_kl = 0.0;         // mean KL(full || compacted) over positions, nats
  double max_kl = 0.0;          // largest per-position KL
  double top1_agreement = 0.0;  // in [0, 1]
  double ppl_full = 0.0;        // perplexity of the continuations under the full cache
  double ppl_compacted = 0.0;   // the same under the compacted cache
  int64_t positions = 0;        // compared distributions (sum of continuation lengths)
  int64_t targets = 0;          // scored tokens for the perplexities

  double ppl_ratio() const { return ppl_full > 0.0 ? ppl_compacted / ppl_full : 0.0; }
};

// Full-cache next-token log-probabilities of every continuation, computed once and reused to
// score many compacted caches of the same context.
struct FullReference {
  int64_t context_tokens = 0;
  std::vector<std::vector<int>> continuations;
  std::vector<std::vector<std::vector<double>>> log_probs;  // [cont][pos][vocab]
};

// Prefills `context` with the full cache and decodes each continuation.
// InvalidArgument for an empty context, an empty continuation or a token out of range.
Result<FullReference> ComputeFullReference(const Llama2Model& model,
                                           const std::vector<int>& context,
                                           const std::vector<std::vector<int>>& continuations);

// Scores `compacted` (standing for the reference's context) against `ref`. InvalidArgument when
// the reference holds no continuations, the compacted cache is invalid or does not match the
// model, or its layout.tokens differs from the reference's context length.
Result<EndToEndMetrics> EvaluateAgainst(const Llama2Model& model, const FullReference& ref,
                                        const CompactedCache& compacted);

// ComputeFullReference followed by EvaluateAgainst.
Result<EndToEndMetrics> EvaluateEndToEnd(const Llama2Model& model, const std::vector<int>& context,
                                         const CompactedCache& compacted,
                                         const std::vector<std::vector<int>>& continuations);

struct AttentionFidelity {
  double mean_cosine = 0.0;
  double min_cosine = 0.0;
  double p10_cosine = 0.0;  // 10th percentile over heads (nearest rank)
  double mean_rel_l2 = 0.0;
  double mean_mass_error = 0.0;
  int64_t heads = 0;  // (layer, kv head) pairs measured
};

// `queries`: per layer [n_q, N, d] (any floating dtype), e.g. HarnessData::heldout_queries.
// InvalidArgument on shape or layout mismatches between `full`, `queries` and `compacted`.
Result<AttentionFidelity> MeasureAttentionFidelity(const KvCache& full,
                                                   const std::vector<Tensor>& queries,
                                                   const CompactedCache& compacted);

// ---- Trivial compactions for testing the harness itself. -------------------------------------

// keep[l][h]: source positions kept by (layer l, kv head h), in the order given; a position may
// repeat (a duplicated key). K and V are copied from `full`, beta = 0, dtype of `full`.
// InvalidArgument on a shape mismatch, a position outside [0, T) or a head over T entries.
Result<CompactedCache> GatherCompaction(const KvCache& full,
                                        const std::vector<std::vector<std::vector<int64_t>>>& keep);

// Every key of every head, in order, beta = 0 (budget T): attention over it equals the full cache.
Result<CompactedCache> KeepAllCompaction(const KvCache& full);

// The same `positions` for every (layer, head), beta = 0.
Result<CompactedCache> KeepPositionsCompaction(const KvCache& full,
                                               const std::vector<int64_t>& positions);

}  // namespace kvc::harness
