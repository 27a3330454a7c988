#include "storage/hot_tier.h"

#include <gtest/gtest.h>

#include "storage/testing.h"

namespace kvc::storage {
namespace {

using testing::CacheShape;
using testing::MakeCache;

TEST(HotTierTest, HitMissAndSharing) {
  HotTier hot(1 << 20, 0);
  const CompactedCache cache = MakeCache(1, CacheShape{});
  EXPECT_FALSE(hot.Get("a", 0).has_value());
  ASSERT_TRUE(hot.Insert("a", cache, 100, 0));
  std::optional<CompactedCache> hit = hot.Get("a", 0);
  ASSERT_TRUE(hit.has_value());
  EXPECT_TRUE(testing::SameCache(cache, *hit));
  // The hit shares the cached bytes: no copy on the hit path.
  EXPECT_EQ(hit->layers[0].k.raw(), cache.layers[0].k.raw());
  EXPECT_EQ(hot.entries(), 1u);
  EXPECT_EQ(hot.bytes(), 100u);
  hot.Erase("a");
  EXPECT_FALSE(hot.Get("a", 0).has_value());
  EXPECT_EQ(hot.bytes(), 0u);
}

TEST(HotTierTest, EvictsLeastRecentlyUsedByBytes) {
  HotTier hot(300, 0);
  const CompactedCache cache = MakeCache(2, CacheShape{});
  ASSERT_TRUE(hot.Insert("a", cache, 100, 0));
  ASSERT_TRUE(hot.Insert("b", cache, 100, 0));
  ASSERT_TRUE(hot.Insert("c", cache, 100, 0));
  ASSERT_TRUE(hot.Get("a", 0).has_value());     // a is now the most recent
  ASSERT_TRUE(hot.Insert("d", cache, 150, 0));  // needs 150: evicts b then c
  EXPECT_TRUE(hot.Contains("a", 0));
  EXPECT_FALSE(hot.Contains("b", 0));
  EXPECT_FALSE(hot.Contains("c", 0));
  EXPECT_TRUE(hot.Contains("d", 0));
  EXPECT_EQ(hot.bytes(), 250u);
  EXPECT_EQ(hot.evictions(), 2u);
  // Too large to cache at all, and nothing else is disturbed.
  EXPECT_FALSE(hot.Insert("huge", cache, 301, 0));
  EXPECT_EQ(hot.entries(), 2u);
  // Replacing a key re-accounts its bytes.
  ASSERT_TRUE(hot.Insert("a", cache, 10, 0));
  EXPECT_EQ(hot.bytes(), 160u);
}

TEST(HotTierTest, TtlExpiresOnReadAndSweep) {
  HotTier hot(1 << 20, /*ttl_micros=*/1000);
  const CompactedCache cache = MakeCache(3, CacheShape{});
  ASSERT_TRUE(hot.Insert("a", cache, 10, 0));
  ASSERT_TRUE(hot.Insert("b", cache, 10, 500));
  EXPECT_TRUE(hot.Get("a", 999).has_value());
  EXPECT_FALSE(hot.Get("a", 1000).has_value());
  EXPECT_EQ(hot.expirations(), 1u);
  EXPECT_TRUE(hot.Contains("b", 1499));
  EXPECT_FALSE(hot.Contains("b", 1500));
  hot.SweepExpired(1500);
  EXPECT_EQ(hot.entries(), 0u);
  EXPECT_EQ(hot.expirations(), 2u);
}

TEST(HotTierTest, DeadlineOfTheDurableCopyCapsTheTtl) {
  HotTier hot(1 << 20, /*ttl_micros=*/1000);
  const CompactedCache cache = MakeCache(5, CacheShape{});
  ASSERT_TRUE(hot.Insert("early", cache, 10, 0, /*deadline_micros=*/300));
  ASSERT_TRUE(hot.Insert("late", cache, 10, 0, /*deadline_micros=*/5000));
  EXPECT_FALSE(hot.Contains("early", 300));
  EXPECT_TRUE(hot.Contains("late", 999));
  EXPECT_FALSE(hot.Contains("late", 1000));
  HotTier no_ttl(1 << 20, 0);
  ASSERT_TRUE(no_ttl.Insert("a", cache, 10, 0, 300));
  ASSERT_TRUE(no_ttl.Insert("b", cache, 10, 0, 0));
  EXPECT_FALSE(no_ttl.Get("a", 300).has_value());
  EXPECT_TRUE(no_ttl.Get("b", 1'000'000'000).has_value());
}

TEST(HotTierTest, ZeroCapacityDisables) {
  HotTier hot(0, 0);
  EXPECT_FALSE(hot.enabled());
  EXPECT_FALSE(hot.Insert("a", MakeCache(4, CacheShape{}), 1, 0));
  EXPECT_EQ(hot.entries(), 0u);
}

}  // namespace
}  // namespace kvc::storage
