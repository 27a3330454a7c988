// The resolved plan of one synthetic cache (internal to tests/synth): segments, topics and
// positions of every query row, RoPE coherence per pair and the RoPE table, heavy-hitter
// membership. Everything here is shared read-only by the per-head generators.
//
// Thread safety: a Plan is immutable once built; the free functions are pure.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "common/status.h"
#include "tests/synth/synth_kv.h"

namespace kvc::synth_detail {

// Stream ids of the generator: one per kind of randomness (see synth_random.h).
enum Stream : uint64_t {
  kStreamModel = 1,         // per (layer, KV head): directions, subspaces, topic means
  kStreamKeys = 2,          // per (layer, KV head): key coordinates and noise
  kStreamValues = 3,        // per (layer, KV head): value coordinates and noise
  kStreamQueryProfile = 4,  // per (layer, KV head, query head): strengths and preferences
  kStreamQueryRows = 5,     // per (kind, layer, KV head, query head): query coordinates, noise
  kStreamHeavy = 6,         // per (layer, KV head): heavy-hitter membership
  kStreamQueryTopics = 7,   // per kind: the topic each query row is about
  kStreamRepeatPos = 8,     // positions of repeat-prefill rows
};

// Query kinds, as stream path elements.
enum QueryKind : uint64_t { kQueryWindow = 0, kQueryRef = 1 };

struct Plan {
  SynthOptions opts;
  int d = 0;      // head_dim
  int pairs = 0;  // head_dim / 2
  int rank = 0;   // resolved topic rank
  int n_topics = 0;
  int final_topic = 0;
  int64_t T = 0;
  std::vector<int> distinct_topics;  // topics of the schedule, ascending
  std::vector<SynthSegment> segments;
  std::vector<int> topic_of;  // [T]
  std::vector<int64_t> window_pos;
  std::vector<int> window_topic;
  std::vector<int64_t> ref_pos;
  std::vector<int> ref_topic;
  // coherence[i] in (0, 1]: how little pair i rotates over the context's distances:
  // 1 / (1 + x^4), x = theta_i * span (radians), span = rope_rows, the largest distance.
  std::vector<double> coherence;
  // RoPE table for positions [0, rope_rows): (cos, sin) per pair, row-major. Empty until
  // BuildRopeTable.
  int64_t rope_rows = 0;
  std::vector<float> rope;

  const float* RopeRow(int64_t pos) const { return rope.data() + pos * pairs * 2; }
};

// Splits [0, T) by the schedule's weights, in order. InvalidArgument if a segment gets no
// position. REQUIRES: the schedule's weights are finite and > 0.
Status ComputeSegments(const SynthOptions& opts, std::vector<SynthSegment>* out);

// Validates `opts` and resolves everything but the RoPE table.
Result<Plan> MakePlan(const SynthOptions& opts);

// Fills plan->rope for every position a key or query can have, using `threads` threads.
void BuildRopeTable(Plan* plan, int threads);

// Key of the heavy-hitter stream of (layer, KV head).
uint64_t HeavyHitterKey(uint64_t seed, int layer, int kv_head);
// True when `pos` is a heavy hitter of the head with stream `key`; *amplitude (if given)
// receives its strength in [0.7, 1.3). Sinks are never heavy hitters.
bool IsHeavyHitter(uint64_t key, int64_t pos, int n_sinks, double fraction, float* amplitude);

// Runs fn(i) for i in [0, n) on up to `threads` std::threads (0: hardware concurrency), each
// taking the next index from a shared counter. Returns when all are done.
void ParallelFor(int64_t n, int threads, const std::function<void(int64_t)>& fn);

}  // namespace kvc::synth_detail
