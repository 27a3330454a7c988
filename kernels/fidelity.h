// Fidelity of a compacted KV cache (design §4): how well attention over the compacted cache
// reproduces attention over the full cache, measured on held-out queries.
//
// For a query q of query head hq (against KV head h = hq / group), with s_j = q . k_j / sqrt(d)
// over the full keys and s_c,j = q . kc_j / sqrt(d) + beta_j over the compacted keys:
//   o   = softmax(s) V               (full output)
//   c   = softmax(s_c) C_v           (compacted output)
//   cosine      = o . c / (|o| |c|)  (0 when either is zero)
//   rel_l2      = |o - c| / |o|      (|c| when o is zero)
//   mass_error  = |exp(lse(s_c) - lse(s)) - 1|  (1 for a head with no kept keys)
// A head's value is the mean over its held-out queries; heads are query heads. The report
// summarises heads per layer and overall by mean, min, p10, p90 and max (percentiles by linear
// interpolation between order statistics). The quality gate reads overall.cosine.mean.
//
// Thread safety: plain values; EvaluateFidelity is reentrant.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "common/tensor.h"

namespace kvc {

struct HeadFidelity {
  int layer = 0;
  int q_head = 0;
  int kv_head = 0;
  double cosine = 0;
  double rel_l2 = 0;
  double mass_error = 0;
};

// Order statistics of one metric over a set of heads.
struct FidelityStats {
  double mean = 0;
  double min = 0;
  double p10 = 0;
  double p90 = 0;
  double max = 0;
};

struct FidelitySummary {
  int64_t heads = 0;
  FidelityStats cosine;
  FidelityStats rel_l2;
  FidelityStats mass_error;
};

struct FidelityReport {
  int64_t queries_per_head = 0;         // held-out queries per query head
  std::vector<HeadFidelity> heads;      // layer-major, then query head
  std::vector<FidelitySummary> layers;  // one per layer
  FidelitySummary overall;

  bool empty() const { return heads.empty(); }
  // A readable table: one row per layer and an "all" row (cosine mean/min/p10, rel L2
  // mean/p90/max, mass error mean/p90/max).
  std::string ToText() const;
  // One line of JSON: queries_per_head, overall and per-layer summaries (with_heads adds the
  // per-head values).
  std::string ToJson(bool with_heads = false) const;
};

// Summarises per-head values (any order) over `n_layers` layers.
FidelityReport SummarizeFidelity(std::vector<HeadFidelity> heads, int n_layers,
                                 int64_t queries_per_head);

// Evaluates `compacted` against `full` on `queries`: one tensor per layer, [n_q_heads, N, d],
// any floating dtype, the same N in every layer. All computation in f32.
// InvalidArgument when the caches fail validation, their layouts differ (layers, heads,
// head_dim, tokens) or the queries do not match the layout or hold NaN/Inf.
// threads <= 0: one per core.
Result<FidelityReport> EvaluateFidelity(const KvCache& full, const CompactedCache& compacted,
                                        const std::vector<Tensor>& queries, int threads = 0);

}  // namespace kvc
