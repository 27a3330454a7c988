// TieredStore reads: Get, GetManifest, LookupLongestPrefix, promotion of cold hits and removal of
// damaged entries. Locking as described in tiered_store.h.
#include <mutex>
#include <optional>
#include <shared_mutex>

#include "storage/tiered_store_impl.h"

namespace kvc::storage {
namespace {

Status NoEntry(const StoreKey& key) {
  return Status::NotFound("store: no entry " + StoreKeyDebugString(key.block_hash, key.spec_hash));
}

}  // namespace

bool TieredStore::Impl::ReadTier(TierId id, const std::string& ekey, bool want_tensors, int64_t now,
                                 ReadOutcome* out) {
  RocksTier& tier = Tier(id);
  Result<TierRecord> rec = tier.ReadRecord(ekey);
  if (rec.status().IsNotFound()) return false;
  if (!rec.ok()) {
    out->tier = id;
    out->status = rec.status();
    return true;
  }
  if (!Live(OptionsOf(id), rec->arrived_micros, now)) return false;  // expired: invisible
  out->tier = id;
  out->record = std::move(*rec);
  out->have_record = true;
  Result<Manifest> manifest = DecodeManifest(out->record.manifest);
  if (!manifest.ok()) {
    out->status = manifest.status().WithContext(tier.name() + " tier");
    return true;
  }
  out->manifest = std::move(*manifest);
  if (want_tensors) {
    Result<std::vector<BlobRef>> blobs = tier.ReadBlobs(ekey, out->manifest);
    if (!blobs.ok()) {
      out->status = blobs.status();
      return true;
    }
    out->blobs = std::move(*blobs);
    Result<CompactedCache> cache = AssembleCache(out->manifest, out->blobs);
    if (!cache.ok()) {
      out->status = cache.status().WithContext(tier.name() + " tier");
      return true;
    }
    out->cache = std::move(*cache);
  }
  out->status = Status::OK();
  return true;
}

ReadOutcome TieredStore::Impl::ReadLocked(const std::string& ekey, bool want_tensors, bool count,
                                          int64_t now) {
  ReadOutcome out;
  for (TierId id : {TierId::kWarm, TierId::kCold}) {
    if (id == TierId::kCold && !cold_) break;
    const bool decided = ReadTier(id, ekey, want_tensors, now, &out);
    if (count && (!decided || out.status.ok())) {
      CountersOf(id).Add(decided ? &TierCounters::hits : &TierCounters::misses);
    }
    if (decided) return out;
  }
  return out;
}

bool TieredStore::Impl::ExistsLocked(const std::string& ekey, int64_t now) {
  for (TierId id : {TierId::kWarm, TierId::kCold}) {
    if (id == TierId::kCold && !cold_) break;
    Result<TierRecord> rec = Tier(id).ReadRecord(ekey, /*with_manifest=*/false);
    if (rec.ok() && Live(OptionsOf(id), rec->arrived_micros, now)) return true;
  }
  return false;
}

void TieredStore::Impl::CacheHot(const std::string& ekey, const ReadOutcome& outcome, int64_t now) {
  if (!hot_.enabled()) return;
  // The hot copy must not outlive the durable one's TTL.
  const int64_t ttl = OptionsOf(outcome.tier).ttl.count();
  const int64_t deadline = ttl > 0 ? outcome.record.arrived_micros + ttl : 0;
  if (hot_.Insert(ekey, outcome.cache, outcome.manifest.payload_bytes(), now, deadline)) {
    hot_n_.Add(&TierCounters::promotions);
  }
}

Result<CompactedCache> TieredStore::Impl::Get(const StoreKey& key) {
  KVC_RETURN_IF_ERROR(ValidateStoreKey(key.block_hash, key.spec_hash));
  const std::string ekey = EncodeStoreKey(key);
  const int64_t now = Now();
  if (hot_.enabled()) {
    if (std::optional<CompactedCache> hit = hot_.Get(ekey, now)) {
      hot_n_.Add(&TierCounters::hits);
      return std::move(*hit);
    }
    hot_n_.Add(&TierCounters::misses);
  }
  const bool promote = cold_ && options_.promote_on_cold_hit;
  ReadOutcome out;
  {
    std::shared_lock<std::shared_mutex> lock(StripeFor(ekey));
    out = ReadLocked(ekey, /*want_tensors=*/true, /*count=*/true, now);
    if (out.status.ok() && !(promote && out.tier == TierId::kCold)) CacheHot(ekey, out, now);
  }
  if (out.status.ok()) {
    if (promote && out.tier == TierId::kCold) {
      // The entry was read and verified; a failed move only leaves it in cold for next time.
      Promote(ekey, out, now).IgnoreError();
    }
    return std::move(out.cache);
  }
  if (out.status.IsCorruption()) RemoveDamaged(ekey, out);
  if (out.status.IsNotFound()) return NoEntry(key);
  return out.status;
}

Result<Manifest> TieredStore::Impl::GetManifest(const StoreKey& key) {
  KVC_RETURN_IF_ERROR(ValidateStoreKey(key.block_hash, key.spec_hash));
  const std::string ekey = EncodeStoreKey(key);
  ReadOutcome out;
  {
    std::shared_lock<std::shared_mutex> lock(StripeFor(ekey));
    out = ReadLocked(ekey, /*want_tensors=*/false, /*count=*/false, Now());
  }
  if (out.status.ok()) return std::move(out.manifest);
  if (out.status.IsCorruption()) RemoveDamaged(ekey, out);
  if (out.status.IsNotFound()) return NoEntry(key);
  return out.status;
}

Result<PrefixMatch> TieredStore::Impl::LookupLongestPrefix(
    std::span<const std::string> block_hashes, std::string_view spec_hash) {
  lookups_.fetch_add(1, std::memory_order_relaxed);
  for (const std::string& block : block_hashes) {
    KVC_RETURN_IF_ERROR(ValidateStoreKey(block, spec_hash));
  }
  const int64_t now = Now();
  size_t n = 0;
  for (; n < block_hashes.size(); ++n) {
    const std::string ekey = EncodeStoreKey(block_hashes[n], spec_hash);
    if (hot_.enabled() && hot_.Contains(ekey, now)) continue;
    std::shared_lock<std::shared_mutex> lock(StripeFor(ekey));
    if (!ExistsLocked(ekey, now)) break;
  }
  if (n == 0) return Status::NotFound("store: the first block of the chain is not stored");
  return PrefixMatch{n};
}

Status TieredStore::Impl::Promote(const std::string& ekey, const ReadOutcome& outcome,
                                  int64_t now) {
  {
    std::unique_lock<std::shared_mutex> lock(StripeFor(ekey));
    Result<TierRecord> rec = cold_->ReadRecord(ekey, /*with_manifest=*/false);
    // Rewritten, moved or deleted since it was read: nothing to promote.
    if (!rec.ok() || !rec->SameWrite(outcome.record)) return Status::OK();
    std::vector<std::string_view> blobs;
    for (const BlobRef& b : outcome.blobs) {
      blobs.emplace_back(static_cast<const char*>(b.data), b.size);
    }
    KVC_RETURN_IF_ERROR(
        warm_->Write(ekey, outcome.record.manifest, blobs, outcome.manifest.payload_bytes(), now));
    warm_n_.Add(&TierCounters::promotions);
    // Warm is read first, so a cold copy left by a failed removal stays hidden until Open
    // removes it as a duplicate.
    cold_->Remove(ekey).IgnoreError();
    ReadOutcome promoted = outcome;  // shares the tensors; now a warm entry arrived at `now`
    promoted.tier = TierId::kWarm;
    promoted.record.arrived_micros = now;
    CacheHot(ekey, promoted, now);
  }
  EnforceCapacityIfNeeded();
  return Status::OK();
}

void TieredStore::Impl::RemoveDamaged(const std::string& ekey, const ReadOutcome& outcome) {
  std::unique_lock<std::shared_mutex> lock(StripeFor(ekey));
  RocksTier& tier = Tier(outcome.tier);
  Result<TierRecord> rec = tier.ReadRecord(ekey, /*with_manifest=*/false);
  // Only the damaged write itself is removed, never an entry that replaced it meanwhile.
  const bool same = outcome.have_record ? rec.ok() && rec->SameWrite(outcome.record)
                                        : rec.status().IsCorruption();
  if (!same) return;
  if (tier.Remove(ekey).ok()) {
    CountersOf(outcome.tier).Add(&TierCounters::corruptions);
    hot_.Erase(ekey);
  }
}

}  // namespace kvc::storage
