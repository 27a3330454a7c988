#include "services/engine/staging.h"

#include <gtest/gtest.h>

#include "services/engine/engine_testing.h"

namespace kvc::engine {
namespace {

TEST(ByteBudgetTest, ReservesAndReleases) {
  ByteBudget budget(100);
  Result<Reservation> a = budget.Reserve(60, "a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(budget.used(), 60u);
  Result<Reservation> b = budget.Reserve(50, "b");
  EXPECT_EQ(b.status().code(), Code::kResourceExhausted);
  EXPECT_NE(b.status().message().find("b:"), std::string::npos);
  EXPECT_EQ(budget.used(), 60u);
  {
    Reservation moved = std::move(*a);
    EXPECT_EQ(moved.bytes(), 60u);
    EXPECT_EQ(budget.used(), 60u);
  }
  EXPECT_EQ(budget.used(), 0u);
  Result<Reservation> c = budget.Reserve(100, "c");
  ASSERT_TRUE(c.ok());
  c->Release();
  c->Release();
  EXPECT_EQ(budget.used(), 0u);
}

TEST(StagedUploadsTest, PutTakeSweep) {
  ByteBudget budget(1 << 30);
  StagedUploads staged;
  const KvCache cache = testing::TinyCache(1, 64);
  const auto t0 = StagedUploads::Clock::now();
  ASSERT_TRUE(staged.Put(7, cache, *budget.Reserve(100, "u"), t0).ok());
  EXPECT_TRUE(staged.Put(7, cache, *budget.Reserve(10, "u"), t0).IsInvalidArgument());
  EXPECT_EQ(budget.used(), 100u);  // the refused reservation went back
  ASSERT_TRUE(staged.Put(8, cache, *budget.Reserve(50, "u"), t0 + std::chrono::seconds(10)).ok());
  EXPECT_EQ(staged.size(), 2u);

  Result<StagedUploads::Taken> taken = staged.Take(7);
  ASSERT_TRUE(taken.ok());
  EXPECT_EQ(taken->cache.layout, cache.layout);
  EXPECT_EQ(taken->reservation.bytes(), 100u);
  EXPECT_TRUE(staged.Take(7).status().IsNotFound());
  taken->reservation.Release();
  EXPECT_EQ(budget.used(), 50u);

  EXPECT_EQ(staged.Sweep(t0 + std::chrono::seconds(11), std::chrono::seconds(5)), 0u);
  EXPECT_EQ(staged.Sweep(t0 + std::chrono::seconds(15), std::chrono::seconds(5)), 1u);
  EXPECT_EQ(staged.size(), 0u);
  EXPECT_EQ(budget.used(), 0u);
}

TEST(StagedUploadsTest, CacheBytesCountsEveryTensor) {
  const KvCache cache = testing::TinyCache(2, 64);
  // 2 layers x (k + v: 2 heads x 64 x 16, q_window: 4 x 32 x 16, q_ref: 4 x 64 x 16) x 4 bytes.
  EXPECT_EQ(CacheBytes(cache), 2u * (2 * 2 * 64 * 16 + 4 * 32 * 16 + 4 * 64 * 16) * 4);
}

}  // namespace
}  // namespace kvc::engine
