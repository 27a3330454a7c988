#include <gtest/gtest.h>

#include <numeric>

#include "kernels/cpu/methods_test_util.h"
#include "kernels/cpu/pipeline.h"

namespace kvc::cpu {
namespace {

TEST(StreamingLlmTest, KeepsSinksPlusMostRecent) {
  testing::CacheShape shape;
  shape.W = 0;  // needs no queries
  const PreparedCache c = testing::RandomCache(shape, 1);
  StreamingLlmOptions o;
  o.sinks = 4;
  Result<ScoreSet> s = ScoreStreamingLlm(c, o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->forced, (std::vector<int64_t>{0, 1, 2, 3}));
  for (int64_t b : {0, 2, 4, 5, 10, 40}) {
    const Selection sel = SelectTopK(*s, Budgets(shape.L, std::vector<int64_t>(shape.H, b)));
    std::vector<int64_t> want;
    for (int64_t j = 0; j < std::min<int64_t>(b, 4); ++j) want.push_back(j);
    for (int64_t j = std::max<int64_t>(4, shape.T - (b - 4)); j < shape.T && b > 4; ++j) {
      want.push_back(j);
    }
    for (int l = 0; l < shape.L; ++l) {
      for (int h = 0; h < shape.H; ++h) EXPECT_EQ(sel[l][h], want) << "b=" << b;
    }
  }
}

TEST(StreamingLlmTest, SinksLargerThanContextAndBadOptions) {
  testing::CacheShape shape;
  shape.T = 3;
  shape.W = 0;
  const PreparedCache c = testing::RandomCache(shape, 1);
  StreamingLlmOptions o;
  o.sinks = 10;
  Result<ScoreSet> s = ScoreStreamingLlm(c, o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->forced, (std::vector<int64_t>{0, 1, 2}));
  o.sinks = -1;
  EXPECT_TRUE(ScoreStreamingLlm(c, o).status().IsInvalidArgument());
}

}  // namespace
}  // namespace kvc::cpu
