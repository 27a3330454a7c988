// Seeded synthetic KV caches with the structure of real long-context caches, for tests and
// benchmarks of the compaction methods.
//
// What the generator builds, per layer and KV head (all keys and queries post-RoPE, design §3):
//   - attention sinks: the first `n_sinks` keys carry a large component along a direction that
//     every query of the head shares, in the lowest-frequency RoPE pairs (which barely rotate over
//     the context), so they draw attention from every query;
//   - recency: keys and queries share a constant pre-RoPE component in the high-frequency pairs;
//     after RoPE its dot product is a sum of cos(distance * theta_i), which decays with distance
//     (RoPE's long-term decay);
//   - topics: the context is a schedule of segments, each on one topic; keys and values of a
//     segment lie near the topic's rank-r subspace (mean + AR(1) coefficients) plus noise. Key
//     subspaces sit mostly in RoPE pairs that stay coherent over the context, so a query can
//     find far content. Keys of every topic have the same norm statistics: which keys matter is
//     learnable from the queries, not from the keys alone;
//   - heavy hitters: a seeded fraction of positions whose keys align with a direction the
//     queries share;
//   - queries: q_window holds the last `window` context positions, q_ref the continuation
//     positions T .. and optionally repeat-prefill positions inside the context. Each query row
//     is "about" one topic (the final segment's topic with probability `ref_focus`, else a
//     uniformly drawn topic of the schedule); the same row is about the same topic in every
//     layer and head. GQA: the query heads of a group share the KV head's directions and
//     subspaces but each has its own strengths and preferred directions inside each topic.
// Values follow the same topic construction without RoPE; sink values are scaled down (x0.25),
// as attending to a sink is a near no-op in real models.
// Strengths are given in logits (units of q.k / sqrt(head_dim)), so they mean the same thing at
// every head_dim. Early layers (the first 1/16, at least one, when there are two or more) have
// sinks 1.5 logits weaker and a stronger recency, as in real models.
//
// RoPE rotates pairs (2i, 2i+1) by angle pos * rope_theta^(-2i/head_dim).
//
// With the defaults (measured by synth_structure_test on Tiny, Small and a head_dim-128 layout at
// T = 8192), a typical head's continuation queries need 10-25% of the keys for 90% of their
// mass, the sinks take a median 20-30% of it (under 2% in a few heads, over 75% in others),
// heavy hitters draw 8-20x the median position, and queries about the returned topic put 4-7x
// more mass per position on its first segment than on the nearer transient one.
//
// Determinism: the output is a pure function of the options except `threads`: every
// (layer, KV head) draws from its own counter-based streams keyed by (seed, layer, head, ...),
// so the bytes do not depend on the thread count or the scheduling.
//
// Thread safety: all functions are reentrant and share no mutable state. GenerateSyntheticKv
// runs `threads` std::threads of its own and joins them before returning.
#pragma once

#include <cstdint>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"

namespace kvc {

// One segment of the topic schedule.
struct SynthSegmentSpec {
  double weight = 1.0;  // relative length; segments get round(cumulative share * T) positions
  int topic = 0;        // topic id, 0 .. 63; ids may repeat (a return to an earlier topic)
};

struct SynthOptions {
  // Shape and dtype of K and V (queries use the same dtype). REQUIRES: layout.Validate() ok,
  // head_dim even and >= 8. Default: the Tiny layout.
  KvLayout layout{2, 2, 4, 16, DType::kF32, 256};

  // q_window: the last `window` context positions. REQUIRES: 1 <= window <= T when emitted.
  // Default: 32.
  int64_t window = 32;
  bool emit_q_window = true;  // Default: true.
  // q_ref: n_ref query rows per query head. REQUIRES: 1 <= n_ref <= 1 << 20 when emitted.
  // Default: 256.
  int64_t n_ref = 256;
  bool emit_q_ref = true;  // Default: true.
  // Share of q_ref rows that are repeat-prefill queries at earlier positions (uniform in
  // [0, T)); they are spread evenly among the rows, the others are continuation queries at
  // T, T+1, ... in row order. REQUIRES: in [0, 1]. Default: 0.
  double repeat_prefill_share = 0.0;

  uint64_t seed = 1;  // Default: 1.

  // Topic schedule, in order. REQUIRES: non-empty, weights finite and > 0, topics in [0, 64),
  // every segment at least one position after rounding. Default: topic 0 for 45%, a transient
  // topic 1 for 20%, back to topic 0 for 35% (a domain shift and a return).
  std::vector<SynthSegmentSpec> schedule{{0.45, 0}, {0.20, 1}, {0.35, 0}};
  // Probability that a query row is about the final segment's topic (else a uniformly drawn
  // topic of the schedule). Repeat-prefill rows use the topic of their own position instead of
  // the final one. REQUIRES: in [0, 1]. Default: 0.8.
  double ref_focus = 0.8;
  // Rank of each topic's subspace; 0 picks head_dim / 16 clamped to [2, 16].
  // REQUIRES: 0, or 1 <= topic_rank and topic_rank + 3 <= head_dim. Default: 0.
  int topic_rank = 0;
  // AR(1) coefficient of consecutive keys' (and values') topic coordinates: neighbours are
  // alike. REQUIRES: in [0, 1). Default: 0.8.
  double key_autocorr = 0.8;

