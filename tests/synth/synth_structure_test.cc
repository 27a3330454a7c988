// Measures the structure the generator claims, through softmax attention of its own queries
// over its own keys (scores q.k / sqrt(d), in double): sinks, recency, topics, heavy hitters,
// spread of attention, GQA, RoPE.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <ostream>
#include <string>
#include <vector>

#include "tests/synth/synth_kv.h"

namespace kvc {
namespace {

struct Config {
  std::string name;
  SynthOptions opts;
};

// An 8B-like head geometry (head_dim 128, GQA 4) at a long context, few layers to stay fast.
SynthOptions LongHeads() {
  SynthOptions o = SynthLlama31_8B(8192);
  o.layout.n_layers = 2;
  o.layout.n_kv_heads = 2;
  o.layout.n_q_heads = 8;
  o.layout.dtype = DType::kF32;
  o.n_ref = 64;
  return o;
}

void PrintTo(const Config& c, std::ostream* os) { *os << c.name; }

// Small with fewer reference rows: every structure test runs in its own process under ctest.
SynthOptions SmallFewerRows() {
  SynthOptions o = SynthSmall();
  o.n_ref = 96;
  return o;
}

std::vector<Config> Configs() {
  return {{"Tiny", SynthTiny()}, {"Small", SmallFewerRows()}, {"LongHeads", LongHeads()}};
}

// Softmax attention of one q_ref row over its KV head's keys.
std::vector<double> AttentionRow(const std::vector<float>& k, const std::vector<float>& q,
                                 const KvLayout& L, int64_t n_ref, int q_head, int64_t row) {
  const int d = L.head_dim;
  const int64_t T = L.tokens;
  const float* qr = q.data() + (q_head * n_ref + row) * d;
  const float* kh = k.data() + static_cast<int64_t>(q_head / L.group()) * T * d;
  std::vector<double> p(T);
  double mx = -1e300;
  for (int64_t t = 0; t < T; ++t) {
    const float* kt = kh + t * d;
    double s[4] = {0, 0, 0, 0};  // independent sums: the loop is latency-bound otherwise
    int j = 0;
    for (; j + 4 <= d; j += 4) {
      for (int u = 0; u < 4; ++u) s[u] += static_cast<double>(qr[j + u]) * kt[j + u];
    }
    for (; j < d; ++j) s[0] += static_cast<double>(qr[j]) * kt[j];
    p[t] = (s[0] + s[1] + s[2] + s[3]) / std::sqrt(static_cast<double>(d));
    mx = std::max(mx, p[t]);
  }
  double z = 0;
  for (double& x : p) z += (x = std::exp(x - mx));
  for (double& x : p) x /= z;
  return p;
}

// Number of keys that hold `share` of a distribution's mass.
double KeysForMass(std::vector<double> p, double share) {
  std::sort(p.begin(), p.end(), std::greater<>());
  double acc = 0;
  size_t n = 0;
  while (n < p.size() && acc < share) acc += p[n++];
  return static_cast<double>(n);
}

// Mean attention of a set of rows of one query head.
struct Mass {
  std::vector<double> mass;
  int rows = 0;
  void Add(const std::vector<double>& p) {
    if (mass.empty()) mass.assign(p.size(), 0.0);
    for (size_t t = 0; t < p.size(); ++t) mass[t] += p[t];
    ++rows;
  }
  void Finish() {
    for (double& m : mass) m /= std::max(1, rows);
  }
};

// Continuation-query attention of one query head.
struct HeadStats {
  int layer = 0;
  int q_head = 0;
  Mass all;                     // every continuation row
  Mass focus;                   // continuation rows about the final topic
  Mass early;                   // the first 8 continuation rows (nearest to the context's end)
  std::vector<double> cover90;  // per continuation row: keys holding 90% of its mass
};

std::vector<float> ToFloats(const Tensor& t) {
  Tensor f = t.To(DType::kF32).value();
  return std::vector<float>(f.data<float>(), f.data<float>() + f.numel());
}

std::vector<HeadStats> ComputeStats(const KvCache& cache, const SynthStructure& s) {
  const KvLayout& L = cache.layout;
  std::vector<HeadStats> out;
  for (int l = 0; l < L.n_layers; ++l) {
    const std::vector<float> k = ToFloats(cache.layers[l].k);
    const std::vector<float> q = ToFloats(*cache.layers[l].q_ref);
    const int64_t n_ref = cache.layers[l].q_ref->dim(1);
    for (int h = 0; h < L.n_q_heads; ++h) {
      HeadStats st;
      st.layer = l;
      st.q_head = h;
      for (int64_t i = 0; i < n_ref; ++i) {
        if (s.ref_positions[i] < L.tokens) continue;
        const std::vector<double> p = AttentionRow(k, q, L, n_ref, h, i);
        st.all.Add(p);
        if (s.ref_topics[i] == s.final_topic) st.focus.Add(p);
        if (s.ref_positions[i] < L.tokens + 8) st.early.Add(p);
        st.cover90.push_back(KeysForMass(p, 0.9));
      }
      st.all.Finish();
      st.focus.Finish();
      st.early.Finish();
      out.push_back(std::move(st));
    }
  }
  return out;
}

double Median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

double Sum(const std::vector<double>& m, int64_t begin, int64_t end) {
  return std::accumulate(m.begin() + begin, m.begin() + end, 0.0);
}

// Generation and attention are computed once per configuration and shared by its tests.
struct Fixture {
  Status status;
  SynthOptions opts;
  KvCache cache;
  SynthStructure s;
  std::vector<HeadStats> heads;
};

const Fixture& GetFixture(const Config& c) {
  static std::map<std::string, std::unique_ptr<Fixture>>
      fixtures;  // gtest runs tests on one thread
  std::unique_ptr<Fixture>& f = fixtures[c.name];
  if (!f) {
    f = std::make_unique<Fixture>();
    f->opts = c.opts;
    Result<KvCache> cache = GenerateSyntheticKv(c.opts);
    Result<SynthStructure> s = DescribeSynthetic(c.opts);
    f->status = !cache.ok() ? cache.status() : s.status();
    if (f->status.ok()) {
      f->cache = std::move(cache).value();
      f->s = std::move(s).value();
      f->heads = ComputeStats(f->cache, f->s);
    }
  }
  return *f;
}

class SynthStructureTest : public ::testing::TestWithParam<Config> {
 protected:
  void SetUp() override {
    f_ = &GetFixture(GetParam());
    ASSERT_TRUE(f_->status.ok()) << f_->status.ToString();
  }
  int64_t T() const { return f_->opts.layout.tokens; }
  int Sinks() const { return f_->s.n_sinks; }

