#include <gtest/gtest.h>

#include "kernels/cpu/methods_test_util.h"
#include "kernels/cpu/pipeline.h"

namespace kvc::cpu {
namespace {

using testing::CacheShape;
using testing::RandomCache;

TEST(H2oTest, AccumulatedCausalWindowAttention) {
  CacheShape shape;
  const PreparedCache c = RandomCache(shape, 21);
  H2oOptions o;
  o.recent_fraction = 0.5;
  Result<ScoreSet> s = ScoreH2o(c, o, /*head_budget=*/9);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const int G = shape.NQ / shape.H;
  for (int l = 0; l < shape.L; ++l) {
    for (int h = 0; h < shape.H; ++h) {
      std::vector<double> want(shape.T, 0.0);
      for (int q = h * G; q < (h + 1) * G; ++q) {
        const auto sums = testing::RefWindowSums(c, l, q, shape.W);
        for (int64_t j = 0; j < shape.T; ++j) want[j] += sums[j];
      }
      for (int64_t j = 0; j < shape.T; ++j) EXPECT_NEAR(s->at(l, h)[j], want[j], 1e-4);
    }
  }
  // round(0.5 * 9) = 5 recent positions forced.
  EXPECT_EQ(s->forced, (std::vector<int64_t>{35, 36, 37, 38, 39}));
}

TEST(H2oTest, FallsBackToFitQueriesWithFullAttention) {
  CacheShape shape;
  shape.W = 0;
  shape.n_fit = 5;
  const PreparedCache c = RandomCache(shape, 22);
  Result<ScoreSet> s = ScoreH2o(c, H2oOptions{}, 4);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const int G = shape.NQ / shape.H;
  const int l = 1, h = 1;
  std::vector<double> want(shape.T, 0.0);
  for (int q = h * G; q < (h + 1) * G; ++q) {
    for (int64_t r = 0; r < shape.n_fit; ++r) {
      const float* row = c.layers[l].q_fit->data<float>() + (q * shape.n_fit + r) * shape.d;
      const auto a = testing::RefAttention(row, c.K(l, h), shape.T, shape.d, shape.T);
      for (int64_t j = 0; j < shape.T; ++j) want[j] += a[j];
    }
  }
  for (int64_t j = 0; j < shape.T; ++j) EXPECT_NEAR(s->at(l, h)[j], want[j], 1e-4);
}

TEST(H2oTest, NoQueriesIsInvalidArgumentNamingTheKind) {
  CacheShape shape;
  shape.W = 0;
  const PreparedCache c = RandomCache(shape, 23);
  Result<ScoreSet> s = ScoreH2o(c, H2oOptions{}, 4);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.status().IsInvalidArgument());
  EXPECT_NE(s.status().message().find("h2o needs q_window"), std::string::npos);
}

}  // namespace
}  // namespace kvc::cpu
