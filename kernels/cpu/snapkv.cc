// SnapKV (design §4 "Baselines"): mean attention of the window queries over the prefix, pooled
// with a 1-D kernel (stride 1, padding kernel/2), mean over the GQA group; the observation window
// itself is always kept (forced) and the rest of each head's budget is the top pooled scores.
#include <string>

#include "kernels/cpu/attention_scores.h"

namespace kvc::cpu {

// score_h[j] = mean_{q in group(h)} Pool1d( (1/w) sum_{r < w} softmax_causal(q_r . k / sqrt(d))_j )
// over the prefix j < T - w; forced = {T - w, ..., T - 1}. w = the last `o.window` rows of
// q_window (all rows when 0; at most W).
Result<ScoreSet> ScoreSnapKv(const PreparedCache& c, const SnapKvOptions& o) {
  KVC_RETURN_IF_ERROR(CheckPrepared(c));
  if (o.kernel < 1) {
    return Status::InvalidArgument("snapkv.kernel must be >= 1, got " + std::to_string(o.kernel));
  }
  KVC_ASSIGN_OR_RETURN(const int64_t rows, WindowRows(c, o.window, "snapkv"));
  return WindowPooledScores(c, rows, o.kernel, o.pooling, /*mean_over_rows=*/true);
}

}  // namespace kvc::cpu
