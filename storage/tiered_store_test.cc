#include "storage/tiered_store.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <thread>

#include "storage/rocks_tier.h"
#include "storage/rocks_util.h"
#include "storage/testing.h"

namespace kvc::storage {
namespace {

using std::chrono::minutes;
using testing::CacheShape;
using testing::KeyFor;
using testing::MakeCache;
using testing::SameCache;
using testing::TempDir;

// Every entry of these tests has the same tensor payload, so capacities can count entries.
CompactedCache Cache(uint64_t seed) {
  CacheShape shape;
  shape.fixed_budget = 8;
  return MakeCache(seed, shape);
}

class TieredStoreTest : public ::testing::Test {
 protected:
  TieredStoreOptions Options(bool with_cold = true) {
    TieredStoreOptions o;
    o.warm.path = dir_.Sub("warm");
    if (with_cold) o.cold.path = dir_.Sub("cold");
    o.sync = false;
    o.maintenance_interval = std::chrono::milliseconds(0);
    o.clock = clock_;
    return o;
  }
  std::unique_ptr<TieredStore> Open(const TieredStoreOptions& o) {
    Result<std::unique_ptr<TieredStore>> s = TieredStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }
  // Size in the warm/cold byte accounting of the entry Put(seed) writes.
  uint64_t EntryBytes(uint64_t seed) {
    const EncodedEntry e = EncodeEntry(Cache(seed), {}, clock_->NowMicros()).value();
    return kTierHeaderBytes + e.manifest.size() + e.payload_bytes;
  }
  void ExpectStored(TieredStore& store, uint64_t seed) {
    Result<CompactedCache> got = store.Get(KeyFor(seed));
    ASSERT_TRUE(got.ok()) << seed << ": " << got.status().ToString();
    std::string why;
    EXPECT_TRUE(SameCache(Cache(seed), *got, &why)) << seed << ": " << why;
  }