  const Fixture* f_ = nullptr;
};

// Every head: the sinks draw more than an average position; in a typical head they draw a
// noticeable share (several times their count) without taking everything.
TEST_P(SynthStructureTest, SinksDrawMoreThanTheAveragePosition) {
  std::vector<double> shares;
  for (const HeadStats& h : f_->heads) {
    const double share = Sum(h.all.mass, 0, Sinks());
    EXPECT_GT(share / Sinks(), 1.0 / T()) << "layer " << h.layer << " q head " << h.q_head;
    shares.push_back(share);
  }
  const double median = Median(shares);
  std::printf("sink share: median %.3f min %.3f max %.3f\n", median,
              *std::min_element(shares.begin(), shares.end()),
              *std::max_element(shares.begin(), shares.end()));
  EXPECT_GT(median, 0.05);
  EXPECT_LT(median, 0.7);
}

// Continuation queries put more than its share of attention on the returned topic, and the
// queries about it prefer its far first segment to the nearer transient segment.
TEST_P(SynthStructureTest, ReturnedTopicDrawsMoreThanItsShare) {
  const std::vector<SynthSegment>& seg = f_->s.segments;
  ASSERT_EQ(seg.size(), 3u);
  ASSERT_EQ(seg[0].topic, seg[2].topic);
  ASSERT_NE(seg[0].topic, seg[1].topic);
  int64_t on_topic = 0;
  for (int64_t t = Sinks(); t < T(); ++t) on_topic += f_->s.topic_of[t] == f_->s.final_topic;
  const double position_share = static_cast<double>(on_topic) / (T() - Sinks());
  std::vector<double> topic_ratio, first_over_transient;
  for (const HeadStats& h : f_->heads) {
    const double non_sink = 1.0 - Sum(h.all.mass, 0, Sinks());
    double mass = 0;
    for (int64_t t = Sinks(); t < T(); ++t) {
      if (f_->s.topic_of[t] == f_->s.final_topic) mass += h.all.mass[t];
    }
    topic_ratio.push_back(mass / non_sink / position_share);
    const double first = Sum(h.focus.mass, Sinks(), seg[0].end) / (seg[0].end - Sinks());
    const double transient =
        Sum(h.focus.mass, seg[1].begin, seg[1].end) / (seg[1].end - seg[1].begin);
    first_over_transient.push_back(first / transient);
  }
  std::printf(
      "returned topic mass / share: median %.2f; first / transient per position: median %.2f min "
      "%.2f\n",
      Median(topic_ratio), Median(first_over_transient),
      *std::min_element(first_over_transient.begin(), first_over_transient.end()));
  EXPECT_GT(Median(topic_ratio), 1.0);
  EXPECT_GT(Median(first_over_transient), 2.0);
  const auto above = std::count_if(first_over_transient.begin(), first_over_transient.end(),
                                   [](double r) { return r > 1.0; });
  EXPECT_GE(above, static_cast<long>(0.8 * first_over_transient.size()));
}

// Keys of the transient topic have the same norms as keys of the returned topic: which keys
// matter is visible in the queries (previous test), not in the keys' magnitudes.
TEST_P(SynthStructureTest, TopicsAreInvisibleInKeyNorms) {
  const KvLayout& L = f_->opts.layout;
  const std::vector<SynthSegment>& seg = f_->s.segments;
  std::vector<double> ratios;
  for (int l = 0; l < L.n_layers; ++l) {
    const std::vector<float> k = ToFloats(f_->cache.layers[l].k);
    for (int h = 0; h < L.n_kv_heads; ++h) {
      const std::vector<int64_t>& hh = f_->s.heavy_hitters[l * L.n_kv_heads + h];
      auto mean_norm = [&](int64_t begin, int64_t end) {
        double sum = 0;
        int n = 0;
        for (int64_t t = std::max<int64_t>(begin, Sinks()); t < end; ++t) {
          if (std::binary_search(hh.begin(), hh.end(), t)) continue;
          const float* row = k.data() + (h * T() + t) * L.head_dim;
          double sq = 0;
          for (int j = 0; j < L.head_dim; ++j) sq += static_cast<double>(row[j]) * row[j];
          sum += std::sqrt(sq);
          ++n;
        }
        return sum / n;
      };
      const double ratio =
          mean_norm(seg[1].begin, seg[1].end) / mean_norm(seg[0].begin, seg[0].end);
      // Neighbouring keys are correlated (AR(1)), so a short segment is a small sample.
      EXPECT_NEAR(ratio, 1.0, 0.35) << "layer " << l << " kv head " << h;
      ratios.push_back(ratio);
    }
  }
  const double mean = std::accumulate(ratios.begin(), ratios.end(), 0.0) / ratios.size();
  std::printf("key norm transient / first segment: mean over heads %.3f\n", mean);
  EXPECT_NEAR(mean, 1.0, 0.1);
}

// A typical head needs a sizeable fraction of the keys for 90% of a continuation query's mass.
TEST_P(SynthStructureTest, NinetyPercentOfMassNeedsASizeableFractionOfKeys) {
  std::vector<double> fractions;
  for (const HeadStats& h : f_->heads) fractions.push_back(Median(h.cover90) / T());
  const double typical = Median(fractions);
  std::printf("keys for 90%% of mass / T: median head %.3f, min %.3f, max %.3f\n", typical,
              *std::min_element(fractions.begin(), fractions.end()),
              *std::max_element(fractions.begin(), fractions.end()));
  EXPECT_GT(typical, 0.01);
  EXPECT_LT(typical, 0.9);
}

// Every head: its KV head's heavy hitters draw more than the median position.
TEST_P(SynthStructureTest, HeavyHittersDrawMoreThanTheMedianPosition) {
  const KvLayout& L = f_->opts.layout;
  std::vector<double> ratios;
  for (const HeadStats& h : f_->heads) {
    const std::vector<int64_t>& hh =
        f_->s.heavy_hitters[h.layer * L.n_kv_heads + h.q_head / L.group()];
    ASSERT_FALSE(hh.empty());
    double mass = 0;
    for (int64_t t : hh) mass += h.all.mass[t];
    const std::vector<double> rest(h.all.mass.begin() + Sinks(), h.all.mass.end());
    const double ratio = mass / hh.size() / Median(rest);
    EXPECT_GT(ratio, 1.0) << "layer " << h.layer << " q head " << h.q_head;
    ratios.push_back(ratio);
  }
  std::printf("heavy hitter mass / median position: median %.2f min %.2f\n", Median(ratios),
              *std::min_element(ratios.begin(), ratios.end()));
}

// The first continuation queries favour the last 5% of the context over the rest of the same
// (final) segment: a recency effect, not a topic one.
TEST_P(SynthStructureTest, RecentKeysDrawMoreThanEarlierKeysOfTheSameSegment) {
  const SynthSegment& last = f_->s.segments.back();
  const int64_t recent = T() - std::max<int64_t>(1, T() / 20);
  ASSERT_GT(recent, last.begin);
  std::vector<double> ratios;
  for (const HeadStats& h : f_->heads) {
    const double near = Sum(h.early.mass, recent, T()) / (T() - recent);
    const double far = Sum(h.early.mass, last.begin, recent) / (recent - last.begin);
    ratios.push_back(near / far);
  }
  std::printf("recent / rest of the final segment: median %.2f min %.2f\n", Median(ratios),
              *std::min_element(ratios.begin(), ratios.end()));
  EXPECT_GT(Median(ratios), 1.5);
  const auto above = std::count_if(ratios.begin(), ratios.end(), [](double r) { return r > 1.0; });
  EXPECT_GE(above, static_cast<long>(0.75 * ratios.size()));
}

double Correlation(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = static_cast<double>(a.size());
  const double ma = std::accumulate(a.begin(), a.end(), 0.0) / n;
  const double mb = std::accumulate(b.begin(), b.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

std::vector<double> LogMass(const std::vector<double>& mass, int64_t from) {
  std::vector<double> out;
  for (size_t t = from; t < mass.size(); ++t) out.push_back(std::log(mass[t] + 1e-12));
  return out;
}

// Query heads of one group attend alike on average (shared KV head, topics, recency) but
// differently row by row (each has its own strengths and preferred directions).
TEST_P(SynthStructureTest, GqaHeadsOfAGroupShareStructureButDiffer) {
  const KvLayout& L = f_->opts.layout;
  const int group = L.group();
  ASSERT_GE(group, 2);
  std::vector<double> corr, tv;
  for (size_t i = 0; i + 1 < f_->heads.size(); ++i) {
    const HeadStats& a = f_->heads[i];
    const HeadStats& b = f_->heads[i + 1];
    if (a.layer != b.layer || a.q_head / group != b.q_head / group) continue;
    corr.push_back(Correlation(LogMass(a.all.mass, Sinks()), LogMass(b.all.mass, Sinks())));
    const std::vector<float> k = ToFloats(f_->cache.layers[a.layer].k);
    const std::vector<float> q = ToFloats(*f_->cache.layers[a.layer].q_ref);
    double distance = 0;
    constexpr int kRows = 8;
    for (int64_t row = 0; row < kRows; ++row) {
      const std::vector<double> pa = AttentionRow(k, q, L, f_->opts.n_ref, a.q_head, row);
      const std::vector<double> pb = AttentionRow(k, q, L, f_->opts.n_ref, b.q_head, row);
      for (size_t t = 0; t < pa.size(); ++t) distance += 0.5 * std::abs(pa[t] - pb[t]) / kRows;
    }
    tv.push_back(distance);
  }
  std::printf(
      "within a group: log-attention correlation median %.2f min %.2f; per-row total "
      "variation median %.2f min %.2f\n",
      Median(corr), *std::min_element(corr.begin(), corr.end()), Median(tv),
      *std::min_element(tv.begin(), tv.end()));
  EXPECT_GT(Median(corr), 0.3);
  EXPECT_GT(*std::min_element(tv.begin(), tv.end()), 0.1);
}

INSTANTIATE_TEST_SUITE_P(Presets, SynthStructureTest, ::testing::ValuesIn(Configs()),
                         [](const ::testing::TestParamInfo<Config>& info) {
                           return info.param.name;
                         });

// Keys are post-RoPE with pairs (2i, 2i+1) and angle pos * theta^(-2i/d): undoing exactly that
// rotation brings back the constant positional component in the fast-rotating pairs, which the
// stored keys average away; undoing another convention or base does not.
enum class Rope { kInterleaved, kHalfSplit };

double FastPairEnergyOfMean(const std::vector<float>& k, int64_t begin, int64_t end, int d,
                            double theta, Rope rope, bool unrotate) {
  std::vector<double> mean(d, 0.0);
  for (int64_t t = begin; t < end; ++t) {
    const float* x = k.data() + t * d;
    for (int i = 0; i < d / 2; ++i) {
      const int a = rope == Rope::kInterleaved ? 2 * i : i;
      const int b = rope == Rope::kInterleaved ? 2 * i + 1 : i + d / 2;
      const double angle = unrotate ? static_cast<double>(t) * std::pow(theta, -2.0 * i / d) : 0;
      mean[a] += x[a] * std::cos(angle) + x[b] * std::sin(angle);
      mean[b] += -x[a] * std::sin(angle) + x[b] * std::cos(angle);
    }
  }
  double energy = 0;
  // Pairs 1.. that turn by more than 0.01 rad per position (pair 0 turns 1 rad for every base).
  for (int i = 1; i < d / 2; ++i) {
    if (std::pow(theta, -2.0 * i / d) < 0.01) continue;
    const int a = rope == Rope::kInterleaved ? 2 * i : i;
    const int b = rope == Rope::kInterleaved ? 2 * i + 1 : i + d / 2;
    const double n = static_cast<double>(end - begin);
    energy += (mean[a] / n) * (mean[a] / n) + (mean[b] / n) * (mean[b] / n);
  }
  return energy;
}

TEST(SynthRopeTest, KeysAreRotatedByInterleavedPairsWithTheConfiguredTheta) {
  SynthOptions o = SynthSmall();
  o.rope_theta = 500000;
  const KvCache cache = GenerateSyntheticKv(o).value();
  const SynthStructure s = DescribeSynthetic(o).value();
  const SynthSegment& last = s.segments.back();
  const int d = o.layout.head_dim;
  const std::vector<float> k = ToFloats(cache.layers[1].k);  // KV head 0
  const double right =
      FastPairEnergyOfMean(k, last.begin, last.end, d, 500000, Rope::kInterleaved, true);
  const double stored =
      FastPairEnergyOfMean(k, last.begin, last.end, d, 500000, Rope::kInterleaved, false);
  const double other_theta =
      FastPairEnergyOfMean(k, last.begin, last.end, d, 10000, Rope::kInterleaved, true);
  const double half_split =
      FastPairEnergyOfMean(k, last.begin, last.end, d, 500000, Rope::kHalfSplit, true);
  std::printf(
      "fast-pair energy of the mean key: unrotated %.4f, stored %.4f, theta 1e4 %.4f, "
      "half-split %.4f\n",
      right, stored, other_theta, half_split);
  EXPECT_GT(right, 0.1);
  EXPECT_GT(right, 20 * stored);
  EXPECT_GT(right, 20 * other_theta);
  EXPECT_GT(right, 20 * half_split);
}

// Repeat-prefill rows sit at their own positions: they attend around them (RoPE recency).
TEST(SynthRepeatPrefillTest, RepeatRowsAttendAroundTheirPositions) {
  SynthOptions o = SynthSmall();
  o.repeat_prefill_share = 0.5;
  const KvCache cache = GenerateSyntheticKv(o).value();
  const SynthStructure s = DescribeSynthetic(o).value();
  const KvLayout& L = o.layout;
  const int64_t T = L.tokens;
  const int64_t radius = T / 32;
  const int layer = 1;
  const std::vector<float> k = ToFloats(cache.layers[layer].k);
  const std::vector<float> q = ToFloats(*cache.layers[layer].q_ref);
  std::vector<double> ratios;
  for (int h = 0; h < L.n_q_heads; ++h) {
    double near_mass = 0, near_share = 0;
    int rows = 0;
    for (int64_t i = 0; i < o.n_ref; ++i) {
      const int64_t pos = s.ref_positions[i];
      if (pos >= T) continue;
      const std::vector<double> p = AttentionRow(k, q, L, o.n_ref, h, i);
      const int64_t lo = std::max<int64_t>(o.n_sinks, pos - radius);
      const int64_t hi = std::min<int64_t>(T, pos + radius + 1);
      near_mass += Sum(p, lo, hi) / (1.0 - Sum(p, 0, o.n_sinks));
      near_share += static_cast<double>(hi - lo) / (T - o.n_sinks);
      ++rows;
    }
    ASSERT_EQ(rows, o.n_ref / 2);
    ratios.push_back(near_mass / near_share);
  }
  std::printf("repeat rows: mass within T/32 of their position / share: median %.2f\n",
              Median(ratios));
  EXPECT_GT(Median(ratios), 2.0);
}

// The window queries are the same kind of queries as the continuation: their attention
// predicts the continuation's (what SnapKV-style selectors rely on).
TEST(SynthWindowTest, WindowAttentionPredictsContinuationAttention) {
  const SynthOptions o = SynthSmall();
  const KvCache cache = GenerateSyntheticKv(o).value();
  const KvLayout& L = o.layout;
  const int layer = 2;
  const std::vector<float> k = ToFloats(cache.layers[layer].k);
  const std::vector<float> qw = ToFloats(*cache.layers[layer].q_window);
  const std::vector<float> qr = ToFloats(*cache.layers[layer].q_ref);
  std::vector<double> corr;
  for (int h = 0; h < L.n_q_heads; ++h) {
    Mass window, ref;
    for (int64_t i = 0; i < o.window; ++i) window.Add(AttentionRow(k, qw, L, o.window, h, i));
    for (int64_t i = 0; i < o.n_ref; ++i) ref.Add(AttentionRow(k, qr, L, o.n_ref, h, i));
    window.Finish();
    ref.Finish();
    corr.push_back(Correlation(LogMass(window.mass, o.n_sinks), LogMass(ref.mass, o.n_sinks)));
  }
  std::printf("window vs continuation log-attention correlation: median %.2f min %.2f\n",
              Median(corr), *std::min_element(corr.begin(), corr.end()));
  EXPECT_GT(Median(corr), 0.5);
}

}  // namespace
}  // namespace kvc
