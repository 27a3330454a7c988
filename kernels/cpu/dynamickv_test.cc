#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "kernels/cpu/budgets.h"
#include "kernels/cpu/methods_test_util.h"
#include "kernels/cpu/pipeline.h"

namespace kvc::cpu {
namespace {

using testing::CacheShape;
using testing::RandomCache;

// DynamicKV's re-normalisation written plainly with full sorts (design §4).
std::vector<int64_t> RefLayerBudgets(const ScoreSet& s, int64_t w, int64_t cap, double radio,
                                     int m) {
  const int L = s.n_layers, H = s.n_kv_heads;
  const int64_t prefix = s.T - w, base = cap - w;
  const int64_t size = std::min<int64_t>(std::floor(radio * base), prefix);
  std::vector<int64_t> retained(L, size);
  for (int seen = std::min(m, L);; seen = std::min(seen + m, L)) {
    std::vector<std::tuple<float, int, int, int64_t>> pool;  // (-value, layer, head, pos)
    for (int l = 0; l < seen; ++l) {
      for (int h = 0; h < H; ++h) {
        std::vector<std::tuple<float, int, int, int64_t>> head;
        for (int64_t j = 0; j < prefix; ++j) head.emplace_back(-s.at(l, h)[j], l, h, j);
        std::sort(head.begin(), head.end());
        head.resize(retained[l]);
        pool.insert(pool.end(), head.begin(), head.end());
      }
    }
    std::sort(pool.begin(), pool.end());
    const int64_t n = std::min<int64_t>(base * H * seen, pool.size());
    std::vector<int64_t> count(seen, 0);
    for (int64_t i = 0; i < n; ++i) ++count[std::get<1>(pool[i])];
    int64_t given = 0;
    for (int l = 0; l < seen; ++l) {
      const int64_t b =
          l == seen - 1
              ? base * L - given
              : static_cast<int64_t>(std::floor(double(count[l]) / double(n) * double(base * L)));
      given += b;
      retained[l] = std::min(retained[l], b);
    }
    if (seen == L) break;
  }
  for (int64_t& b : retained) b += w;
  return retained;
}

// Prefix scores of one head: layer-specific levels, so the winners of the global top are known.
ScoreSet LevelScores(const std::vector<float>& level, int64_t T) {
  const int L = static_cast<int>(level.size());
  ScoreSet s = ScoreSet::Zeros(L, 1, T);
  for (int l = 0; l < L; ++l) {
    for (int64_t j = 0; j < T; ++j) s.at(l, 0)[j] = level[l] + 0.01f * static_cast<float>(j);
  }
  return s;
}

TEST(DynamicKvTest, ScoresAreSummedPooledWindowAttention) {
  CacheShape shape;
  shape.T = 30;
  shape.W = 10;
  const PreparedCache c = RandomCache(shape, 51);
  DynamicKvOptions o;
  o.window = 8;
  o.kernel = 5;
  Result<ScoreSet> s = ScoreDynamicKv(c, o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const int G = shape.NQ / shape.H;
  const int64_t prefix = shape.T - 8;
  for (int l = 0; l < shape.L; ++l) {
    for (int h = 0; h < shape.H; ++h) {
      std::vector<double> want(prefix, 0.0);
      for (int q = h * G; q < (h + 1) * G; ++q) {
        const auto sums = testing::RefWindowSums(c, l, q, 8);
        for (int64_t i = 0; i < prefix; ++i) {
          double acc = 0.0;
          for (int64_t j = i - 2; j <= i + 2; ++j) acc += (j >= 0 && j < prefix) ? sums[j] : 0.0;
          want[i] += acc / 5 / G;
        }
      }
      for (int64_t i = 0; i < prefix; ++i) EXPECT_NEAR(s->at(l, h)[i], want[i], 1e-5);
    }
  }
  EXPECT_EQ(s->forced.size(), 8u);
  EXPECT_EQ(s->forced.front(), shape.T - 8);
}

TEST(DynamicKvTest, GlobalBudgetsFollowTheWinners) {
  // cap 4, w 2: base 2, global top 2 * 1 * 2 = 4 prefix entries, all from layer 0.
  const ScoreSet s = LevelScores({10.0f, 0.0f}, 12);
  DynamicKvOptions o;
  EXPECT_EQ(DynamicKvLayerBudgets(s, o, 2, 4), (std::vector<int64_t>{6, 2}));
}

TEST(DynamicKvTest, ProgressiveStarvesEarlyLayersWhereGlobalDoesNot) {
  // radio_max 2: each head offers its top 4. Global (N = 8): layers 0 and 1 win 4 each.
  // Progressive, m = 2: after layers 0-1 the top 4 are all layer 0's; the scaled budgets are
  // {8, 0}, so layer 1 is truncated to 0 and layer 2 wins its place at the final step.
  const ScoreSet s = LevelScores({100.0f, 50.0f, 2.0f, 1.0f}, 12);
  DynamicKvOptions o;
  o.radio_max = 2.0;
  EXPECT_EQ(DynamicKvLayerBudgets(s, o, 2, 4), (std::vector<int64_t>{6, 6, 2, 2}));
  o.progressive = true;
  o.every_m = 2;
  EXPECT_EQ(DynamicKvLayerBudgets(s, o, 2, 4), (std::vector<int64_t>{6, 2, 6, 2}));
  // m >= L is the global step.
  o.every_m = 4;
  EXPECT_EQ(DynamicKvLayerBudgets(s, o, 2, 4), (std::vector<int64_t>{6, 6, 2, 2}));
}

TEST(DynamicKvTest, LayerBudgetsMatchReferenceOnRandomScores) {
  CacheShape shape;
  shape.L = 7;
  shape.H = 3;
  shape.NQ = 6;
  shape.T = 90;
  shape.W = 8;
  const PreparedCache c = RandomCache(shape, 52);
  DynamicKvOptions o;
  const ScoreSet s = *ScoreDynamicKv(c, o);
  for (int64_t cap : {9, 12, 20, 40}) {
    for (bool progressive : {false, true}) {
      o.progressive = progressive;
      o.every_m = 3;
      const std::vector<int64_t> got = DynamicKvLayerBudgets(s, o, 8, cap);
      EXPECT_EQ(got, RefLayerBudgets(s, 8, cap, o.radio_max, progressive ? 3 : shape.L))
          << "cap=" << cap << " progressive=" << progressive;
      if (!progressive) {
        int64_t sum = 0;
        for (int64_t b : got) sum += b;
        EXPECT_EQ(sum, shape.L * cap);  // global mode: exactly base * L + w * L
      }
    }
  }
}

TEST(DynamicKvTest, AllocatorTotalsAreExactInBothModes) {
  CacheShape shape;
  shape.L = 6;
  shape.T = 80;
  shape.W = 8;
  const PreparedCache c = RandomCache(shape, 53);
  CompactionSpec spec;
  spec.method = Method::kDynamicKv;
  for (bool progressive : {false, true}) {
    spec.dynamickv.progressive = progressive;
    spec.dynamickv.every_m = 2;
    const ScoreSet s = *ComputeScores(c, spec, 10);
    for (int64_t hb : {1, 8, 9, 10, 25, 79, 80}) {
      Result<Budgets> b = AllocateBudgets(c, s, spec, hb);
      ASSERT_TRUE(b.ok()) << b.status().ToString();
      EXPECT_EQ(testing::Total(*b), int64_t{shape.L} * shape.H * hb);
      for (const auto& row : *b) {
        if (!progressive) {
          EXPECT_EQ(row[0], row[1]);  // one budget per layer
        }
        EXPECT_GE(row[0], std::min<int64_t>(hb, 8)) << "the window is always affordable";
      }
    }
  }
}

TEST(DynamicKvTest, ErrorsNameTheMissingQueries) {
  CacheShape shape;
  shape.W = 0;
  const PreparedCache c = RandomCache(shape, 54);
  Result<ScoreSet> s = ScoreDynamicKv(c, DynamicKvOptions{});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("dynamickv needs q_window"), std::string::npos);
  DynamicKvOptions bad;
  bad.kernel = 0;
  EXPECT_TRUE(ScoreDynamicKv(RandomCache(CacheShape{}, 1), bad).status().IsInvalidArgument());
}

}  // namespace
}  // namespace kvc::cpu
