// StreamingLLM (design §4 "Baselines"): the first `sinks` tokens (attention sinks) plus the most
// recent tokens. Needs no queries.
#include <string>

#include "kernels/cpu/attention_scores.h"

namespace kvc::cpu {

// score[j] = j (a later token ranks higher), forced = {0, ..., sinks - 1}: SelectTopK then keeps
// the sinks and fills the rest of each head's budget with the most recent positions.
Result<ScoreSet> ScoreStreamingLlm(const PreparedCache& c, const StreamingLlmOptions& o) {
  KVC_RETURN_IF_ERROR(CheckPrepared(c));
  if (o.sinks < 0) {
    return Status::InvalidArgument("streaming.sinks must be >= 0, got " + std::to_string(o.sinks));
  }
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads;
  ScoreSet out = ScoreSet::Zeros(L, H, c.T());
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) {
      float* s = out.at(l, h);
      for (int64_t j = 0; j < c.T(); ++j) s[j] = static_cast<float>(j);
    }
  }
  out.forced = SinksAndRecent(c.T(), o.sinks, 0);
  return out;
}

}  // namespace kvc::cpu
