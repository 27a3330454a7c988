// TieredStore: opening, writes, deletes, statistics. Reads are in tiered_store_read.cc,
// maintenance in tiered_store_maintenance.cc.
#include "storage/tiered_store.h"

#include <filesystem>
#include <functional>

#include "storage/tiered_store_impl.h"

namespace kvc::storage {

TieredStore::Impl::Impl(const TieredStoreOptions& options)
    : options_(options),
      clock_(options.clock ? options.clock : DefaultClock()),
      hot_(options.hot.capacity_bytes, options.hot.ttl.count()),
      stripes_(new std::shared_mutex[kStripes]) {}

TieredStore::Impl::~Impl() {
  {
    std::lock_guard<std::mutex> lock(loop_mu_);
    stopping_ = true;
  }
  loop_cv_.notify_all();
  if (loop_.joinable()) loop_.join();
}

Status TieredStore::Impl::Open() {
  if (options_.warm.path.empty()) return Status::InvalidArgument("store: warm.path is required");
  if (!options_.cold.path.empty()) {
    std::error_code ec;
    const auto warm = std::filesystem::weakly_canonical(options_.warm.path, ec);
    const auto cold = std::filesystem::weakly_canonical(options_.cold.path, ec);
    if (warm == cold) return Status::InvalidArgument("store: warm and cold paths must differ");
  }
  KVC_ASSIGN_OR_RETURN(
      warm_, RocksTier::Open("warm", options_.warm, options_.sync, options_.create_if_missing));
  if (!options_.cold.path.empty()) {
    KVC_ASSIGN_OR_RETURN(
        cold_, RocksTier::Open("cold", options_.cold, options_.sync, options_.create_if_missing));
    KVC_RETURN_IF_ERROR(RemoveDuplicates());
  }
  if (options_.maintenance_interval.count() > 0) {
    loop_ = std::thread([this] { MaintenanceLoop(); });
  }
  return Status::OK();
}

// A crash between the two writes of a move leaves the entry in both tiers; warm wins.
Status TieredStore::Impl::RemoveDuplicates() {
  std::vector<std::string> duplicates;
  Status scan_error;
  KVC_RETURN_IF_ERROR(cold_->ForEachKey([&](std::string_view ekey) {
    Result<TierRecord> rec = warm_->ReadRecord(ekey);
    if (rec.ok()) {
      duplicates.emplace_back(ekey);
    } else if (!rec.status().IsNotFound() && !rec.status().IsCorruption() && scan_error.ok()) {
      // A damaged warm record keeps its cold twin: once Get removes the damaged one, the cold
      // copy serves the key again.
      scan_error = rec.status();
    }
  }));
  for (const std::string& ekey : duplicates) {
    Status s = cold_->Remove(ekey);
    if (!s.ok() && !s.IsNotFound()) return s;
  }
  return scan_error;
}

std::shared_mutex& TieredStore::Impl::StripeFor(std::string_view ekey) {
  return stripes_[std::hash<std::string_view>{}(ekey) % kStripes];
}

Status TieredStore::Impl::Put(const StoreKey& key, const CompactedCache& cache,
                              const EntryExtras& extras) {
  KVC_RETURN_IF_ERROR(ValidateStoreKey(key.block_hash, key.spec_hash));
  if (options_.check_values_on_put) KVC_RETURN_IF_ERROR(ValidateForStore(cache, true));
  const int64_t now = Now();
  KVC_ASSIGN_OR_RETURN(EncodedEntry encoded, EncodeEntry(cache, extras, now));
  const std::string ekey = EncodeStoreKey(key);
  {
    std::unique_lock<std::shared_mutex> lock(StripeFor(ekey));
    KVC_RETURN_IF_ERROR(
        warm_->Write(ekey, encoded.manifest, encoded.blobs, encoded.payload_bytes, now));
    hot_.Erase(ekey);
    if (cold_) {
      // The new entry is durable in warm, which reads consult first; should this removal fail,
      // the stale cold copy stays hidden until Open removes it as a duplicate.
      cold_->Remove(ekey).IgnoreError();
    }
  }
  puts_.fetch_add(1, std::memory_order_relaxed);
  EnforceCapacityIfNeeded();
  return Status::OK();
}

Status TieredStore::Impl::Delete(const StoreKey& key) {
  KVC_RETURN_IF_ERROR(ValidateStoreKey(key.block_hash, key.spec_hash));
  const std::string ekey = EncodeStoreKey(key);
  std::unique_lock<std::shared_mutex> lock(StripeFor(ekey));
  hot_.Erase(ekey);
  Status warm = warm_->Remove(ekey);
  Status cold = cold_ ? cold_->Remove(ekey) : Status::NotFound("no cold tier");
  for (const Status& s : {warm, cold}) {
    if (!s.ok() && !s.IsNotFound()) return s;
  }
  if (warm.IsNotFound() && cold.IsNotFound()) {
    return Status::NotFound("store: no entry " +
                            StoreKeyDebugString(key.block_hash, key.spec_hash));
  }
  deletes_.fetch_add(1, std::memory_order_relaxed);
  return Status::OK();
}

Status TieredStore::Impl::Flush() {
  KVC_RETURN_IF_ERROR(warm_->Flush());
  return cold_ ? cold_->Flush() : Status::OK();
}

namespace {

void Fill(const TierCounters& c, TierStats* out) {
  out->hits = c.hits.load(std::memory_order_relaxed);
  out->misses = c.misses.load(std::memory_order_relaxed);
  out->promotions = c.promotions.load(std::memory_order_relaxed);
  out->demotions = c.demotions.load(std::memory_order_relaxed);
  out->evictions = c.evictions.load(std::memory_order_relaxed);
  out->expirations = c.expirations.load(std::memory_order_relaxed);
  out->corruptions = c.corruptions.load(std::memory_order_relaxed);
}

void FillTier(const TierCounters& c, const RocksTier* tier, TierStats* out) {
  Fill(c, out);
  if (tier == nullptr) return;
  out->entries = tier->entries();
  out->bytes = tier->bytes();
  out->corruptions += tier->corrupt_at_open();
}

}  // namespace

StoreStats TieredStore::Impl::Stats() const {
  StoreStats s;
  Fill(hot_n_, &s.hot);
  s.hot.entries = hot_.entries();
  s.hot.bytes = hot_.bytes();
  s.hot.evictions += hot_.evictions();
  s.hot.expirations += hot_.expirations();
  FillTier(warm_n_, warm_.get(), &s.warm);
  FillTier(cold_n_, cold_.get(), &s.cold);
  s.puts = puts_.load(std::memory_order_relaxed);
  s.deletes = deletes_.load(std::memory_order_relaxed);
  s.lookups = lookups_.load(std::memory_order_relaxed);
  return s;
}

// TieredStore forwards to Impl.

TieredStore::TieredStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TieredStore::~TieredStore() = default;

Result<std::unique_ptr<TieredStore>> TieredStore::Open(const TieredStoreOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  KVC_RETURN_IF_ERROR(impl->Open());
  return std::unique_ptr<TieredStore>(new TieredStore(std::move(impl)));
}

Status TieredStore::Put(const StoreKey& key, const CompactedCache& cache,
                        const EntryExtras& extras) {
  return impl_->Put(key, cache, extras);
}
Result<CompactedCache> TieredStore::Get(const StoreKey& key) { return impl_->Get(key); }
Result<Manifest> TieredStore::GetManifest(const StoreKey& key) { return impl_->GetManifest(key); }
Result<PrefixMatch> TieredStore::LookupLongestPrefix(std::span<const std::string> block_hashes,
                                                     std::string_view spec_hash) {
  return impl_->LookupLongestPrefix(block_hashes, spec_hash);
}
Status TieredStore::Delete(const StoreKey& key) { return impl_->Delete(key); }
Status TieredStore::RunMaintenance() { return impl_->RunMaintenance(); }
Status TieredStore::Flush() { return impl_->Flush(); }
StoreStats TieredStore::Stats() const { return impl_->Stats(); }

}  // namespace kvc::storage
