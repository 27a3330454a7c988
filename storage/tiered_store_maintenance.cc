// TieredStore maintenance: TTL expiry, demotion by age and capacity, cold eviction, and the
// background loop. Each entry is handled under its key stripe (exclusive); one pass runs at a
// time (maintenance_mu_).
#include <mutex>
#include <optional>
#include <shared_mutex>

#include "storage/tiered_store_impl.h"

namespace kvc::storage {
namespace {

constexpr size_t kScanBatch = 64;

}  // namespace

Status TieredStore::Impl::RunMaintenance() {
  std::lock_guard<std::mutex> lock(maintenance_mu_);
  const int64_t now = Now();
  hot_.SweepExpired(now);
  KVC_RETURN_IF_ERROR(ExpireTier(TierId::kWarm, now));
  KVC_RETURN_IF_ERROR(DemoteByAge(now));
  if (cold_) KVC_RETURN_IF_ERROR(ExpireTier(TierId::kCold, now));
  return EnforceCapacity();
}

void TieredStore::Impl::EnforceCapacityIfNeeded() {
  if (!OverCapacity(TierId::kWarm) && !OverCapacity(TierId::kCold)) return;
  std::unique_lock<std::mutex> lock(maintenance_mu_, std::try_to_lock);
  // A pass already running enforces capacity itself (it checks the byte counts as it goes).
  if (!lock.owns_lock()) return;
  // Errors here are the next pass's to retry; the write that triggered this already succeeded.
  EnforceCapacity().IgnoreError();
}

bool TieredStore::Impl::OverCapacity(TierId id) const {
  if (id == TierId::kCold && !cold_) return false;
  const uint64_t cap = OptionsOf(id).capacity_bytes;
  const RocksTier& tier = id == TierId::kWarm ? *warm_ : *cold_;
  return cap > 0 && tier.bytes() > cap;
}

Status TieredStore::Impl::ScanOldest(
    TierId id, const std::function<Status(const AgeIndexEntry&, bool* stop)>& fn) {
  std::vector<AgeIndexEntry> batch;
  std::optional<AgeIndexEntry> last;
  for (;;) {
    KVC_RETURN_IF_ERROR(Tier(id).Oldest(kScanBatch, last ? &*last : nullptr, &batch));
    if (batch.empty()) return Status::OK();
    for (const AgeIndexEntry& entry : batch) {
      bool stop = false;
      KVC_RETURN_IF_ERROR(fn(entry, &stop));
      if (stop) return Status::OK();
    }
    last = batch.back();
  }
}

Status TieredStore::Impl::ExpireTier(TierId id, int64_t now) {
  const RocksTierOptions& options = OptionsOf(id);
  if (options.ttl.count() <= 0) return Status::OK();
  return ScanOldest(id, [&](const AgeIndexEntry& e, bool* stop) {
    if (Live(options, e.arrived_micros, now)) {
      *stop = true;
      return Status::OK();
    }
    return Drop(id, e, &TierCounters::expirations);
  });
}

Status TieredStore::Impl::DemoteByAge(int64_t now) {
  const int64_t after = options_.warm_demote_after.count();
  if (after <= 0) return Status::OK();
  return ScanOldest(TierId::kWarm, [&](const AgeIndexEntry& e, bool* stop) {
    if (now - e.arrived_micros < after) {
      *stop = true;
      return Status::OK();
    }
    return Demote(e);
  });
}

Status TieredStore::Impl::EnforceCapacity() {
  if (OverCapacity(TierId::kWarm)) {
    KVC_RETURN_IF_ERROR(ScanOldest(TierId::kWarm, [&](const AgeIndexEntry& e, bool* stop) {
      *stop = !OverCapacity(TierId::kWarm);
      return *stop ? Status::OK() : Demote(e);
    }));
  }
  if (OverCapacity(TierId::kCold)) {
    KVC_RETURN_IF_ERROR(ScanOldest(TierId::kCold, [&](const AgeIndexEntry& e, bool* stop) {
      *stop = !OverCapacity(TierId::kCold);
      return *stop ? Status::OK() : Drop(TierId::kCold, e, &TierCounters::evictions);
    }));
  }
  return Status::OK();
}

Status TieredStore::Impl::RemoveDamagedLocked(TierId id, const std::string& ekey) {
  KVC_RETURN_IF_ERROR(Tier(id).Remove(ekey));
  CountersOf(id).Add(&TierCounters::corruptions);
  hot_.Erase(ekey);
  return Status::OK();
}

Status TieredStore::Impl::Demote(const AgeIndexEntry& entry) {
  const std::string& ekey = entry.ekey;
  std::unique_lock<std::shared_mutex> lock(StripeFor(ekey));
  Result<TierRecord> rec = warm_->ReadRecord(ekey);
  if (rec.status().IsNotFound() || (rec.ok() && rec->arrived_micros != entry.arrived_micros)) {
    return warm_->DropIndexEntry(entry);  // a leftover of a damaged record
  }
  if (rec.status().IsCorruption()) return RemoveDamagedLocked(TierId::kWarm, ekey);
  KVC_RETURN_IF_ERROR(rec.status());
  // Verify before moving: a damaged entry is removed, not copied into cold.
  Result<Manifest> manifest = DecodeManifest(rec->manifest);
  if (manifest.status().IsCorruption()) return RemoveDamagedLocked(TierId::kWarm, ekey);
  KVC_RETURN_IF_ERROR(manifest.status());
  Result<std::vector<BlobRef>> blobs = warm_->ReadBlobs(ekey, *manifest);
  if (blobs.status().IsCorruption()) return RemoveDamagedLocked(TierId::kWarm, ekey);
  KVC_RETURN_IF_ERROR(blobs.status());
  std::vector<std::string_view> views;
  for (size_t i = 0; i < blobs->size(); ++i) {
    const BlobRef& b = (*blobs)[i];
    if (!VerifyBlob(manifest->tensors[i], b.data, b.size).ok()) {
      return RemoveDamagedLocked(TierId::kWarm, ekey);
    }
    views.emplace_back(static_cast<const char*>(b.data), b.size);
  }
  if (!cold_) {
    KVC_RETURN_IF_ERROR(warm_->Remove(ekey));
    warm_n_.Add(&TierCounters::evictions);
    hot_.Erase(ekey);
    return Status::OK();
  }
  // Destination first: a crash in between leaves a duplicate (resolved at Open), never a loss.
  KVC_RETURN_IF_ERROR(cold_->Write(ekey, rec->manifest, views, manifest->payload_bytes(), Now()));
  KVC_RETURN_IF_ERROR(warm_->Remove(ekey));
  warm_n_.Add(&TierCounters::demotions);
  return Status::OK();
}

Status TieredStore::Impl::Drop(TierId id, const AgeIndexEntry& entry,
                               std::atomic<uint64_t> TierCounters::*counter) {
  RocksTier& tier = Tier(id);
  std::unique_lock<std::shared_mutex> lock(StripeFor(entry.ekey));
  Result<TierRecord> rec = tier.ReadRecord(entry.ekey, /*with_manifest=*/false);
  if (rec.status().IsNotFound() || (rec.ok() && rec->arrived_micros != entry.arrived_micros)) {
    return tier.DropIndexEntry(entry);
  }
  if (rec.status().IsCorruption()) return RemoveDamagedLocked(id, entry.ekey);
  KVC_RETURN_IF_ERROR(rec.status());
  KVC_RETURN_IF_ERROR(tier.Remove(entry.ekey));
  CountersOf(id).Add(counter);
  hot_.Erase(entry.ekey);
  return Status::OK();
}

void TieredStore::Impl::MaintenanceLoop() {
  std::unique_lock<std::mutex> lock(loop_mu_);
  while (!stopping_) {
    loop_cv_.wait_for(lock, options_.maintenance_interval, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    // A failed pass is retried at the next tick; the store stays consistent either way.
    RunMaintenance().IgnoreError();
    lock.lock();
  }
}

}  // namespace kvc::storage
