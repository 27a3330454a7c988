#include "kernels/cpu/d2o.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/budgets.h"
#include "kernels/cpu/methods_test_util.h"

namespace kvc::cpu {
namespace {

using testing::CacheShape;
using testing::RandomCache;

double Cosine(const float* a, const float* b, int d) {
  double ab = 0, aa = 0, bb = 0;
  for (int x = 0; x < d; ++x)
    ab += double(a[x]) * b[x], aa += double(a[x]) * a[x], bb += double(b[x]) * b[x];
  return ab / std::sqrt(aa * bb);
}

// sigma_l from its definition: per query head, the column sums a of the causal window attention,
// a' = (a - min) / (max - min), population variance of a'; mean over query heads.
double RefSigma(const PreparedCache& c, int l) {
  double sigma = 0;
  for (int q = 0; q < c.layout.n_q_heads; ++q) {
    const auto a = testing::RefWindowSums(c, l, q, c.layers[l].q_window->dim(1));
    const double lo = *std::min_element(a.begin(), a.end());
    const double hi = *std::max_element(a.begin(), a.end());
    double mean = 0, var = 0;
    for (double x : a) mean += (x - lo) / (hi - lo) / a.size();
    for (double x : a) var += std::pow((x - lo) / (hi - lo) - mean, 2) / a.size();
    sigma += var / c.layout.n_q_heads;
  }
  return sigma;
}

TEST(D2oTest, ScoresAreCumulativeWindowAttention) {
  CacheShape shape;
  const PreparedCache c = RandomCache(shape, 61);
  D2oOptions o;
  o.sinks = 2;
  Result<ScoreSet> s = ScoreD2o(c, o, /*head_budget=*/10);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const int G = shape.NQ / shape.H;
  for (int l = 0; l < shape.L; ++l) {
    for (int h = 0; h < shape.H; ++h) {
      std::vector<double> want(shape.T, 0.0);
      for (int q = h * G; q < (h + 1) * G; ++q) {
        const auto a = testing::RefWindowSums(c, l, q, shape.W);
        for (int64_t j = 0; j < shape.T; ++j) want[j] += a[j];
      }
      for (int64_t j = 0; j < shape.T; ++j) EXPECT_NEAR(s->at(l, h)[j], want[j], 1e-4);
    }
  }
  // 2 sinks + round(10 * 0.1 / 0.2) = 5 recent.
  EXPECT_EQ(s->forced, (std::vector<int64_t>{0, 1, 35, 36, 37, 38, 39}));
}

TEST(D2oTest, LayerRatiosFromAttentionVariance) {
  CacheShape shape;
  shape.L = 4;
  const PreparedCache c = RandomCache(shape, 62);
  D2oOptions o;
  o.hh_ratio = 0.3;
  o.recent_ratio = 0.2;
  Result<std::vector<double>> r = D2oLayerRatios(c, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::vector<double> sigma(shape.L);
  double z = 0;
  for (int l = 0; l < shape.L; ++l) z += std::exp(-(sigma[l] = RefSigma(c, l)));
  for (int l = 0; l < shape.L; ++l) {
    const double want = std::clamp(std::exp(-sigma[l]) / z * shape.L * 0.5, 0.01, 1.0);
    EXPECT_NEAR((*r)[l], want, 1e-6) << "l=" << l;
  }
}

TEST(D2oTest, AllocatorKeepsUncompressedLayersWholeAndScalesTheRest) {
  CacheShape shape;
  shape.L = 6;
  shape.T = 50;
  const PreparedCache c = RandomCache(shape, 63);
  CompactionSpec spec;
  spec.method = Method::kD2o;
  const ScoreSet s = *ComputeScores(c, spec, 30);
  const std::vector<double> ratio = *D2oLayerRatios(c, spec.d2o);
  const int64_t hb = 30;  // total 360; layers 0, 1, 5 take 3 * 2 * 50 = 300; 60 for layers 2-4
  Result<Budgets> b = AllocateBudgets(c, s, spec, hb);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(testing::Total(*b), 6 * 2 * hb);
  for (int l : {0, 1, 5}) EXPECT_EQ((*b)[l], (std::vector<int64_t>{50, 50}));
  const double rsum = 2 * (ratio[2] + ratio[3] + ratio[4]);
  for (int l : {2, 3, 4}) {
    for (int h = 0; h < 2; ++h) EXPECT_NEAR((*b)[l][h], 60 * ratio[l] / rsum, 1.0);
  }
  // A total too small for the whole layers: every layer shares it, whole layers with ratio 1.
  b = AllocateBudgets(c, s, spec, 5);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(testing::Total(*b), 6 * 2 * 5);
  EXPECT_GE((*b)[0][0], (*b)[2][0]);
  // Out-of-range entries are ignored; -1 is the last layer.
  spec.d2o.uncompressed_layers = {9, -1, -1, -20};
  EXPECT_EQ(D2oUncompressedLayers(spec.d2o, 6), std::vector<int>{5});
}

TEST(D2oTest, ThresholdIsMeanThenEma) {
  D2oOptions o;
  o.ema_alpha = 0.25;
  o.ema_beta = 0.75;
  D2oThreshold t;
  EXPECT_FALSE(t.initialised());
  EXPECT_DOUBLE_EQ(t.Update(0.8, o), 0.8);
  EXPECT_DOUBLE_EQ(t.Update(0.4, o), 0.25 * 0.8 + 0.75 * 0.4);
  EXPECT_DOUBLE_EQ(t.tau(), 0.5);
}

// The merge of one layer written plainly (design §4): per head and evicted e, s_he = max cosine
// to the kept keys, j* its argmax; m_e = mean over heads of s_he; tau = mean_e m_e (first use);
// e merges iff m_e >= tau: k_j <- (k_j + sum s k_e) / (1 + n_j), same for v.
struct RefMerged {
  std::vector<std::vector<double>> k, v;  // per head, [t, d]
  int merged = 0;
};

RefMerged RefMergeLayer(const PreparedCache& c, int l,
                        const std::vector<std::vector<int64_t>>& kept) {
  const int d = c.d(), H = c.layout.n_kv_heads;
  const int64_t T = c.T();
  std::vector<std::vector<double>> s(H, std::vector<double>(T, -2));
  std::vector<std::vector<int>> arg(H, std::vector<int>(T, -1));
  for (int h = 0; h < H; ++h) {
    for (int64_t e = 0; e < T; ++e) {
      if (std::count(kept[h].begin(), kept[h].end(), e)) continue;
      for (size_t j = 0; j < kept[h].size(); ++j) {
        const double cs = Cosine(c.K(l, h) + e * d, c.K(l, h) + kept[h][j] * d, d);
        if (cs > s[h][e]) s[h][e] = cs, arg[h][e] = static_cast<int>(j);
      }
    }
  }
  std::vector<double> m(T, 0);
  double tau = 0;
  int evicted = 0;
  for (int64_t e = 0; e < T; ++e) {
    int n = 0;
    for (int h = 0; h < H; ++h) {
      if (arg[h][e] >= 0) m[e] += s[h][e], ++n;
    }
    if (n > 0) m[e] /= n, tau += m[e], ++evicted;
  }
  tau /= evicted;
  RefMerged out;
  for (int h = 0; h < H; ++h) {
    const size_t t = kept[h].size();
    std::vector<double> k(t * d), v(t * d), n(t, 0);
    for (size_t i = 0; i < t * d; ++i) {
      k[i] = c.K(l, h)[kept[h][i / d] * d + i % d];
      v[i] = c.V(l, h)[kept[h][i / d] * d + i % d];
    }
    for (int64_t e = 0; e < T; ++e) {
      if (arg[h][e] < 0 || m[e] < tau) continue;
      const int j = arg[h][e];
      for (int x = 0; x < d; ++x) {
        k[j * d + x] += s[h][e] * c.K(l, h)[e * d + x];
        v[j * d + x] += s[h][e] * c.V(l, h)[e * d + x];
      }
      ++n[j], ++out.merged;
    }
    for (size_t i = 0; i < t * d; ++i) k[i] /= 1 + n[i / d], v[i] /= 1 + n[i / d];
    out.k.push_back(std::move(k));
    out.v.push_back(std::move(v));
  }
  return out;
}

TEST(D2oTest, MergeMatchesBruteForce) {
  CacheShape shape;
  shape.L = 2;
  shape.T = 24;
  shape.d = 6;
  const PreparedCache c = RandomCache(shape, 64);
  const Selection sel = {{{0, 3, 7, 8, 20, 23}, {1, 3, 9, 15, 22}}, {{2, 4, 6}, {0, 23}}};
  Result<LayerResults> got = D2oMerge(c, sel, D2oOptions{});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  for (int l = 0; l < shape.L; ++l) {
    const RefMerged want = RefMergeLayer(c, l, sel[l]);
    EXPECT_GT(want.merged, 0);
    for (int h = 0; h < shape.H; ++h) {
      const HeadResult& r = (*got)[l][h];
      EXPECT_EQ(r.positions, sel[l][h]);
      EXPECT_EQ(r.beta, std::vector<float>(sel[l][h].size(), 0.0f));
      ASSERT_EQ(r.k.size(), want.k[h].size());
      for (size_t i = 0; i < r.k.size(); ++i) {
        EXPECT_NEAR(r.k[i], want.k[h][i], 1e-5);
        EXPECT_NEAR(r.v[i], want.v[h][i], 1e-5);
      }
    }
  }
}

TEST(D2oTest, ThresholdCarriesAcrossRoundsAndMergeCanBeOff) {
  CacheShape shape;
  shape.L = 2;
  const PreparedCache c = RandomCache(shape, 65);
  const Selection a = {{{0, 5, 30}, {1, 2, 39}}, {{4}, {7, 8}}};
  const Selection b = {{{0, 1, 2, 3}, {10, 20}}, {{4, 9, 11}, {7}}};
  D2oOptions o;
  std::vector<D2oThreshold> taus;
  ASSERT_TRUE(D2oMergeRound(c, a, o, &taus).ok());
  const double tau_a = taus[1].tau();
  std::vector<D2oThreshold> fresh;
  ASSERT_TRUE(D2oMergeRound(c, b, o, &fresh).ok());
  const double mean_b = fresh[1].tau();  // first use: the round's mean similarity
  ASSERT_TRUE(D2oMergeRound(c, b, o, &taus).ok());
  EXPECT_NEAR(taus[1].tau(), o.ema_alpha * tau_a + o.ema_beta * mean_b, 1e-12);

  o.merge = false;
  Result<LayerResults> off = D2oMerge(c, a, o);
  ASSERT_TRUE(off.ok());
  const LayerResults plain = GatherSelected(c, a);
  for (int l = 0; l < 2; ++l) {
    for (int h = 0; h < 2; ++h) {
      EXPECT_EQ((*off)[l][h].k, plain[l][h].k);
      EXPECT_EQ((*off)[l][h].v, plain[l][h].v);
    }
  }
}

TEST(D2oTest, Errors) {
  CacheShape shape;
  shape.W = 0;
  const PreparedCache none = RandomCache(shape, 66);
  Result<ScoreSet> s = ScoreD2o(none, D2oOptions{}, 5);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("d2o needs q_window"), std::string::npos);
  EXPECT_TRUE(D2oLayerRatios(none, D2oOptions{}).status().IsInvalidArgument());

  const PreparedCache c = RandomCache(CacheShape{}, 67);
  EXPECT_TRUE(D2oMerge(c, {{{3, 1}, {}}, {{}, {}}}, D2oOptions{}).status().IsInvalidArgument());
  EXPECT_TRUE(D2oMerge(c, {{{40}, {}}, {{}, {}}}, D2oOptions{}).status().IsInvalidArgument());
  EXPECT_TRUE(D2oMerge(c, {{{}, {}}}, D2oOptions{}).status().IsInvalidArgument());
}

}  // namespace
}  // namespace kvc::cpu
