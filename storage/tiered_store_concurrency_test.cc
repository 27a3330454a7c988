// Many threads put, get, delete and look up at once while maintenance demotes, promotes and
// evicts. Labelled "concurrency" so CI also runs it under TSan.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>
#include <thread>

#include "storage/testing.h"
#include "storage/tiered_store.h"

namespace kvc::storage {
namespace {

using testing::CacheShape;
using testing::KeyFor;
using testing::MakeCache;

constexpr int kThreads = 8;
constexpr int kOwnedPerThread = 6;
constexpr int kShared = 8;
constexpr int kOpsPerThread = 250;
constexpr uint64_t kVersions = 1000;  // seed = key * kVersions + version

CacheShape Shape() {
  CacheShape s;
  s.max_budget = 12;
  return s;
}

// A Get result must be exactly some version written for that key.
::testing::AssertionResult IsVersionOf(uint64_t key, const CompactedCache& got) {
  auto it = got.metadata.find("seed");
  if (it == got.metadata.end()) return ::testing::AssertionFailure() << "no seed metadata";
  const uint64_t seed = std::stoull(it->second);
  if (seed / kVersions != key) {
    return ::testing::AssertionFailure() << "key " << key << " returned seed " << seed;
  }
  std::string why;
  if (!testing::SameCache(MakeCache(seed, Shape()), got, &why)) {
    return ::testing::AssertionFailure() << "key " << key << " seed " << seed << ": " << why;
  }
  return ::testing::AssertionSuccess();
}

// One thread's share of the workload. Owned keys are written only by their owner thread, so
// their final state is known; shared keys are contended by every thread.
struct Workload {
  TieredStore* store;
  // final_version[k]: the version the owner wrote last for owned key k (-1 = deleted).
  std::vector<int64_t> final_version = std::vector<int64_t>(kThreads * kOwnedPerThread, -1);
  std::atomic<int> failures{0};
  std::atomic<uint64_t> hits{0};

  void Run(int t) {
    std::mt19937_64 rng(1000 + t);
    const uint64_t shared_base = kThreads * kOwnedPerThread;
    for (int op = 0; op < kOpsPerThread; ++op) {
      const bool owned = rng() % 2 == 0;
      const uint64_t key =
          owned ? t * kOwnedPerThread + rng() % kOwnedPerThread : shared_base + rng() % kShared;
      const uint64_t any_key = rng() % (shared_base + kShared);
      const uint64_t version = rng() % kVersions;
      switch (rng() % 4) {
        case 0:
          Put(key, version, owned);
          break;
        case 1:
          Delete(key, owned);
          break;
        case 2:
          Get(any_key);
          break;
        default:
          Lookup(any_key);
      }
    }
  }
  void Put(uint64_t key, uint64_t version, bool owned) {
    const Status s = store->Put(KeyFor(key), MakeCache(key * kVersions + version, Shape()));
    if (!s.ok()) ++failures;
    if (s.ok() && owned) final_version[key] = static_cast<int64_t>(version);
  }
  void Delete(uint64_t key, bool owned) {
    const Status s = store->Delete(KeyFor(key));
    if (!s.ok() && !s.IsNotFound()) ++failures;
    if (owned) final_version[key] = -1;
  }
  void Get(uint64_t key) {
    Result<CompactedCache> got = store->Get(KeyFor(key));
    if (got.ok()) {
      ++hits;
      if (!IsVersionOf(key, *got)) ++failures;
    } else if (!got.status().IsNotFound()) {
      ++failures;
    }
  }
  void Lookup(uint64_t first) {
    std::vector<std::string> chain;
    for (uint64_t k = first; k < first + 4; ++k) chain.push_back(KeyFor(k).block_hash);
    Result<PrefixMatch> m = store->LookupLongestPrefix(chain, "spec-v1");
    if (!m.ok() && !m.status().IsNotFound()) ++failures;
    if (m.ok() && (m->length == 0 || m->length > chain.size())) ++failures;
  }

  // Checks every owned key against its final state; returns how many are present.
  uint64_t CheckFinal(TieredStore& s) const {
    uint64_t present = 0;
    for (size_t k = 0; k < final_version.size(); ++k) {
      Result<CompactedCache> got = s.Get(KeyFor(k));
      if (final_version[k] < 0) {
        EXPECT_TRUE(got.status().IsNotFound()) << k << ": " << got.status().ToString();
        continue;
      }
      ++present;
      EXPECT_TRUE(got.ok()) << k << ": " << got.status().ToString();
      if (!got.ok()) continue;
      EXPECT_EQ(got->metadata.at("seed"), std::to_string(k * kVersions + final_version[k]));
      EXPECT_TRUE(IsVersionOf(k, *got));
    }
    return present;
  }
};

class ConcurrencyTest : public ::testing::Test {
 protected:
  TieredStoreOptions Options(bool background = true) {
    TieredStoreOptions o;
    o.warm.path = dir_.Sub("warm");
    o.cold.path = dir_.Sub("cold");
    o.warm.capacity_bytes = 24 << 10;  // a fraction of the working set: constant demotion
    o.cold.capacity_bytes = 256 << 10;
    o.hot.capacity_bytes = 16 << 10;
    o.sync = false;
    o.maintenance_interval = std::chrono::milliseconds(background ? 1 : 0);
    return o;
  }
  testing::TempDir dir_;
};

TEST_F(ConcurrencyTest, ManyThreadsPutGetDeleteLookup) {
  auto store = TieredStore::Open(Options()).value();
  Workload work{store.get()};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back([&work, t] { work.Run(t); });
  for (auto& th : threads) th.join();
  EXPECT_EQ(work.failures.load(), 0);
  EXPECT_GT(work.hits.load(), 0u);
  work.CheckFinal(*store);
  const StoreStats stats = store->Stats();
  EXPECT_GT(stats.warm.demotions, 0u);
  EXPECT_EQ(stats.warm.corruptions + stats.cold.corruptions, 0u);

  // Restart (no background moves, so counts are stable): the same final state, and the
  // counters agree with what is stored.
  store.reset();
  store = TieredStore::Open(Options(/*background=*/false)).value();
  const StoreStats reopened = store->Stats();
  uint64_t shared_present = 0;
  for (int k = 0; k < kShared; ++k) {
    if (store->GetManifest(KeyFor(kThreads * kOwnedPerThread + k)).ok()) ++shared_present;
  }
  const uint64_t owned_present = work.CheckFinal(*store);
  EXPECT_EQ(reopened.warm.entries + reopened.cold.entries, owned_present + shared_present);
}

}  // namespace
}  // namespace kvc::storage
