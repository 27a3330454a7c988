#include "services/client/backoff.h"

#include <gtest/gtest.h>

#include <set>

namespace kvc::client {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, CeilingDoublesUpToTheCap) {
  const BackoffPolicy p{milliseconds(20), milliseconds(1000)};
  EXPECT_EQ(BackoffCeiling(p, 1), milliseconds(20));
  EXPECT_EQ(BackoffCeiling(p, 2), milliseconds(40));
  EXPECT_EQ(BackoffCeiling(p, 3), milliseconds(80));
  EXPECT_EQ(BackoffCeiling(p, 6), milliseconds(640));
  EXPECT_EQ(BackoffCeiling(p, 7), milliseconds(1000));
  EXPECT_EQ(BackoffCeiling(p, 1000), milliseconds(1000));  // no overflow for large retries
}

TEST(Backoff, DelayStaysWithinHalfAndFullCeiling) {
  const BackoffPolicy p{milliseconds(10), milliseconds(500)};
  for (int retry = 1; retry < 12; ++retry) {
    const milliseconds cap = BackoffCeiling(p, retry);
    for (double u : {0.0, 0.1, 0.5, 0.9, 0.999999, 1.0, -3.0, 7.0}) {
      const milliseconds d = BackoffDelay(p, retry, u);
      EXPECT_GE(d, cap / 2) << "retry " << retry << " u " << u;
      EXPECT_LE(d, cap) << "retry " << retry << " u " << u;
    }
    EXPECT_LE(BackoffDelay(p, retry, 0.2), BackoffDelay(p, retry, 0.8));
  }
}

TEST(Backoff, JitterSpreadsAndIsSeeded) {
  Jitter a(42), b(42), c(43);
  std::set<double> seen;
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const double x = a.Next();
    EXPECT_GE(x, 0.0);
    EXPECT_LT(x, 1.0);
    EXPECT_EQ(x, b.Next());
    if (x != c.Next()) differs = true;
    seen.insert(x);
  }
  EXPECT_GT(seen.size(), 90u);
  EXPECT_TRUE(differs);
  const BackoffPolicy p{milliseconds(100), milliseconds(100)};
  std::set<int64_t> delays;
  Jitter j(7);
  for (int i = 0; i < 50; ++i) delays.insert(BackoffDelay(p, 1, j.Next()).count());
  EXPECT_GT(delays.size(), 10u);  // clients retrying together spread out
}

}  // namespace
}  // namespace kvc::client
