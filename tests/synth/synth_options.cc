// Presets and validation of SynthOptions.
#include <cmath>
#include <string>

#include "tests/synth/synth_kv.h"
#include "tests/synth/synth_plan.h"

namespace kvc {
namespace {

constexpr int kMaxTopicId = 64;
constexpr int64_t kMaxRef = int64_t{1} << 20;

Status Bad(const std::string& what) { return Status::InvalidArgument("synth options: " + what); }

bool InRange(double x, double lo, double hi) { return std::isfinite(x) && x >= lo && x <= hi; }

Status ValidateQueries(const SynthOptions& o) {
  const int64_t T = o.layout.tokens;
  if (o.emit_q_window && (o.window < 1 || o.window > T)) {
    return Bad("window " + std::to_string(o.window) + " outside [1, T=" + std::to_string(T) + "]");
  }
  if (o.emit_q_ref && (o.n_ref < 1 || o.n_ref > kMaxRef)) {
    return Bad("n_ref " + std::to_string(o.n_ref) + " outside [1, 1048576]");
  }
  if (!InRange(o.repeat_prefill_share, 0, 1)) return Bad("repeat_prefill_share outside [0, 1]");
  if (!InRange(o.ref_focus, 0, 1)) return Bad("ref_focus outside [0, 1]");
  return Status::OK();
}

Status ValidateSchedule(const SynthOptions& o) {
  if (o.schedule.empty()) return Bad("schedule is empty");
  for (size_t k = 0; k < o.schedule.size(); ++k) {
    const SynthSegmentSpec& s = o.schedule[k];
    if (!std::isfinite(s.weight) || s.weight <= 0) {
      return Bad("schedule segment " + std::to_string(k) + " weight must be finite and > 0");
    }
    if (s.topic < 0 || s.topic >= kMaxTopicId) {
      return Bad("schedule segment " + std::to_string(k) + " topic outside [0, 64)");
    }
  }
  std::vector<SynthSegment> segments;
  return synth_detail::ComputeSegments(o, &segments).WithContext("synth options");
}

Status ValidateStrengths(const SynthOptions& o) {
  if (o.n_sinks < 0 || o.n_sinks >= o.layout.tokens) return Bad("n_sinks outside [0, T)");
  if (!InRange(o.sink_bias, -30, 30)) return Bad("sink_bias must be finite, |sink_bias| <= 30");
  if (!InRange(o.heavy_hitter_fraction, 0, 0.5)) {
    return Bad("heavy_hitter_fraction outside [0, 0.5]");
  }
  if (!InRange(o.heavy_hitter_logit, 0, 30)) return Bad("heavy_hitter_logit outside [0, 30]");
  if (!InRange(o.recency_logit, 0, 30)) return Bad("recency_logit outside [0, 30]");
  if (!InRange(o.content_logit_std, 0, 10) || o.content_logit_std == 0) {
    return Bad("content_logit_std outside (0, 10]");
  }
  if (!InRange(o.topic_logit_gap, 0, 10)) return Bad("topic_logit_gap outside [0, 10]");
  if (o.topic_logit_gap / 1.5 >= o.content_logit_std) {
    return Bad("topic_logit_gap / 1.5 must be < content_logit_std");
  }
  if (!InRange(o.key_autocorr, 0, 1) || o.key_autocorr == 1) {
    return Bad("key_autocorr outside [0, 1)");
  }
  if (!std::isfinite(o.rope_theta) || o.rope_theta <= 1) return Bad("rope_theta must be > 1");
  return Status::OK();
}

}  // namespace

SynthOptions SynthTiny() {
  SynthOptions o;
  o.layout = {2, 2, 4, 16, DType::kF32, 256};
  o.n_ref = 128;
  return o;
}

SynthOptions SynthSmall() {
  SynthOptions o;
  o.layout = {4, 4, 16, 64, DType::kF32, 2048};
  return o;
}

SynthOptions SynthLlama31_8B(int64_t tokens) {
  SynthOptions o;
  o.layout = {32, 8, 32, 128, DType::kF16, tokens};
  o.rope_theta = 500000.0;
  return o;
}

Status ValidateSynthOptions(const SynthOptions& o) {
  KVC_RETURN_IF_ERROR(o.layout.Validate().WithContext("synth options"));
  const int d = o.layout.head_dim;
  if (d % 2 != 0 || d < 8) return Bad("head_dim must be even and >= 8 (RoPE pairs)");
  if (o.topic_rank < 0 || (o.topic_rank > 0 && o.topic_rank + 3 > d)) {
    return Bad("topic_rank must be 0 (auto) or in [1, head_dim - 3]");
  }
  if (o.threads < 0) return Bad("threads must be >= 0");
  KVC_RETURN_IF_ERROR(ValidateQueries(o));
  KVC_RETURN_IF_ERROR(ValidateSchedule(o));
  return ValidateStrengths(o);
}

}  // namespace kvc
