// TieredStore::Impl (internal to storage/). The locking protocol is described in tiered_store.h.
// Split by concern: tiered_store.cc (open, write, delete, stats), tiered_store_read.cc (get,
// lookup, promotion, removal of damaged entries), tiered_store_maintenance.cc (expiry, demotion,
// capacity).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/hot_tier.h"
#include "storage/rocks_tier.h"
#include "storage/tiered_store.h"

namespace kvc::storage {

struct TierCounters {
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};
  std::atomic<uint64_t> promotions{0};
  std::atomic<uint64_t> demotions{0};
  std::atomic<uint64_t> evictions{0};
  std::atomic<uint64_t> expirations{0};
  std::atomic<uint64_t> corruptions{0};

  void Add(std::atomic<uint64_t> TierCounters::*field) {
    (this->*field).fetch_add(1, std::memory_order_relaxed);
  }
};

// Where a read found the entry.
enum class TierId { kNone, kWarm, kCold };

// What reading one key found.
struct ReadOutcome {
  Status status = Status::NotFound("no entry");  // OK, NotFound, Corruption, NotSupported, ...
  TierId tier = TierId::kNone;  // tier that held the record (set for OK and for damage)
  TierRecord record;            // valid when the record header decoded
  bool have_record = false;
  Manifest manifest;     // valid when status is OK
  CompactedCache cache;  // valid when status is OK and tensors were requested
  std::vector<BlobRef> blobs;
};

class TieredStore::Impl {
 public:
  explicit Impl(const TieredStoreOptions& options);
  ~Impl();

  Status Open();
  Status Put(const StoreKey& key, const CompactedCache& cache, const EntryExtras& extras);
  Result<CompactedCache> Get(const StoreKey& key);
  Result<Manifest> GetManifest(const StoreKey& key);
  Result<PrefixMatch> LookupLongestPrefix(std::span<const std::string> block_hashes,
                                          std::string_view spec_hash);
  Status Delete(const StoreKey& key);
  Status RunMaintenance();
  Status Flush();
  StoreStats Stats() const;

 private:
  static constexpr size_t kStripes = 1024;

  std::shared_mutex& StripeFor(std::string_view ekey);
  int64_t Now() const { return clock_->NowMicros(); }
  static bool Live(const RocksTierOptions& tier, int64_t arrived_micros, int64_t now) {
    return tier.ttl.count() <= 0 || now - arrived_micros < tier.ttl.count();
  }
  RocksTier& Tier(TierId id) { return id == TierId::kWarm ? *warm_ : *cold_; }
  const RocksTierOptions& OptionsOf(TierId id) const {
    return id == TierId::kWarm ? options_.warm : options_.cold;
  }
  TierCounters& CountersOf(TierId id) { return id == TierId::kWarm ? warm_n_ : cold_n_; }
  Status RemoveDuplicates();

  // tiered_store_read.cc. REQUIRES for *Locked: the key's stripe held (shared or exclusive).
  ReadOutcome ReadLocked(const std::string& ekey, bool want_tensors, bool count, int64_t now);
  bool ReadTier(TierId id, const std::string& ekey, bool want_tensors, int64_t now,
                ReadOutcome* out);
  bool ExistsLocked(const std::string& ekey, int64_t now);
  void CacheHot(const std::string& ekey, const ReadOutcome& outcome, int64_t now);
  Status Promote(const std::string& ekey, const ReadOutcome& outcome, int64_t now);
  // Removes the damaged entry `outcome` describes, if it is still the one stored.
  void RemoveDamaged(const std::string& ekey, const ReadOutcome& outcome);

  // tiered_store_maintenance.cc
  // Calls fn on the age index of a tier, oldest first, until fn sets *stop, fails, or the index
  // ends. fn must remove the entry it is given or stop.
  Status ScanOldest(TierId id, const std::function<Status(const AgeIndexEntry&, bool* stop)>& fn);
  Status ExpireTier(TierId id, int64_t now);
  Status DemoteByAge(int64_t now);
  Status EnforceCapacity();
  // Runs EnforceCapacity when a tier is over capacity and no other pass is running; errors are
  // left to the next pass.
  void EnforceCapacityIfNeeded();
  Status Demote(const AgeIndexEntry& entry);
  // Removes a warm entry that failed verification while being moved.
  Status RemoveDamagedLocked(TierId id, const std::string& ekey);
  Status Drop(TierId id, const AgeIndexEntry& entry, std::atomic<uint64_t> TierCounters::*counter);
  bool OverCapacity(TierId id) const;
  void MaintenanceLoop();

  const TieredStoreOptions options_;
  const std::shared_ptr<Clock> clock_;
  std::unique_ptr<RocksTier> warm_;
  std::unique_ptr<RocksTier> cold_;  // null when options.cold.path is empty
  HotTier hot_;                      // after the tiers: dropped first on destruction
  std::unique_ptr<std::shared_mutex[]> stripes_;

  TierCounters hot_n_, warm_n_, cold_n_;
  std::atomic<uint64_t> puts_{0}, deletes_{0}, lookups_{0};

  std::mutex maintenance_mu_;  // one maintenance pass at a time

  std::mutex loop_mu_;  // guards stopping_
  std::condition_variable loop_cv_;
  bool stopping_ = false;
  std::thread loop_;
};

}  // namespace kvc::storage
