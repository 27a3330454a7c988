#include "kernels/cpu/budgets.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "kernels/cpu/methods_test_util.h"

namespace kvc::cpu {
namespace {

using testing::CacheShape;
using testing::RandomCache;

int64_t Sum(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{0});
}

TEST(ApportionExactTest, LargestRemainderWithoutCaps) {
  // Ideals 10 * {0.5, 0.3, 0.2} / 1.0 = {5, 3, 2}.
  EXPECT_EQ(ApportionExact({5, 3, 2}, 10, {100, 100, 100}), (std::vector<int64_t>{5, 3, 2}));
  // Ideals 7/3 each: floors 2, 2, 2; the one leftover goes to the lowest index (tie).
  EXPECT_EQ(ApportionExact({1, 1, 1}, 7, {9, 9, 9}), (std::vector<int64_t>{3, 2, 2}));
  // Ideals {1.4, 2.6, 1.0}: floors {1, 2, 1}, leftover 1 to the largest remainder (index 1).
  EXPECT_EQ(ApportionExact({1.4, 2.6, 1.0}, 5, {9, 9, 9}), (std::vector<int64_t>{1, 3, 1}));
}

TEST(ApportionExactTest, CapsRedistributeAndZeroSharesTakeOverflow) {
  // Entry 0 would get 8 of 10 but is capped at 3; the other 7 go to entry 1.
  EXPECT_EQ(ApportionExact({8, 2}, 10, {3, 100}), (std::vector<int64_t>{3, 7}));
  // Only entry 0 has a share; what its cap cannot hold spreads over the zero-share entries.
  EXPECT_EQ(ApportionExact({1, 0, 0}, 6, {2, 5, 5}), (std::vector<int64_t>{2, 2, 2}));
  // The total exceeds every cap: each entry is full.
  EXPECT_EQ(ApportionExact({1, 2}, 50, {4, 5}), (std::vector<int64_t>{4, 5}));
  // All shares zero, negative or NaN: equal shares.
  EXPECT_EQ(ApportionExact({0, -1, NAN}, 6, {9, 9, 9}), (std::vector<int64_t>{2, 2, 2}));
}

TEST(ApportionExactTest, RandomInputsAlwaysExactAndWithinCaps) {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::uniform_int_distribution<int64_t> cap(0, 50);
  for (int trial = 0; trial < 300; ++trial) {
    const size_t n = 1 + trial % 17;
    std::vector<double> shares(n);
    std::vector<int64_t> caps(n);
    for (size_t i = 0; i < n; ++i) {
      shares[i] = u(rng) < 0.2 ? 0.0 : std::pow(u(rng), 3) * 1e3;
      caps[i] = cap(rng);
    }
    const int64_t total = std::uniform_int_distribution<int64_t>(0, 60 * n)(rng);
    const std::vector<int64_t> b = ApportionExact(shares, total, caps);
    EXPECT_EQ(Sum(b), std::min(total, Sum(caps)));
    for (size_t i = 0; i < n; ++i) {
      EXPECT_GE(b[i], 0);
      EXPECT_LE(b[i], caps[i]);
    }
  }
}

TEST(AllocateBudgetsTest, UniformIsExactAndCappedAtT) {
  CacheShape shape;
  const PreparedCache c = RandomCache(shape, 1);
  CompactionSpec spec;
  spec.method = Method::kStreamingLlm;
  const ScoreSet s = *ScoreStreamingLlm(c, spec.streaming);
  for (int64_t hb : {0, 1, 7, 40, 55}) {
    Result<Budgets> b = AllocateBudgets(c, s, spec, hb);
    ASSERT_TRUE(b.ok());
    for (const auto& row : *b) {
      for (int64_t x : row) EXPECT_EQ(x, std::min<int64_t>(hb, shape.T));
    }
  }
  EXPECT_TRUE(AllocateBudgets(c, s, spec, -1).status().IsInvalidArgument());
}

// Every allocator, every budget: the total is exact (capped at L * H * T), entries in [0, T].
TEST(AllocateBudgetsTest, EveryAllocatorRespectsTheTotal) {
  CacheShape shape;
  shape.L = 6;
  shape.T = 64;
  shape.W = 8;
  const PreparedCache c = RandomCache(shape, 2);
  CompactionSpec spec;
  spec.method = Method::kDynamicKv;
  const ScoreSet s = *ComputeScores(c, spec, 10);
  for (Allocator a :
       {Allocator::kUniform, Allocator::kPyramid, Allocator::kDynamicKv, Allocator::kD2o}) {
    spec.allocator = a;
    for (int64_t hb : {0, 1, 5, 8, 9, 13, 32, 63, 64, 90}) {
      Result<Budgets> b = AllocateBudgets(c, s, spec, hb);
      ASSERT_TRUE(b.ok()) << AllocatorName(a) << ": " << b.status().ToString();
      EXPECT_EQ(testing::Total(*b), int64_t{shape.L} * shape.H * std::min<int64_t>(hb, shape.T))
          << AllocatorName(a) << " hb=" << hb;
      ASSERT_EQ(b->size(), size_t(shape.L));
      for (const auto& row : *b) {
        ASSERT_EQ(row.size(), size_t(shape.H));
        for (int64_t x : row) {
          EXPECT_GE(x, 0);
          EXPECT_LE(x, shape.T);
        }
      }
    }
  }
}

TEST(AllocateBudgetsTest, DefaultPicksTheMethodsOwn) {
  CacheShape shape;
  shape.L = 4;
  shape.T = 100;
  shape.W = 8;
  const PreparedCache c = RandomCache(shape, 3);
  CompactionSpec spec;
  spec.method = Method::kPyramidKv;
  const ScoreSet s = *ComputeScores(c, spec, 20);
  const Budgets def = *AllocateBudgets(c, s, spec, 20);
  spec.allocator = Allocator::kPyramid;
  EXPECT_EQ(def, *AllocateBudgets(c, s, spec, 20));
  spec.allocator = Allocator::kUniform;
  EXPECT_NE(def, *AllocateBudgets(c, s, spec, 20));
  // SnapKV's own allocator is uniform.
  spec.method = Method::kSnapKv;
  spec.allocator = Allocator::kDefault;
  EXPECT_EQ(*AllocateBudgets(c, s, spec, 20), Budgets(4, std::vector<int64_t>(2, 20)));
}

TEST(AllocateBudgetsTest, DynamicKvRejectsMismatchedScores) {
  CacheShape shape;
  const PreparedCache c = RandomCache(shape, 4);
  CompactionSpec spec;
  spec.allocator = Allocator::kDynamicKv;
  const ScoreSet wrong = ScoreSet::Zeros(shape.L + 1, shape.H, shape.T);
  EXPECT_TRUE(AllocateBudgets(c, wrong, spec, 5).status().IsInvalidArgument());
}

}  // namespace
}  // namespace kvc::cpu
