#include "tests/synth/synth_kv.h"

#include <cstdio>
#include <new>
#include <string>

#include "tests/synth/synth_head.h"
#include "tests/synth/synth_plan.h"

namespace kvc {
namespace {

using synth_detail::Plan;

std::string FormatDouble(double x) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", x);
  return buf;
}

std::string FormatSegments(const std::vector<SynthSegment>& segments) {
  std::string s;
  for (const SynthSegment& seg : segments) {
    if (!s.empty()) s += ",";
    s +=
        std::to_string(seg.topic) + ":" + std::to_string(seg.begin) + "-" + std::to_string(seg.end);
  }
  return s;
}

// Allocates every output tensor (uninitialised: each element is written exactly once).
KvCache AllocateCache(const Plan& plan) {
  const SynthOptions& o = plan.opts;
  const KvLayout& L = o.layout;
  KvCache cache;
  cache.layout = L;
  cache.layers.resize(L.n_layers);
  for (LayerKv& layer : cache.layers) {
    layer.k = Tensor::Empty(L.dtype, {L.n_kv_heads, L.tokens, L.head_dim});
    layer.v = Tensor::Empty(L.dtype, {L.n_kv_heads, L.tokens, L.head_dim});
    if (o.emit_q_window)
      layer.q_window = Tensor::Empty(L.dtype, {L.n_q_heads, o.window, L.head_dim});
    if (o.emit_q_ref) layer.q_ref = Tensor::Empty(L.dtype, {L.n_q_heads, o.n_ref, L.head_dim});
  }
  return cache;
}

// Start of the block of `rows_per_head` rows of head `head` in a [heads, rows, d] tensor.
void* HeadBlock(Tensor& t, int64_t head) {
  const int64_t per_head = t.dim(1) * t.dim(2);
  return static_cast<char*>(t.raw()) + head * per_head * DTypeSize(t.dtype());
}

void FillCache(const Plan& plan, KvCache* cache) {
  const KvLayout& L = plan.opts.layout;
  const int group = L.group();
  synth_detail::ParallelFor(
      static_cast<int64_t>(L.n_layers) * L.n_kv_heads, plan.opts.threads, [&](int64_t item) {
        const int layer = static_cast<int>(item / L.n_kv_heads);
        const int head = static_cast<int>(item % L.n_kv_heads);
        LayerKv& x = cache->layers[layer];
        synth_detail::HeadOutputs out;
        out.k = HeadBlock(x.k, head);
        out.v = HeadBlock(x.v, head);
        if (x.q_window) out.q_window = HeadBlock(*x.q_window, static_cast<int64_t>(head) * group);
        if (x.q_ref) out.q_ref = HeadBlock(*x.q_ref, static_cast<int64_t>(head) * group);
        synth_detail::GenerateHead(plan, layer, head, out);
      });
}

}  // namespace

Result<KvCache> GenerateSyntheticKv(const SynthOptions& opts) {
  KVC_ASSIGN_OR_RETURN(Plan plan, synth_detail::MakePlan(opts));
  KvCache cache;
  try {
    synth_detail::BuildRopeTable(&plan, opts.threads);
    cache = AllocateCache(plan);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("synthetic cache " + opts.layout.ToString() +
                                     ": out of memory allocating the output");
  }
  FillCache(plan, &cache);
  cache.metadata["model"] = "synthetic";
  cache.metadata["rope_theta"] = FormatDouble(opts.rope_theta);
  cache.metadata["synth.seed"] = std::to_string(opts.seed);
  cache.metadata["synth.segments"] = FormatSegments(plan.segments);
  cache.metadata["synth.n_sinks"] = std::to_string(opts.n_sinks);
  return cache;
}

Result<SynthStructure> DescribeSynthetic(const SynthOptions& opts) {
  KVC_ASSIGN_OR_RETURN(Plan plan, synth_detail::MakePlan(opts));
  SynthStructure s;
  s.segments = plan.segments;
  s.topic_of = plan.topic_of;
  s.n_topics = plan.n_topics;
  s.final_topic = plan.final_topic;
  s.topic_rank = plan.rank;
  s.n_sinks = opts.n_sinks;
  s.window_positions = plan.window_pos;
  s.window_topics = plan.window_topic;
  s.ref_positions = plan.ref_pos;
  s.ref_topics = plan.ref_topic;
  const KvLayout& L = opts.layout;
  s.heavy_hitters.resize(static_cast<size_t>(L.n_layers) * L.n_kv_heads);
  for (int l = 0; l < L.n_layers; ++l) {
    for (int h = 0; h < L.n_kv_heads; ++h) {
      const uint64_t key = synth_detail::HeavyHitterKey(opts.seed, l, h);
      std::vector<int64_t>& hh = s.heavy_hitters[static_cast<size_t>(l) * L.n_kv_heads + h];
      for (int64_t t = 0; t < L.tokens; ++t) {
        if (synth_detail::IsHeavyHitter(key, t, opts.n_sinks, opts.heavy_hitter_fraction,
                                        nullptr)) {
          hh.push_back(t);
        }
      }
    }
  }
  return s;
}

}  // namespace kvc