  // Number of sink positions (0 .. n_sinks-1). REQUIRES: 0 <= n_sinks < T. Default: 4.
  int n_sinks = 4;
  // The sinks' logit is ln(T / n_sinks) + sink_bias (+-1 per query head), so their share of
  // attention does not shrink with T. REQUIRES: finite, |sink_bias| <= 30. Default: 1.0.
  double sink_bias = 1.0;
  // Fraction of the non-sink positions that are heavy hitters (per layer and KV head).
  // REQUIRES: in [0, 0.5]. Default: 0.02.
  double heavy_hitter_fraction = 0.02;
  // Mean extra logit of a heavy hitter (x0.6..1.4 per query head). REQUIRES: in [0, 30].
  // Default: 2.0.
  double heavy_hitter_logit = 2.0;
  // Logit of the recency component at distance 0 (x0.5..1.5 per KV head, x0.8..1.2 per query
  // head, x1.5 in early layers); it decays with distance through RoPE.
  // REQUIRES: in [0, 30]. Default: 2.5.
  double recency_logit = 2.5;
  // Standard deviation, over the keys of the query's topic, of the content logit of a typical
  // query (x0.8..1.25 per KV head). REQUIRES: in (0, 10]. Default: 1.6.
  double content_logit_std = 1.6;
  // Mean content logit of keys of the query's topic over keys of other topics (x0.8..1.2 per
  // query head). REQUIRES: in [0, 10] and topic_logit_gap / 1.5 < content_logit_std. Default: 1.5.
  double topic_logit_gap = 1.5;

  // RoPE base, recorded in metadata "rope_theta". REQUIRES: finite, > 1. Default: 500000.
  double rope_theta = 500000.0;

  // Worker threads over (layer, KV head); 0 = hardware concurrency. Does not change the output.
  // REQUIRES: >= 0. Default: 0.
  int threads = 0;
};

// Presets. Tiny: 2 layers, 2 KV heads, 4 query heads, head_dim 16, T 256, F32, n_ref 128.
SynthOptions SynthTiny();
// Small: 4 layers, 4 KV heads, 16 query heads, head_dim 64, T 2048, F32.
SynthOptions SynthSmall();
// Llama-3.1-8B layout: 32 layers, 8 KV heads, 32 query heads, head_dim 128, F16, T = tokens,
// rope_theta 500000.
SynthOptions SynthLlama31_8B(int64_t tokens);

// InvalidArgument naming the first option that breaks its REQUIRES.
Status ValidateSynthOptions(const SynthOptions& opts);

// Generates the cache: per layer k, v [n_kv_heads, T, head_dim] in layout.dtype, q_window
// [n_q_heads, window, head_dim] and q_ref [n_q_heads, n_ref, head_dim] (when emitted) in the
// same dtype. Metadata: "model" = "synthetic", "rope_theta", "synth.seed", "synth.segments"
// ("topic:begin-end,..."), "synth.n_sinks".
// Returns InvalidArgument for bad options, ResourceExhausted if the output cannot be allocated.
// Memory: the output plus O(threads * head_dim) scratch and a RoPE table of
// (T + n_ref) * head_dim floats.
Result<KvCache> GenerateSyntheticKv(const SynthOptions& opts);

// A run of positions [begin, end) on one topic.
struct SynthSegment {
  int64_t begin = 0;
  int64_t end = 0;
  int topic = 0;
};

// The ground truth behind a generated cache, for tests that need to know where the structure is.
struct SynthStructure {
  std::vector<SynthSegment> segments;     // contiguous, covering [0, T), in schedule order
  std::vector<int> topic_of;              // [T]: topic of each position
  int n_topics = 0;                       // 1 + the largest topic id of the schedule
  int final_topic = 0;                    // topic of the last segment
  int topic_rank = 0;                     // resolved rank of the topic subspaces
  int n_sinks = 0;                        // sinks are positions 0 .. n_sinks-1
  std::vector<int64_t> window_positions;  // [window] positions of q_window rows (empty if off)
  std::vector<int> window_topics;         // [window] topic each q_window row is about
  std::vector<int64_t> ref_positions;     // [n_ref] positions of q_ref rows (empty if off);
                                          // >= T: continuation, < T: repeat-prefill
  std::vector<int> ref_topics;            // [n_ref] topic each q_ref row is about
  // heavy_hitters[layer * n_kv_heads + kv_head]: sorted heavy-hitter positions of that head.
  std::vector<std::vector<int64_t>> heavy_hitters;
};

// Describes the cache GenerateSyntheticKv(opts) would produce, without generating tensors.
// InvalidArgument for bad options.
Result<SynthStructure> DescribeSynthetic(const SynthOptions& opts);

}  // namespace kvc
