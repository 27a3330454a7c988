// LookupLongestPrefix over prefix-hash chains.
#include <gtest/gtest.h>

#include "storage/testing.h"
#include "storage/tiered_store.h"

namespace kvc::storage {
namespace {

using std::chrono::minutes;
using testing::ChainFor;
using testing::TempDir;

class LookupTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen(std::chrono::microseconds warm_ttl = {}, uint64_t warm_capacity = 0) {
    store_.reset();
    TieredStoreOptions o;
    o.warm.path = dir_.Sub("warm");
    o.cold.path = dir_.Sub("cold");
    o.warm.ttl = warm_ttl;
    o.warm.capacity_bytes = warm_capacity;
    o.sync = false;
    o.maintenance_interval = std::chrono::milliseconds(0);
    o.clock = clock_;
    store_ = TieredStore::Open(o).value();
  }
  void Store(const std::vector<std::string>& chain, size_t i, const std::string& spec = "spec") {
    testing::CacheShape shape;
    shape.max_budget = 2;  // lookups only need the entries to exist
    ASSERT_TRUE(store_->Put({chain[i], spec}, testing::MakeCache(i, shape)).ok());
  }
  size_t Longest(const std::vector<std::string>& chain, const std::string& spec = "spec") {
    Result<PrefixMatch> m = store_->LookupLongestPrefix(chain, spec);
    if (m.status().IsNotFound()) return 0;
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    if (!m.ok()) return 0;
    EXPECT_EQ(m->last_index(), m->length - 1);
    return m->length;
  }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::unique_ptr<TieredStore> store_;
};

TEST_F(LookupTest, LongestPrefixStopsAtTheFirstGap) {
  const std::vector<std::string> chain = ChainFor(1, 10);
  EXPECT_EQ(Longest(chain), 0u);
  for (size_t i = 0; i < 6; ++i) Store(chain, i);
  Store(chain, 8);  // stored, but behind a gap
  EXPECT_EQ(Longest(chain), 6u);
  Store(chain, 6);
  EXPECT_EQ(Longest(chain), 7u);
  Store(chain, 7);
  EXPECT_EQ(Longest(chain), 9u);
  // A shorter query chain is answered within itself.
  EXPECT_EQ(Longest(std::vector<std::string>(chain.begin(), chain.begin() + 3)), 3u);
  ASSERT_TRUE(store_->Delete({chain[3], "spec"}).ok());
  EXPECT_EQ(Longest(chain), 3u);
  EXPECT_EQ(store_->Stats().lookups, 6u);
}

TEST_F(LookupTest, NotFoundCases) {
  const std::vector<std::string> chain = ChainFor(2, 4);
  Store(chain, 1);
  EXPECT_TRUE(store_->LookupLongestPrefix(chain, "spec").status().IsNotFound());  // first missing
  EXPECT_TRUE(store_->LookupLongestPrefix({}, "spec").status().IsNotFound());
  Store(chain, 0);
  EXPECT_EQ(Longest(chain), 2u);
  EXPECT_EQ(Longest(chain, "other-spec"), 0u);  // the spec hash is part of the key
  EXPECT_TRUE(store_->LookupLongestPrefix(chain, "").status().IsInvalidArgument());
  std::vector<std::string> bad = chain;
  bad[3].clear();
  EXPECT_TRUE(store_->LookupLongestPrefix(bad, "spec").status().IsInvalidArgument());
}

TEST_F(LookupTest, CountsEveryTierAndIgnoresExpired) {
  const std::vector<std::string> chain = ChainFor(3, 5);
  for (size_t i = 0; i < 5; ++i) Store(chain, i);
  // Survives a restart (hot is empty afterwards) and expiry of part of the chain.
  clock_->Advance(minutes(30));
  Reopen(/*warm_ttl=*/minutes(60));
  Store(chain, 2);  // re-put: a fresh arrival time
  EXPECT_EQ(Longest(chain), 5u);
  clock_->Advance(minutes(31));  // blocks 0,1,3,4 are now 61 minutes old in warm
  EXPECT_EQ(Longest(chain), 0u);
  Store(chain, 0);
  Store(chain, 1);
  EXPECT_EQ(Longest(chain), 3u);
}

TEST_F(LookupTest, BlocksInColdCount) {
  Reopen({}, /*warm_capacity=*/1);  // every entry is demoted right after its Put
  const std::vector<std::string> chain = ChainFor(5, 6);
  for (size_t i = 0; i < 4; ++i) Store(chain, i);
  const StoreStats s = store_->Stats();
  EXPECT_EQ(s.warm.entries, 0u);
  EXPECT_EQ(s.cold.entries, 4u);
  EXPECT_EQ(Longest(chain), 4u);
  EXPECT_EQ(store_->Stats().cold.entries, 4u);  // lookups promote nothing
}

TEST_F(LookupTest, LongChain) {
  const std::vector<std::string> chain = ChainFor(4, 1000);
  for (size_t i = 0; i < 1000; ++i) Store(chain, i);
  EXPECT_EQ(Longest(chain), 1000u);
  ASSERT_TRUE(store_->Delete({chain[999], "spec"}).ok());
  EXPECT_EQ(Longest(chain), 999u);
}

}  // namespace
}  // namespace kvc::storage
