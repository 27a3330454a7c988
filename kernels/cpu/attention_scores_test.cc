#include "kernels/cpu/attention_scores.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "kernels/cpu/methods_test_util.h"

namespace kvc::cpu {
namespace {

using testing::CacheShape;
using testing::RandomCache;
using testing::RefAttention;

// Pooling written from its definition: window [i - k/2, i - k/2 + k - 1], zero padding counted
// by avg, ignored by max.
std::vector<float> RefPool(const std::vector<float>& in, int k, Pooling p) {
  const int64_t n = in.size();
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) {
    double sum = 0.0;
    float mx = -INFINITY;
    for (int64_t j = i - k / 2; j < i - k / 2 + k; ++j) {
      if (j < 0 || j >= n) continue;
      sum += in[j];
      mx = std::max(mx, in[j]);
    }
    out[i] = p == Pooling::kMax ? mx : static_cast<float>(sum / k);
  }
  return out;
}

TEST(Pool1dTest, MatchesDefinitionForOddAndEvenSizes) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 2.0f);
  for (int64_t n : {1, 2, 3, 5, 6, 7, 13, 31}) {
    for (int k : {1, 2, 3, 4, 5, 7, 9}) {
      std::vector<float> in(n);
      for (float& x : in) x = u(rng);
      for (Pooling p : {Pooling::kAvg, Pooling::kMax}) {
        std::vector<float> out(n);
        Pool1d(in.data(), n, k, p, out.data());
        const std::vector<float> want = RefPool(in, k, p);
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_NEAR(out[i], want[i], 1e-6) << "n=" << n << " k=" << k << " i=" << i;
        }
      }
    }
  }
}

TEST(Pool1dTest, AvgCountsPaddingAsZero) {
  const std::vector<float> in = {3, 3, 3};
  std::vector<float> out(3);
  Pool1d(in.data(), 3, 3, Pooling::kAvg, out.data());
  EXPECT_FLOAT_EQ(out[0], 2.0f);  // (0 + 3 + 3) / 3
  EXPECT_FLOAT_EQ(out[1], 3.0f);
  EXPECT_FLOAT_EQ(out[2], 2.0f);
}

TEST(AccumulateAttentionTest, CausalAndFullMatchReference) {
  std::mt19937_64 rng(3);
  const int d = 5;
  const int64_t T = 150, n = 70;  // more rows than one GEMM chunk
  Tensor q = testing::RandomTensor({n, d}, &rng, 2.0f);
  Tensor k = testing::RandomTensor({T, d}, &rng, 2.0f);
  for (bool causal : {true, false}) {
    std::vector<double> got(T, 0.0), want(T, 0.0);
    AccumulateAttention(q.data<float>(), n, T - n, causal, k.data<float>(), T, d, got.data());
    for (int64_t r = 0; r < n; ++r) {
      const int64_t visible = causal ? T - n + r + 1 : T;
      const auto a = RefAttention(q.data<float>() + r * d, k.data<float>(), T, d, visible);
      for (int64_t j = 0; j < T; ++j) want[j] += a[j];
    }
    double total = 0.0;
    for (int64_t j = 0; j < T; ++j) {
      EXPECT_NEAR(got[j], want[j], 1e-4) << "causal=" << causal << " j=" << j;
      total += got[j];
    }
    EXPECT_NEAR(total, static_cast<double>(n), 1e-3);  // every row sums to 1
    if (causal) {
      EXPECT_NEAR(got[T - 1], want[T - 1], 1e-6);
    }
  }
}

TEST(WindowRowsTest, ErrorsAndClamping) {
  CacheShape s;
  s.W = 0;
  PreparedCache none = RandomCache(s, 1);
  Result<int64_t> r = WindowRows(none, 0, "snapkv");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument());
  EXPECT_NE(r.status().message().find("snapkv needs q_window"), std::string::npos);

  s.W = 6;
  PreparedCache c = RandomCache(s, 1);
  EXPECT_EQ(*WindowRows(c, 0, "x"), 6);
  EXPECT_EQ(*WindowRows(c, 4, "x"), 4);
  EXPECT_EQ(*WindowRows(c, 100, "x"), 6);
}

TEST(SinksAndRecentTest, UnionClippedAndSorted) {
  EXPECT_EQ(SinksAndRecent(10, 2, 3), (std::vector<int64_t>{0, 1, 7, 8, 9}));
  EXPECT_EQ(SinksAndRecent(5, 4, 4), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(SinksAndRecent(3, 0, 0), (std::vector<int64_t>{}));
  EXPECT_EQ(SinksAndRecent(3, 9, 0), (std::vector<int64_t>{0, 1, 2}));
}

TEST(CheckPreparedTest, RejectsBadShapes) {
  CacheShape s;
  PreparedCache c = RandomCache(s, 2);
  EXPECT_TRUE(CheckPrepared(c).ok());
  c.layers[1].k = Tensor::Zeros(DType::kF32, {s.H, s.T + 1, s.d});
  EXPECT_TRUE(CheckPrepared(c).IsInvalidArgument());
  c.layers.pop_back();
  EXPECT_TRUE(CheckPrepared(c).IsInvalidArgument());
}

}  // namespace
}  // namespace kvc::cpu
