// ComputeScores: the scoring stage of the pipeline, dispatched on the requested method.
#include <string>

#include "kernels/cpu/attention_scores.h"
#include "kernels/cpu/pipeline.h"

namespace kvc::cpu {
namespace {

// Scores of a selector method (anything but AM itself), as used on its own or as AM's selector.
Result<ScoreSet> ScoreWith(Method m, const PreparedCache& c, const CompactionSpec& spec,
                           int64_t head_budget) {
  switch (m) {
    case Method::kOkDmd:
      return ScoreOkDmd(c, spec.okdmd, spec.seed);
    case Method::kDynamicKv:
      return ScoreDynamicKv(c, spec.dynamickv);
    case Method::kD2o:
      return ScoreD2o(c, spec.d2o, head_budget);
    case Method::kStreamingLlm:
      return ScoreStreamingLlm(c, spec.streaming);
    case Method::kH2o:
      return ScoreH2o(c, spec.h2o, head_budget);
    case Method::kSnapKv:
    case Method::kPyramidKv:  // PyramidKV ranks by SnapKV's scores; only its budgets differ
      return ScoreSnapKv(c, spec.snapkv);
    case Method::kAttentionMatching:
      return ScoreHighestAttention(c);
  }
  return Status::NotSupported("unknown method " + std::to_string(static_cast<int>(m)));
}

}  // namespace

// AM: highest-attention scores (kHighestAttention), the selector's scores (kScores; AM as its own
// selector means highest attention), or all-zero scores with nothing forced for OMP / OMP-fast,
// which select inside AttentionMatchingFit.
Result<ScoreSet> ComputeScores(const PreparedCache& c, const CompactionSpec& spec,
                               int64_t head_budget) {
  KVC_RETURN_IF_ERROR(CheckPrepared(c));
  if (spec.method != Method::kAttentionMatching) {
    return ScoreWith(spec.method, c, spec, head_budget);
  }
  switch (spec.am.selection) {
    case AmSelection::kHighestAttention:
      return ScoreHighestAttention(c);
    case AmSelection::kScores:
      return ScoreWith(spec.am.selector, c, spec, head_budget);
    case AmSelection::kOmp:
    case AmSelection::kOmpFast:
      return ScoreSet::Zeros(c.layout.n_layers, c.layout.n_kv_heads, c.T());
  }
  return Status::NotSupported("unknown am selection " +
                              std::to_string(static_cast<int>(spec.am.selection)));
}

}  // namespace kvc::cpu
