#include "tests/synth/synth_plan.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>

#include "tests/synth/synth_random.h"

namespace kvc::synth_detail {
namespace {

// Row i of n is a repeat-prefill row when the running count of n_rep evenly spread rows steps.
bool IsRepeatRow(int64_t i, int64_t n, int64_t n_rep) {
  return (i + 1) * n_rep / n > i * n_rep / n;
}

int PickTopic(const Plan& plan, uint64_t draw, int focus_topic) {
  if (ToUniform(draw) < plan.opts.ref_focus) return focus_topic;
  const uint64_t k = Mix64(draw) % plan.distinct_topics.size();
  return plan.distinct_topics[k];
}

void PlanQueries(Plan* plan) {
  const SynthOptions& o = plan->opts;
  if (o.emit_q_window) {
    const uint64_t key = StreamKey(o.seed, {kStreamQueryTopics, kQueryWindow});
    for (int64_t i = 0; i < o.window; ++i) {
      plan->window_pos.push_back(plan->T - o.window + i);
      plan->window_topic.push_back(PickTopic(*plan, StreamValue(key, i), plan->final_topic));
    }
  }
  if (o.emit_q_ref) {
    const uint64_t key = StreamKey(o.seed, {kStreamQueryTopics, kQueryRef});
    const uint64_t pos_key = StreamKey(o.seed, {kStreamRepeatPos});
    const int64_t n_rep = std::llround(o.repeat_prefill_share * static_cast<double>(o.n_ref));
    int64_t next_continuation = plan->T;
    for (int64_t i = 0; i < o.n_ref; ++i) {
      int64_t pos;
      int focus = plan->final_topic;
      if (IsRepeatRow(i, o.n_ref, n_rep)) {
        pos = static_cast<int64_t>(ToUniform(StreamValue(pos_key, i)) * plan->T);
        pos = std::min(pos, plan->T - 1);
        focus = plan->topic_of[pos];
      } else {
        pos = next_continuation++;
      }
      plan->ref_pos.push_back(pos);
      plan->ref_topic.push_back(PickTopic(*plan, StreamValue(key, i), focus));
    }
  }
}

void PlanCoherence(Plan* plan) {
  int64_t rows = plan->T;
  for (int64_t p : plan->ref_pos) rows = std::max(rows, p + 1);
  plan->rope_rows = rows;
  const double log_theta = std::log(plan->opts.rope_theta);
  const double span = static_cast<double>(rows);
  plan->coherence.resize(plan->pairs);
  for (int i = 0; i < plan->pairs; ++i) {
    const double freq = std::exp(-2.0 * i / plan->d * log_theta);
    const double x = freq * span;  // largest rotation of the pair between a query and a key
    plan->coherence[i] = 1.0 / (1.0 + x * x * x * x);
  }
}

}  // namespace

Status ComputeSegments(const SynthOptions& opts, std::vector<SynthSegment>* out) {
  double total = 0;
  for (const SynthSegmentSpec& s : opts.schedule) total += s.weight;
  out->clear();
  double cum = 0;
  int64_t begin = 0;
  const int64_t T = opts.layout.tokens;
  for (size_t k = 0; k < opts.schedule.size(); ++k) {
    cum += opts.schedule[k].weight;
    const int64_t end =
        k + 1 == opts.schedule.size() ? T : std::min<int64_t>(T, std::llround(cum / total * T));
    if (end <= begin) {
      return Status::InvalidArgument("schedule segment " + std::to_string(k) +
                                     " gets no positions at T=" + std::to_string(T));
    }
    out->push_back({begin, end, opts.schedule[k].topic});
    begin = end;
  }
  return Status::OK();
}

Result<Plan> MakePlan(const SynthOptions& opts) {
  KVC_RETURN_IF_ERROR(ValidateSynthOptions(opts));
  Plan plan;
  plan.opts = opts;
  plan.d = opts.layout.head_dim;
  plan.pairs = plan.d / 2;
  plan.rank = opts.topic_rank > 0 ? opts.topic_rank : std::clamp(plan.d / 16, 2, 16);
  plan.T = opts.layout.tokens;
  KVC_RETURN_IF_ERROR(ComputeSegments(opts, &plan.segments));
  for (const SynthSegment& s : plan.segments) {
    plan.distinct_topics.push_back(s.topic);
    plan.n_topics = std::max(plan.n_topics, s.topic + 1);
  }
  std::sort(plan.distinct_topics.begin(), plan.distinct_topics.end());
  plan.distinct_topics.erase(std::unique(plan.distinct_topics.begin(), plan.distinct_topics.end()),
                             plan.distinct_topics.end());
  plan.final_topic = plan.segments.back().topic;
  plan.topic_of.resize(plan.T);
  for (const SynthSegment& s : plan.segments) {
    std::fill(plan.topic_of.begin() + s.begin, plan.topic_of.begin() + s.end, s.topic);
  }
  PlanQueries(&plan);
  PlanCoherence(&plan);
  return plan;
}

void BuildRopeTable(Plan* plan, int threads) {
  const int pairs = plan->pairs;
  std::vector<double> freq(pairs);
  const double log_theta = std::log(plan->opts.rope_theta);
  for (int i = 0; i < pairs; ++i) freq[i] = std::exp(-2.0 * i / plan->d * log_theta);
  plan->rope.resize(static_cast<size_t>(plan->rope_rows) * pairs * 2);
  constexpr int64_t kChunk = 1024;
  const int64_t chunks = (plan->rope_rows + kChunk - 1) / kChunk;
  ParallelFor(chunks, threads, [&](int64_t c) {
    const int64_t end = std::min(plan->rope_rows, (c + 1) * kChunk);
    for (int64_t pos = c * kChunk; pos < end; ++pos) {
      float* row = plan->rope.data() + pos * pairs * 2;
      for (int i = 0; i < pairs; ++i) {
        const double angle = static_cast<double>(pos) * freq[i];
        row[2 * i] = static_cast<float>(std::cos(angle));
        row[2 * i + 1] = static_cast<float>(std::sin(angle));
      }
    }
  });
}

uint64_t HeavyHitterKey(uint64_t seed, int layer, int kv_head) {
  return StreamKey(seed,
                   {kStreamHeavy, static_cast<uint64_t>(layer), static_cast<uint64_t>(kv_head)});
}

bool IsHeavyHitter(uint64_t key, int64_t pos, int n_sinks, double fraction, float* amplitude) {
  if (pos < n_sinks) return false;
  const uint64_t x = StreamValue(key, static_cast<uint64_t>(pos));
  if (ToUniform(x) >= fraction) return false;
  if (amplitude != nullptr) *amplitude = 0.7f + 0.6f * static_cast<float>(ToUniform(Mix64(x)));
  return true;
}

void ParallelFor(int64_t n, int threads, const std::function<void(int64_t)>& fn) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int64_t workers = std::min<int64_t>(threads, n);
  if (workers <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<int64_t> next{0};
  auto loop = [&] {
    for (int64_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (int64_t w = 1; w < workers; ++w) pool.emplace_back(loop);
  loop();
  for (std::thread& t : pool) t.join();
}

}  // namespace kvc::synth_detail
