#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cpu/budgets.h"
#include "kernels/cpu/methods_test_util.h"
#include "kernels/cpu/pipeline.h"

namespace kvc::cpu {
namespace {

using testing::CacheShape;
using testing::RandomCache;

TEST(PyramidLayerBudgetsTest, FollowsTheLinearSchedule) {
  // cap = 72, w = 8: min = 64 / 20 = 3.2, max = 128 - 3.2 = 124.8, step = 121.6 / 3.
  const std::vector<double> b = PyramidLayerBudgets(4, 72, 8, 20.0);
  ASSERT_EQ(b.size(), 4u);
  const double lo = 3.2, hi = 124.8;
  for (int l = 0; l < 4; ++l) EXPECT_DOUBLE_EQ(b[l], 8 + std::round(hi - l * (hi - lo) / 3));
  EXPECT_DOUBLE_EQ(b[0], 8 + 125);
  EXPECT_DOUBLE_EQ(b[3], 8 + 3);
}

TEST(PyramidLayerBudgetsTest, DegenerateCases) {
  EXPECT_EQ(PyramidLayerBudgets(1, 50, 8, 20.0), std::vector<double>{50});
  EXPECT_EQ(PyramidLayerBudgets(3, 6, 8, 20.0), (std::vector<double>{6, 6, 6}));  // cap <= w
}

TEST(PyramidKvAllocatorTest, DecreasingLayersAndExactTotal) {
  CacheShape shape;
  shape.L = 5;
  shape.T = 200;
  shape.W = 8;
  const PreparedCache c = RandomCache(shape, 41);
  CompactionSpec spec;
  spec.method = Method::kPyramidKv;
  Result<ScoreSet> s = ComputeScores(c, spec, 30);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  for (int64_t hb : {9, 20, 30, 57, 150, 200}) {
    Result<Budgets> b = AllocateBudgets(c, *s, spec, hb);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_EQ(testing::Total(*b), int64_t{shape.L} * shape.H * hb) << "hb=" << hb;
    for (int l = 0; l < shape.L; ++l) {
      for (int h = 0; h < shape.H; ++h) {
        EXPECT_GE((*b)[l][h], 0);
        EXPECT_LE((*b)[l][h], shape.T);
        if (l > 0) {
          EXPECT_LE((*b)[l][h], (*b)[l - 1][h] + 1) << "hb=" << hb;  // +1: rounding
        }
      }
    }
  }
  // When no cap binds, the layers follow the schedule up to the exact-total rounding.
  const std::vector<double> sched = PyramidLayerBudgets(shape.L, 30, shape.W, 20.0);
  Result<Budgets> b = AllocateBudgets(c, *s, spec, 30);
  double sum = 0;
  for (double x : sched) sum += x;
  for (int l = 0; l < shape.L; ++l) {
    const double want = sched[l] * shape.L * 30 / sum;
    EXPECT_NEAR((*b)[l][0], want, 1.0) << "l=" << l;
  }
  EXPECT_GT((*b)[0][0], (*b)[shape.L - 1][0]);
}

}  // namespace
}  // namespace kvc::cpu
