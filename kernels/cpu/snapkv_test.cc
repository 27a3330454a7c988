#include <gtest/gtest.h>

#include <algorithm>

#include "kernels/cpu/methods_test_util.h"
#include "kernels/cpu/pipeline.h"

namespace kvc::cpu {
namespace {

using testing::CacheShape;
using testing::RandomCache;

// SnapKV from its definition: per query head, mean over the last w window rows of the causal
// attention, pooled over the prefix [0, T - w) (window [i - k/2, i - k/2 + k - 1]; avg divides by
// k), then the mean over the GQA group.
std::vector<double> RefSnapKv(const PreparedCache& c, int l, int h, int64_t w, int k, Pooling p) {
  const int G = c.layout.group();
  const int64_t T = c.T(), prefix = T - w;
  std::vector<double> out(T, 0.0);
  for (int q = h * G; q < (h + 1) * G; ++q) {
    std::vector<double> mean = testing::RefWindowSums(c, l, q, w);
    for (double& x : mean) x /= w;
    for (int64_t i = 0; i < prefix; ++i) {
      double sum = 0.0, mx = -INFINITY;
      for (int64_t j = i - k / 2; j < i - k / 2 + k; ++j) {
        if (j < 0 || j >= prefix) continue;
        sum += mean[j];
        mx = std::max(mx, mean[j]);
      }
      out[i] += (p == Pooling::kMax ? mx : sum / k) / G;
    }
  }
  return out;
}

TEST(SnapKvTest, MatchesDefinitionAvgAndMaxWithWindowSubset) {
  CacheShape shape;
  shape.T = 33;
  shape.W = 7;
  const PreparedCache c = RandomCache(shape, 31);
  for (Pooling p : {Pooling::kAvg, Pooling::kMax}) {
    for (int window : {0, 3}) {
      for (int kernel : {1, 4, 5, 7}) {
        SnapKvOptions o;
        o.pooling = p;
        o.window = window;
        o.kernel = kernel;
        Result<ScoreSet> s = ScoreSnapKv(c, o);
        ASSERT_TRUE(s.ok()) << s.status().ToString();
        const int64_t w = window == 0 ? shape.W : window;
        std::vector<int64_t> forced;
        for (int64_t j = shape.T - w; j < shape.T; ++j) forced.push_back(j);
        EXPECT_EQ(s->forced, forced);
        for (int l = 0; l < shape.L; ++l) {
          for (int h = 0; h < shape.H; ++h) {
            const auto want = RefSnapKv(c, l, h, w, kernel, p);
            for (int64_t j = 0; j < shape.T - w; ++j) {
              EXPECT_NEAR(s->at(l, h)[j], want[j], 1e-5) << "kernel=" << kernel << " j=" << j;
            }
          }
        }
      }
    }
  }
}

TEST(SnapKvTest, KeepsWindowAndTopPooledScores) {
  CacheShape shape;
  const PreparedCache c = RandomCache(shape, 32);
  Result<ScoreSet> s = ScoreSnapKv(c, SnapKvOptions{});
  ASSERT_TRUE(s.ok());
  const int64_t b = 12;
  const Selection sel = SelectTopK(*s, Budgets(shape.L, std::vector<int64_t>(shape.H, b)));
  for (int l = 0; l < shape.L; ++l) {
    for (int h = 0; h < shape.H; ++h) {
      ASSERT_EQ(static_cast<int64_t>(sel[l][h].size()), b);
      for (int64_t j = shape.T - shape.W; j < shape.T; ++j) {
        EXPECT_TRUE(std::binary_search(sel[l][h].begin(), sel[l][h].end(), j));
      }
      // Every kept prefix position scores at least as high as every evicted prefix position.
      float min_kept = INFINITY, max_evicted = -INFINITY;
      for (int64_t j = 0; j < shape.T - shape.W; ++j) {
        const bool kept = std::binary_search(sel[l][h].begin(), sel[l][h].end(), j);
        const float v = s->at(l, h)[j];
        if (kept) {
          min_kept = std::min(min_kept, v);
        } else {
          max_evicted = std::max(max_evicted, v);
        }
      }
      EXPECT_GE(min_kept, max_evicted);
    }
  }
}

TEST(SnapKvTest, MissingWindowQueriesIsInvalidArgument) {
  CacheShape shape;
  shape.W = 0;
  shape.n_fit = 4;
  const PreparedCache c = RandomCache(shape, 33);
  Result<ScoreSet> s = ScoreSnapKv(c, SnapKvOptions{});
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.status().IsInvalidArgument());
  EXPECT_NE(s.status().message().find("snapkv needs q_window"), std::string::npos);
}

}  // namespace
}  // namespace kvc::cpu
