// API tests of the synthetic KV generator: presets, shapes and dtypes, determinism, options
// validation, the described ground truth. Structure is measured in synth_structure_test.cc.
#include "tests/synth/synth_kv.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace kvc {
namespace {

bool SameBytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Fraction of elements that differ between two tensors of one shape.
double DifferingFraction(const Tensor& a, const Tensor& b) {
  int64_t differ = 0;
  for (int64_t i = 0; i < a.numel(); ++i) differ += a.GetFloat(i) != b.GetFloat(i);
  return static_cast<double>(differ) / a.numel();
}

void ExpectSameCache(const KvCache& a, const KvCache& b) {
  ASSERT_EQ(a.layout, b.layout);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  EXPECT_EQ(a.metadata, b.metadata);
  for (size_t l = 0; l < a.layers.size(); ++l) {
    EXPECT_TRUE(SameBytes(a.layers[l].k, b.layers[l].k)) << "layer " << l;
    EXPECT_TRUE(SameBytes(a.layers[l].v, b.layers[l].v)) << "layer " << l;
    ASSERT_EQ(a.layers[l].q_window.has_value(), b.layers[l].q_window.has_value());
    ASSERT_EQ(a.layers[l].q_ref.has_value(), b.layers[l].q_ref.has_value());
    if (a.layers[l].q_window) {
      EXPECT_TRUE(SameBytes(*a.layers[l].q_window, *b.layers[l].q_window)) << "layer " << l;
    }
    if (a.layers[l].q_ref) {
      EXPECT_TRUE(SameBytes(*a.layers[l].q_ref, *b.layers[l].q_ref)) << "layer " << l;
    }
  }
}

TEST(SynthPresetsTest, LayoutsAreTheDocumentedOnes) {
  const SynthOptions tiny = SynthTiny();
  EXPECT_EQ(tiny.layout, (KvLayout{2, 2, 4, 16, DType::kF32, 256}));
  const SynthOptions small = SynthSmall();
  EXPECT_EQ(small.layout, (KvLayout{4, 4, 16, 64, DType::kF32, 2048}));
  const SynthOptions llama = SynthLlama31_8B(32768);
  EXPECT_EQ(llama.layout, (KvLayout{32, 8, 32, 128, DType::kF16, 32768}));
  EXPECT_EQ(llama.rope_theta, 500000.0);
  for (const SynthOptions& o : {tiny, small, llama}) {
    EXPECT_TRUE(ValidateSynthOptions(o).ok()) << o.layout.ToString();
  }
}

using PresetAndDtype = std::tuple<std::string, DType>;

SynthOptions Preset(const std::string& name) {
  if (name == "Tiny") return SynthTiny();
  if (name == "Small") return SynthSmall();
  SynthOptions o = SynthLlama31_8B(96);  // the 8B layout at a short context
  o.n_ref = 8;
  o.window = 16;
  return o;
}

class SynthShapesTest : public ::testing::TestWithParam<PresetAndDtype> {};

TEST_P(SynthShapesTest, ShapesDtypesValidityAndMetadata) {
  SynthOptions o = Preset(std::get<0>(GetParam()));
  o.layout.dtype = std::get<1>(GetParam());
  Result<KvCache> r = GenerateSyntheticKv(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const KvCache& c = *r;
  const KvLayout& L = o.layout;
  EXPECT_EQ(c.layout, L);
  const Status valid = c.Validate(/*check_finite=*/true);
  EXPECT_TRUE(valid.ok()) << valid.ToString();
  ASSERT_EQ(static_cast<int>(c.layers.size()), L.n_layers);
  for (const LayerKv& x : c.layers) {
    EXPECT_EQ(x.k.shape(), (Shape{L.n_kv_heads, L.tokens, L.head_dim}));
    EXPECT_EQ(x.v.shape(), (Shape{L.n_kv_heads, L.tokens, L.head_dim}));
    ASSERT_TRUE(x.q_window.has_value());
    ASSERT_TRUE(x.q_ref.has_value());
    EXPECT_EQ(x.q_window->shape(), (Shape{L.n_q_heads, o.window, L.head_dim}));
    EXPECT_EQ(x.q_ref->shape(), (Shape{L.n_q_heads, o.n_ref, L.head_dim}));
    for (const Tensor* t : {&x.k, &x.v, &*x.q_window, &*x.q_ref}) {
      EXPECT_EQ(t->dtype(), L.dtype);
      EXPECT_TRUE(t->AllFinite());
    }
  }
  EXPECT_EQ(c.metadata.at("rope_theta"), "500000");
  EXPECT_EQ(c.metadata.at("model"), "synthetic");
  EXPECT_EQ(c.metadata.at("synth.seed"), std::to_string(o.seed));
  EXPECT_EQ(c.metadata.at("synth.n_sinks"), "4");
  EXPECT_FALSE(c.metadata.at("synth.segments").empty());
}

INSTANTIATE_TEST_SUITE_P(AllPresets, SynthShapesTest,
                         ::testing::Combine(::testing::Values("Tiny", "Small", "Llama31_8B"),
                                            ::testing::Values(DType::kF32, DType::kF16,
                                                              DType::kBF16)),
                         [](const ::testing::TestParamInfo<PresetAndDtype>& info) {
                           return std::get<0>(info.param) + "_" +
                                  DTypeName(std::get<1>(info.param));
                         });

TEST(SynthDeterminismTest, SameSeedGivesIdenticalBytesForAnyThreadCount) {
  for (SynthOptions o : {SynthTiny(), SynthSmall()}) {
    o.repeat_prefill_share = 0.25;
    o.threads = 1;
    const KvCache one = GenerateSyntheticKv(o).value();
    o.threads = 3;
    const KvCache three = GenerateSyntheticKv(o).value();
    o.threads = 0;
    const KvCache all = GenerateSyntheticKv(o).value();
    ExpectSameCache(one, three);
    ExpectSameCache(one, all);
  }
}

TEST(SynthDeterminismTest, DifferentSeedsGiveDifferentData) {
  SynthOptions o = SynthTiny();
  const KvCache a = GenerateSyntheticKv(o).value();
  o.seed = 2;
  const KvCache b = GenerateSyntheticKv(o).value();
  for (size_t l = 0; l < a.layers.size(); ++l) {
    EXPECT_GT(DifferingFraction(a.layers[l].k, b.layers[l].k), 0.99);
    EXPECT_GT(DifferingFraction(a.layers[l].v, b.layers[l].v), 0.99);
    EXPECT_GT(DifferingFraction(*a.layers[l].q_window, *b.layers[l].q_window), 0.99);
    EXPECT_GT(DifferingFraction(*a.layers[l].q_ref, *b.layers[l].q_ref), 0.99);
  }
}

TEST(SynthDeterminismTest, LayersAndHeadsDrawIndependentData) {
  const KvCache c = GenerateSyntheticKv(SynthTiny()).value();
  const Tensor k00 = c.layers[0].k.Slice0(0);
  EXPECT_GT(DifferingFraction(k00, c.layers[0].k.Slice0(1)), 0.99);
  EXPECT_GT(DifferingFraction(k00, c.layers[1].k.Slice0(0)), 0.99);
  const Tensor q0 = c.layers[0].q_ref->Slice0(0);
  EXPECT_GT(DifferingFraction(q0, c.layers[0].q_ref->Slice0(1)), 0.99);  // same GQA group
}

// Generation runs in f32 and rounds once: the f16 / bf16 caches are the f32 cache converted.
TEST(SynthDeterminismTest, HalfPrecisionCachesAreTheF32CacheRounded) {
  SynthOptions o = SynthTiny();
  const KvCache f32 = GenerateSyntheticKv(o).value();
  for (DType dt : {DType::kF16, DType::kBF16}) {
    o.layout.dtype = dt;
    const KvCache half = GenerateSyntheticKv(o).value();
    for (size_t l = 0; l < f32.layers.size(); ++l) {
      EXPECT_TRUE(SameBytes(half.layers[l].k, f32.layers[l].k.To(dt).value())) << DTypeName(dt);
      EXPECT_TRUE(SameBytes(half.layers[l].v, f32.layers[l].v.To(dt).value())) << DTypeName(dt);
      EXPECT_TRUE(SameBytes(*half.layers[l].q_ref, f32.layers[l].q_ref->To(dt).value()));
    }
  }
}

TEST(SynthOptionsTest, QueryKindsAreOptional) {
  SynthOptions o = SynthTiny();
  o.emit_q_window = false;
  KvCache c = GenerateSyntheticKv(o).value();
  EXPECT_FALSE(c.has_q_window());
  EXPECT_TRUE(c.has_q_ref());
  EXPECT_TRUE(c.Validate().ok());
  o.emit_q_window = true;
  o.emit_q_ref = false;
  c = GenerateSyntheticKv(o).value();
  EXPECT_TRUE(c.has_q_window());
  EXPECT_FALSE(c.has_q_ref());
  EXPECT_TRUE(c.Validate().ok());
  o.emit_q_window = false;
  o.window = 0;  // ignored when not emitted
  o.n_ref = 0;
  c = GenerateSyntheticKv(o).value();
  EXPECT_FALSE(c.has_q_window() || c.has_q_ref());
  EXPECT_TRUE(c.Validate().ok());
}

TEST(SynthOptionsTest, MetadataRecordsTheRopeBaseAndSegments) {
  SynthOptions o = SynthTiny();
  o.rope_theta = 10000;
  o.schedule = {{1, 0}, {1, 1}, {2, 2}};
  const KvCache c = GenerateSyntheticKv(o).value();
  EXPECT_EQ(c.metadata.at("rope_theta"), "10000");
  EXPECT_EQ(c.metadata.at("synth.segments"), "0:0-64,1:64-128,2:128-256");
}

struct BadCase {
  const char* what;  // expected in the message
  std::function<void(SynthOptions&)> mutate;
};

TEST(SynthOptionsTest, RejectsBadOptionsWithInvalidArgument) {
  const std::vector<BadCase> cases = {
      {"head_dim", [](SynthOptions& o) { o.layout.head_dim = 15; }},
      {"head_dim", [](SynthOptions& o) { o.layout.head_dim = 6; }},
      {"GQA", [](SynthOptions& o) { o.layout.n_q_heads = 3; }},
      {"tokens", [](SynthOptions& o) { o.layout.tokens = 0; }},
      {"window", [](SynthOptions& o) { o.window = 0; }},
      {"window", [](SynthOptions& o) { o.window = 257; }},
      {"n_ref", [](SynthOptions& o) { o.n_ref = 0; }},
      {"repeat_prefill_share", [](SynthOptions& o) { o.repeat_prefill_share = 1.5; }},
      {"ref_focus", [](SynthOptions& o) { o.ref_focus = -0.1; }},
      {"schedule", [](SynthOptions& o) { o.schedule.clear(); }},
      {"weight", [](SynthOptions& o) { o.schedule[1].weight = 0; }},
      {"weight", [](SynthOptions& o) { o.schedule[1].weight = std::nan(""); }},
      {"topic", [](SynthOptions& o) { o.schedule[0].topic = 64; }},
      {"no positions",
       [](SynthOptions& o) {
         o.schedule = {{1000, 0}, {1, 1}};
       }},
      {"topic_rank", [](SynthOptions& o) { o.topic_rank = 14; }},
      {"topic_rank", [](SynthOptions& o) { o.topic_rank = -1; }},
      {"key_autocorr", [](SynthOptions& o) { o.key_autocorr = 1.0; }},
      {"n_sinks", [](SynthOptions& o) { o.n_sinks = 256; }},
      {"n_sinks", [](SynthOptions& o) { o.n_sinks = -1; }},
      {"sink_bias", [](SynthOptions& o) { o.sink_bias = INFINITY; }},
      {"heavy_hitter_fraction", [](SynthOptions& o) { o.heavy_hitter_fraction = 0.6; }},
      {"heavy_hitter_logit", [](SynthOptions& o) { o.heavy_hitter_logit = -1; }},
      {"recency_logit", [](SynthOptions& o) { o.recency_logit = 31; }},
      {"content_logit_std", [](SynthOptions& o) { o.content_logit_std = 0; }},
      {"topic_logit_gap", [](SynthOptions& o) { o.topic_logit_gap = -1; }},
      {"topic_logit_gap", [](SynthOptions& o) { o.topic_logit_gap = 3.0; }},
      {"rope_theta", [](SynthOptions& o) { o.rope_theta = 1.0; }},
      {"threads", [](SynthOptions& o) { o.threads = -1; }},
  };
  for (const BadCase& c : cases) {
    SynthOptions o = SynthTiny();
    c.mutate(o);
    const Status s = ValidateSynthOptions(o);
    EXPECT_TRUE(s.IsInvalidArgument()) << c.what << ": " << s.ToString();
    EXPECT_NE(s.message().find(c.what), std::string::npos) << s.message();
    EXPECT_TRUE(GenerateSyntheticKv(o).status().IsInvalidArgument()) << c.what;
    EXPECT_TRUE(DescribeSynthetic(o).status().IsInvalidArgument()) << c.what;
  }
}

TEST(SynthDescribeTest, SegmentsFollowTheSchedule) {
  SynthOptions o = SynthSmall();
  o.schedule = {{0.5, 2}, {0.25, 0}, {0.25, 1}};
  const SynthStructure s = DescribeSynthetic(o).value();
  ASSERT_EQ(s.segments.size(), 3u);
  EXPECT_EQ(s.segments[0].begin, 0);
  EXPECT_EQ(s.segments[0].end, 1024);
  EXPECT_EQ(s.segments[1].end, 1536);
  EXPECT_EQ(s.segments[2].end, 2048);
  EXPECT_EQ(s.segments[1].topic, 0);
  EXPECT_EQ(s.n_topics, 3);
  EXPECT_EQ(s.final_topic, 1);
  EXPECT_EQ(s.topic_rank, 4);  // head_dim 64 / 16
  ASSERT_EQ(static_cast<int64_t>(s.topic_of.size()), o.layout.tokens);
  for (const SynthSegment& seg : s.segments) {
    for (int64_t t = seg.begin; t < seg.end; ++t) ASSERT_EQ(s.topic_of[t], seg.topic) << t;
  }
}

TEST(SynthDescribeTest, QueryRowsHaveTheDocumentedPositionsAndTopics) {
  SynthOptions o = SynthSmall();
  o.repeat_prefill_share = 0.25;
  const SynthStructure s = DescribeSynthetic(o).value();
  const int64_t T = o.layout.tokens;
  ASSERT_EQ(static_cast<int64_t>(s.window_positions.size()), o.window);
  for (int64_t i = 0; i < o.window; ++i) EXPECT_EQ(s.window_positions[i], T - o.window + i);
  ASSERT_EQ(static_cast<int64_t>(s.ref_positions.size()), o.n_ref);
  int64_t repeats = 0;
  int64_t next = T;
  int64_t longest_run = 0, run = 0;  // of consecutive continuation rows
  for (int64_t i = 0; i < o.n_ref; ++i) {
    if (s.ref_positions[i] < T) {
      ++repeats;
      EXPECT_GE(s.ref_positions[i], 0);
      run = 0;
    } else {
      EXPECT_EQ(s.ref_positions[i], next++);  // continuation rows in order
      longest_run = std::max(longest_run, ++run);
    }
  }
  EXPECT_EQ(repeats, 64);
  EXPECT_LE(longest_run, 3);  // repeat rows are spread evenly
  // Continuation rows are about the final topic with probability ref_focus + (1 - ref_focus)/2.
  int focus = 0, continuation = 0;
  for (int64_t i = 0; i < o.n_ref; ++i) {
    EXPECT_TRUE(s.ref_topics[i] == 0 || s.ref_topics[i] == 1);
    if (s.ref_positions[i] < T) continue;
    ++continuation;
    focus += s.ref_topics[i] == s.final_topic;
  }
  EXPECT_NEAR(static_cast<double>(focus) / continuation, 0.9, 0.07);
}

TEST(SynthDescribeTest, HeavyHittersHaveTheRequestedFractionPerHead) {
  SynthOptions o = SynthSmall();
  o.heavy_hitter_fraction = 0.05;
  const SynthStructure s = DescribeSynthetic(o).value();
  ASSERT_EQ(s.heavy_hitters.size(), 16u);
  const double expected = 0.05 * (o.layout.tokens - o.n_sinks);
  const double sigma = std::sqrt(expected * 0.95);
  std::set<std::vector<int64_t>> distinct;
  for (const std::vector<int64_t>& hh : s.heavy_hitters) {
    EXPECT_NEAR(static_cast<double>(hh.size()), expected, 5 * sigma);
    EXPECT_TRUE(std::is_sorted(hh.begin(), hh.end()));
    ASSERT_FALSE(hh.empty());
    EXPECT_GE(hh.front(), o.n_sinks);  // sinks are not heavy hitters
    EXPECT_LT(hh.back(), o.layout.tokens);
    distinct.insert(hh);
  }
  EXPECT_EQ(distinct.size(), s.heavy_hitters.size());  // each head has its own
  o.heavy_hitter_fraction = 0;
  const SynthStructure none = DescribeSynthetic(o).value();
  for (const std::vector<int64_t>& hh : none.heavy_hitters) EXPECT_TRUE(hh.empty());
}

// Sink keys carry the large sink component; heavy hitters a smaller one: their norms show it.
TEST(SynthDescribeTest, SinkAndHeavyHitterKeysAreLarger) {
  const SynthOptions o = SynthSmall();
  const KvCache c = GenerateSyntheticKv(o).value();
  const SynthStructure s = DescribeSynthetic(o).value();
  const int d = o.layout.head_dim;
  const float* k = c.layers[1].k.data<float>();  // KV head 0
  auto norm = [&](int64_t t) {
    double sq = 0;
    for (int j = 0; j < d; ++j) sq += static_cast<double>(k[t * d + j]) * k[t * d + j];
    return std::sqrt(sq);
  };
  const std::vector<int64_t>& hh = s.heavy_hitters[1 * o.layout.n_kv_heads + 0];
  double plain = 0, heavy = 0;
  int n_plain = 0;
  for (int64_t t = o.n_sinks; t < o.layout.tokens; ++t) {
    if (std::binary_search(hh.begin(), hh.end(), t)) {
      heavy += norm(t);
    } else {
      plain += norm(t);
      ++n_plain;
    }
  }
  plain /= n_plain;
  heavy /= hh.size();
  for (int t = 0; t < o.n_sinks; ++t) EXPECT_GT(norm(t), heavy) << "sink " << t;
  EXPECT_GT(heavy, plain * 1.05);
}

// Run by hand (--gtest_also_run_disabled_tests): generation time of the 8B layout at 32k, f16.
// Needs about 4.4 GB of memory. Prints the time; asserts only validity.
TEST(SynthTimingTest, DISABLED_Llama31_8B_T32768_F16) {
  const SynthOptions o = SynthLlama31_8B(32768);
  const auto start = std::chrono::steady_clock::now();
  Result<KvCache> c = GenerateSyntheticKv(o);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::printf("%s: generated in %.2f s\n", o.layout.ToString().c_str(), seconds);
  EXPECT_TRUE(c->Validate(/*check_finite=*/false).ok());
}

}  // namespace
}  // namespace kvc