  TempDir dir_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
};

TEST_F(TieredStoreTest, PutGetServesWarmThenHot) {
  auto store = Open(Options());
  const CompactedCache cache = Cache(1);
  ASSERT_TRUE(store->Put(KeyFor(1), cache).ok());
  ExpectStored(*store, 1);
  ExpectStored(*store, 1);
  const StoreStats s = store->Stats();
  EXPECT_EQ(s.puts, 1u);
  EXPECT_EQ(s.warm.entries, 1u);
  EXPECT_EQ(s.warm.hits, 1u);
  EXPECT_EQ(s.hot.misses, 1u);
  EXPECT_EQ(s.hot.hits, 1u);
  EXPECT_EQ(s.hot.promotions, 1u);
  EXPECT_EQ(s.hot.entries, 1u);
  EXPECT_EQ(s.hot.bytes, testing::PayloadBytes(cache));
  EXPECT_EQ(s.cold.entries, 0u);
}

TEST_F(TieredStoreTest, MissIsNotFoundAndChangesNothing) {
  auto store = Open(Options());
  ASSERT_TRUE(store->Put(KeyFor(1), Cache(1)).ok());
  const StoreStats before = store->Stats();
  EXPECT_TRUE(store->Get(KeyFor(2)).status().IsNotFound());
  EXPECT_TRUE(store->Get(KeyFor(1, "other-spec")).status().IsNotFound());
  EXPECT_TRUE(store->GetManifest(KeyFor(2)).status().IsNotFound());
  const StoreStats after = store->Stats();
  EXPECT_EQ(after.warm.entries, before.warm.entries);
  EXPECT_EQ(after.warm.bytes, before.warm.bytes);
  EXPECT_EQ(after.warm.misses, 2u);
  EXPECT_EQ(after.cold.misses, 2u);
  ExpectStored(*store, 1);
}

TEST_F(TieredStoreTest, PutReplacesAndInvalidatesHot) {
  auto store = Open(Options());
  ASSERT_TRUE(store->Put(KeyFor(1), Cache(10)).ok());
  ASSERT_TRUE(store->Get(KeyFor(1)).ok());  // now cached in hot
  const CompactedCache replacement = Cache(11);
  ASSERT_TRUE(store->Put(KeyFor(1), replacement).ok());
  Result<CompactedCache> got = store->Get(KeyFor(1));
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(SameCache(replacement, *got));
  EXPECT_EQ(store->Stats().warm.entries, 1u);
}

TEST_F(TieredStoreTest, DeleteRemovesFromEveryTier) {
  TieredStoreOptions o = Options();
  o.warm.capacity_bytes = EntryBytes(1) + EntryBytes(2) / 2;  // one entry fits in warm
  auto store = Open(o);
  ASSERT_TRUE(store->Put(KeyFor(1), Cache(1)).ok());
  ASSERT_TRUE(store->Put(KeyFor(2), Cache(2)).ok());  // demotes 1 to cold
  ASSERT_EQ(store->Stats().cold.entries, 1u);
  ASSERT_TRUE(store->Get(KeyFor(2)).ok());  // cached in hot
  EXPECT_TRUE(store->Delete(KeyFor(1)).ok());
  EXPECT_TRUE(store->Delete(KeyFor(2)).ok());
  EXPECT_TRUE(store->Delete(KeyFor(2)).IsNotFound());
  EXPECT_TRUE(store->Get(KeyFor(1)).status().IsNotFound());
  EXPECT_TRUE(store->Get(KeyFor(2)).status().IsNotFound());
  const StoreStats s = store->Stats();
  EXPECT_EQ(s.deletes, 2u);
  EXPECT_EQ(s.warm.entries + s.cold.entries + s.hot.entries, 0u);
}

TEST_F(TieredStoreTest, BadInputChangesNothing) {
  auto store = Open(Options());
  CompactedCache bad = Cache(1);
  bad.layers[0].offsets.back() += 1;
  EXPECT_TRUE(store->Put(KeyFor(1), bad).IsInvalidArgument());
  EXPECT_TRUE(store->Put(StoreKey{"", "spec"}, Cache(1)).IsInvalidArgument());
  EXPECT_TRUE(store->Put(StoreKey{"b", std::string(200, 's')}, Cache(1)).IsInvalidArgument());
  EXPECT_TRUE(store->Get(StoreKey{"b", ""}).status().IsInvalidArgument());
  EXPECT_TRUE(store->Delete(StoreKey{"", "s"}).IsInvalidArgument());
  EXPECT_EQ(store->Stats().warm.entries, 0u);
  EXPECT_EQ(store->Stats().puts, 0u);
}

TEST_F(TieredStoreTest, CheckValuesOnPutRejectsNonFinite) {
  TieredStoreOptions o = Options();
  o.check_values_on_put = true;
  auto store = Open(o);
  CompactedCache cache = Cache(3);
  cache.layers[1].beta = cache.layers[1].beta.Clone();
  ASSERT_GT(cache.layers[1].beta.numel(), 0);
  cache.layers[1].beta.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(store->Put(KeyFor(3), cache).IsInvalidArgument());
  EXPECT_TRUE(store->Get(KeyFor(3)).status().IsNotFound());
}

TEST_F(TieredStoreTest, ReopenFindsEveryEntryAndTheirManifests) {
  TieredStoreOptions o = Options();
  o.sync = true;
  EntryExtras extras;
  extras.source_tokens = {5, 6, 7};
  extras.attributes = {{"tenant", "acme"}};
  const int64_t put_time = clock_->NowMicros();
  {
    auto store = Open(o);
    for (uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(store->Put(KeyFor(i), Cache(i), extras).ok());
  }
  auto store = Open(o);
  EXPECT_EQ(store->Stats().warm.entries, 20u);
  for (uint64_t i = 0; i < 20; ++i) ExpectStored(*store, i);
  Result<Manifest> m = store->GetManifest(KeyFor(4));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->extras, extras);
  EXPECT_EQ(m->created_at_micros, put_time);
  EXPECT_EQ(m->metadata.at("seed"), "4");
}

TEST_F(TieredStoreTest, CapacityDemotesOldestAndColdHitPromotes) {
  TieredStoreOptions o = Options();
  o.warm.capacity_bytes = 2 * EntryBytes(0) + EntryBytes(0) / 2;
  auto store = Open(o);
  for (uint64_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(store->Put(KeyFor(i), Cache(i)).ok());
    clock_->Advance(minutes(1));
  }
  StoreStats s = store->Stats();
  EXPECT_LE(s.warm.bytes, o.warm.capacity_bytes);
  EXPECT_EQ(s.warm.entries, 2u);
  EXPECT_EQ(s.cold.entries, 3u);
  EXPECT_EQ(s.warm.demotions, 3u);
  // The oldest went first: 0, 1, 2 are cold. Reading 0 brings it back to warm (and hot),
  // which pushes the now-oldest warm entry (3) down.
  ExpectStored(*store, 0);
  s = store->Stats();
  EXPECT_EQ(s.cold.hits, 1u);
  EXPECT_EQ(s.warm.promotions, 1u);
  EXPECT_EQ(s.warm.entries, 2u);
  EXPECT_EQ(s.cold.entries, 3u);
  EXPECT_EQ(s.warm.demotions, 4u);
  // 0 is served from hot now; 3 from cold.
  ExpectStored(*store, 0);
  EXPECT_EQ(store->Stats().hot.hits, 1u);
  ExpectStored(*store, 3);
  for (uint64_t i = 0; i < 5; ++i) ExpectStored(*store, i);
}

TEST_F(TieredStoreTest, PromotionCanBeTurnedOff) {
  TieredStoreOptions o = Options();
  o.warm.capacity_bytes = EntryBytes(0) + EntryBytes(0) / 2;
  o.promote_on_cold_hit = false;
  o.hot.capacity_bytes = 0;
  auto store = Open(o);
  ASSERT_TRUE(store->Put(KeyFor(0), Cache(0)).ok());
  ASSERT_TRUE(store->Put(KeyFor(1), Cache(1)).ok());
  ExpectStored(*store, 0);
  ExpectStored(*store, 0);
  const StoreStats s = store->Stats();
  EXPECT_EQ(s.cold.hits, 2u);
  EXPECT_EQ(s.cold.entries, 1u);
  EXPECT_EQ(s.warm.promotions, 0u);
  EXPECT_EQ(s.hot.entries, 0u);
}

TEST_F(TieredStoreTest, AgeDemotesWarmEntries) {
  TieredStoreOptions o = Options();
  o.warm_demote_after = minutes(60);
  auto store = Open(o);
  for (uint64_t i = 0; i < 3; ++i) ASSERT_TRUE(store->Put(KeyFor(i), Cache(i)).ok());
  clock_->Advance(minutes(30));
  for (uint64_t i = 3; i < 5; ++i) ASSERT_TRUE(store->Put(KeyFor(i), Cache(i)).ok());
  ASSERT_TRUE(store->RunMaintenance().ok());
  EXPECT_EQ(store->Stats().cold.entries, 0u);
  clock_->Advance(minutes(31));
  ASSERT_TRUE(store->RunMaintenance().ok());
  StoreStats s = store->Stats();
  EXPECT_EQ(s.warm.entries, 2u);
  EXPECT_EQ(s.cold.entries, 3u);
  EXPECT_EQ(s.warm.demotions, 3u);
  for (uint64_t i = 0; i < 5; ++i) ExpectStored(*store, i);
}

TEST_F(TieredStoreTest, WarmTtlHidesThenSweeps) {
  TieredStoreOptions o = Options();
  o.warm.ttl = minutes(60);
  o.hot.capacity_bytes = 0;
  auto store = Open(o);
  ASSERT_TRUE(store->Put(KeyFor(1), Cache(1)).ok());
  clock_->Advance(minutes(59));
  ExpectStored(*store, 1);
  const std::vector<std::string> chain = {KeyFor(1).block_hash};
  EXPECT_TRUE(store->LookupLongestPrefix(chain, "spec-v1").ok());
  clock_->Advance(minutes(2));
  EXPECT_TRUE(store->Get(KeyFor(1)).status().IsNotFound());
  EXPECT_TRUE(store->GetManifest(KeyFor(1)).status().IsNotFound());
  EXPECT_TRUE(store->LookupLongestPrefix(chain, "spec-v1").status().IsNotFound());
  EXPECT_EQ(store->Stats().warm.entries, 1u);  // invisible, not yet swept
  ASSERT_TRUE(store->RunMaintenance().ok());
  const StoreStats s = store->Stats();
  EXPECT_EQ(s.warm.entries, 0u);
  EXPECT_EQ(s.warm.expirations, 1u);
  EXPECT_EQ(s.cold.entries, 0u);
  // A new Put of the key starts a new life.
  ASSERT_TRUE(store->Put(KeyFor(1), Cache(1)).ok());
  ExpectStored(*store, 1);
}

TEST_F(TieredStoreTest, HotCopyNeverOutlivesTheWarmTtl) {
  TieredStoreOptions o = Options();
  o.warm.ttl = minutes(60);
  auto store = Open(o);
  ASSERT_TRUE(store->Put(KeyFor(1), Cache(1)).ok());
  clock_->Advance(minutes(50));
  ExpectStored(*store, 1);  // warm hit, cached in hot
  ExpectStored(*store, 1);  // hot hit
  EXPECT_EQ(store->Stats().hot.hits, 1u);
  clock_->Advance(minutes(11));
  EXPECT_TRUE(store->Get(KeyFor(1)).status().IsNotFound());
  const std::vector<std::string> chain = {KeyFor(1).block_hash};
  EXPECT_TRUE(store->LookupLongestPrefix(chain, "spec-v1").status().IsNotFound());
}

TEST_F(TieredStoreTest, ColdTtlAndCapacityEvict) {
  TieredStoreOptions o = Options();
  o.warm.capacity_bytes = 1;  // everything goes straight to cold
  o.cold.ttl = minutes(10);
  o.cold.capacity_bytes = 3 * EntryBytes(0) + EntryBytes(0) / 2;
  o.promote_on_cold_hit = false;
  auto store = Open(o);
  for (uint64_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(store->Put(KeyFor(i), Cache(i)).ok());
    clock_->Advance(minutes(1));
  }
  StoreStats s = store->Stats();
  EXPECT_EQ(s.warm.entries, 0u);
  EXPECT_EQ(s.cold.entries, 3u);
  EXPECT_EQ(s.cold.evictions, 2u);
  EXPECT_TRUE(store->Get(KeyFor(0)).status().IsNotFound());
  EXPECT_TRUE(store->Get(KeyFor(1)).status().IsNotFound());
  ExpectStored(*store, 4);
  clock_->Advance(minutes(8));  // entries 2 and 3 are now older than 10 minutes in cold
  ASSERT_TRUE(store->RunMaintenance().ok());
  s = store->Stats();
  EXPECT_EQ(s.cold.entries, 1u);
  EXPECT_EQ(s.cold.expirations, 2u);
  ExpectStored(*store, 4);
}

TEST_F(TieredStoreTest, WithoutColdTierCapacityEvicts) {
  TieredStoreOptions o = Options(/*with_cold=*/false);
  o.warm.capacity_bytes = 2 * EntryBytes(0) + EntryBytes(0) / 2;
  auto store = Open(o);
  for (uint64_t i = 0; i < 4; ++i) {
    ASSERT_TRUE(store->Put(KeyFor(i), Cache(i)).ok());
    clock_->Advance(minutes(1));
  }
  const StoreStats s = store->Stats();
  EXPECT_EQ(s.warm.entries, 2u);
  EXPECT_EQ(s.warm.evictions, 2u);
  EXPECT_TRUE(store->Get(KeyFor(0)).status().IsNotFound());
  ExpectStored(*store, 3);
}

TEST_F(TieredStoreTest, HotTtlFallsBackToWarm) {
  TieredStoreOptions o = Options();
  o.hot.ttl = minutes(5);
  auto store = Open(o);
  ASSERT_TRUE(store->Put(KeyFor(1), Cache(1)).ok());
  ExpectStored(*store, 1);  // warm hit, cached
  ExpectStored(*store, 1);  // hot hit
  clock_->Advance(minutes(6));
  ExpectStored(*store, 1);  // hot expired: warm again
  const StoreStats s = store->Stats();
  EXPECT_EQ(s.hot.hits, 1u);
  EXPECT_EQ(s.warm.hits, 2u);
  EXPECT_EQ(s.hot.expirations, 1u);
}

TEST_F(TieredStoreTest, TamperedTensorIsCorruptionRemovedAndCounted) {
  TieredStoreOptions o = Options();
  {
    auto store = Open(o);
    ASSERT_TRUE(store->Put(KeyFor(1), Cache(1)).ok());
    ASSERT_TRUE(store->Put(KeyFor(2), Cache(2)).ok());
  }
  {
    // Rewrite one tensor with same-size different bytes: RocksDB's own checks pass, ours must not.
    rocksdb::DB* db = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    ASSERT_TRUE(rocksdb::DB::Open(MakeDbOptions(o.warm, false), o.warm.path,
                                  MakeColumnFamilies(o.warm), &handles, &db)
                    .ok());
    const std::string key = BlobKey(EncodeStoreKey(KeyFor(1)), 0);
    std::string value;
    ASSERT_TRUE(db->Get({}, handles[2], key, &value).ok());
    value[value.size() / 2] ^= 0x01;
    ASSERT_TRUE(db->Put({}, handles[2], key, value).ok());
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    delete db;
  }
  auto store = Open(o);
  Result<CompactedCache> got = store->Get(KeyFor(1));
  EXPECT_TRUE(got.status().IsCorruption()) << got.status().ToString();
  EXPECT_EQ(store->Stats().warm.corruptions, 1u);
  EXPECT_EQ(store->Stats().warm.entries, 1u);
  EXPECT_TRUE(store->Get(KeyFor(1)).status().IsNotFound());
  ExpectStored(*store, 2);
}

TEST_F(TieredStoreTest, OpenRemovesDuplicatesLeftByAnInterruptedMove) {
  TieredStoreOptions o = Options();
  {
    auto store = Open(o);
    ASSERT_TRUE(store->Put(KeyFor(1), Cache(1)).ok());
  }
  {
    // What a crash between "write cold" and "remove from warm" leaves behind.
    auto cold = RocksTier::Open("cold", o.cold, false, true).value();
    const CompactedCache cache = Cache(1);  // the encoded blobs view its tensors
    const EncodedEntry e = EncodeEntry(cache, {}, 0).value();
    ASSERT_TRUE(
        cold->Write(EncodeStoreKey(KeyFor(1)), e.manifest, e.blobs, e.payload_bytes, 0).ok());
  }
  auto store = Open(o);
  const StoreStats s = store->Stats();
  EXPECT_EQ(s.warm.entries, 1u);
  EXPECT_EQ(s.cold.entries, 0u);
  ExpectStored(*store, 1);
}

TEST_F(TieredStoreTest, BackgroundMaintenanceSweeps) {
  TieredStoreOptions o = Options();
  o.warm.ttl = minutes(1);
  o.maintenance_interval = std::chrono::milliseconds(5);
  auto store = Open(o);
  ASSERT_TRUE(store->Put(KeyFor(1), Cache(1)).ok());
  clock_->Advance(minutes(2));
  for (int i = 0; i < 400 && store->Stats().warm.entries != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(store->Stats().warm.entries, 0u);
  EXPECT_EQ(store->Stats().warm.expirations, 1u);
}

TEST_F(TieredStoreTest, ResultsOutliveTheStore) {
  CompactedCache got, big;
  CacheShape large;
  large.head_dim = 128;
  large.fixed_budget = 40;  // tensors of 10 KB: blob files, not SST blocks
  {
    auto store = Open(Options());
    ASSERT_TRUE(store->Put(KeyFor(1), Cache(1)).ok());
    ASSERT_TRUE(store->Put(KeyFor(2), MakeCache(2, large)).ok());
    // Values now come from SST blocks pinned in the block cache, and from blob files.
    ASSERT_TRUE(store->Flush().ok());
    got = store->Get(KeyFor(1)).value();
    big = store->Get(KeyFor(2)).value();
  }
  EXPECT_TRUE(SameCache(Cache(1), got));
  EXPECT_TRUE(SameCache(MakeCache(2, large), big));
}

TEST_F(TieredStoreTest, OpenValidatesOptions) {
  TieredStoreOptions o = Options();
  o.warm.path.clear();
  EXPECT_TRUE(TieredStore::Open(o).status().IsInvalidArgument());
  o = Options();
  o.cold.path = o.warm.path;
  EXPECT_TRUE(TieredStore::Open(o).status().IsInvalidArgument());
  o = Options();
  o.create_if_missing = false;
  EXPECT_TRUE(TieredStore::Open(o).status().IsNotFound());
}

}  // namespace
}  // namespace kvc::storage
