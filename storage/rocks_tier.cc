#include "storage/rocks_tier.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/write_batch.h>

#include <random>

#include "storage/coding.h"
#include "storage/rocks_util.h"

namespace kvc::storage {
namespace {

enum CfIndex { kDefault = 0, kManifests = 1, kBlobs = 2, kByTime = 3 };

constexpr size_t kHeaderCheckedBytes = kTierHeaderBytes - 4;

uint32_t HeaderCheck(const char* p) {
  return static_cast<uint32_t>(Checksum64(p, kHeaderCheckedBytes));
}

// Upper bound of the blob keys of `ekey` (blob keys append 4 bytes).
std::string BlobKeyLimit(std::string_view ekey) {
  return std::string(ekey) + "\xff\xff\xff\xff\xff";
}

rocksdb::Slice ToSlice(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace

std::string BlobKey(std::string_view ekey, uint32_t index) {
  std::string k(ekey);
  PutFixed32BE(&k, index);
  return k;
}

std::string AgeIndexKey(int64_t arrived_micros, std::string_view ekey) {
  std::string k;
  PutFixed64BE(&k, static_cast<uint64_t>(arrived_micros));
  k.append(ekey);
  return k;
}

std::string EncodeTierRecord(const TierRecord& r) {
  std::string out;
  out.reserve(kTierHeaderBytes + r.manifest.size());
  out.push_back(static_cast<char>(kTierRecordVersion));
  PutFixed64(&out, static_cast<uint64_t>(r.arrived_micros));
  PutFixed64(&out, r.nonce);
  PutFixed64(&out, r.entry_bytes);
  PutFixed32(&out, r.n_tensors);
  PutFixed32(&out, HeaderCheck(out.data()));
  out.append(r.manifest);
  return out;
}

Result<TierRecord> DecodeTierRecord(std::string_view bytes, bool with_manifest) {
  if (bytes.empty()) return Status::Corruption("tier record: empty");
  if (static_cast<uint8_t>(bytes[0]) != kTierRecordVersion) {
    return Status::NotSupported("tier record: version " +
                                std::to_string(static_cast<uint8_t>(bytes[0])));
  }
  if (bytes.size() < kTierHeaderBytes) return Status::Corruption("tier record: truncated header");
  Reader r(bytes.substr(1));
  TierRecord rec;
  uint64_t arrived;
  uint32_t check;
  r.GetFixed64(&arrived);
  r.GetFixed64(&rec.nonce);
  r.GetFixed64(&rec.entry_bytes);
  r.GetFixed32(&rec.n_tensors);
  r.GetFixed32(&check);
  if (check != HeaderCheck(bytes.data()))
    return Status::Corruption("tier record: bad header check");
  rec.arrived_micros = static_cast<int64_t>(arrived);
  if (with_manifest) rec.manifest.assign(bytes.substr(kTierHeaderBytes));
  return rec;
}

RocksTier::RocksTier(std::string name, bool sync) : name_(std::move(name)), sync_(sync) {
  next_nonce_.store(std::random_device{}() * 0x9e3779b97f4a7c15ull, std::memory_order_relaxed);
}

RocksTier::~RocksTier() {
  if (db_ == nullptr) return;
  for (rocksdb::ColumnFamilyHandle* h : handles_)
    db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  db_->Close().PermitUncheckedError();
  delete db_;
}

Result<std::unique_ptr<RocksTier>> RocksTier::Open(std::string name,
                                                   const RocksTierOptions& options, bool sync,
                                                   bool create_if_missing) {
  if (options.path.empty()) return Status::InvalidArgument(name + " tier: empty path");
  std::unique_ptr<RocksTier> tier(new RocksTier(std::move(name), sync));
  const rocksdb::DBOptions db_options = MakeDbOptions(options, create_if_missing);
  tier->block_cache_ = rocksdb::NewLRUCache(options.block_cache_bytes);
  rocksdb::Status s =
      rocksdb::DB::Open(db_options, options.path, MakeColumnFamilies(options, tier->block_cache_),
                        &tier->handles_, &tier->db_);
  if (!s.ok()) {
    tier->db_ = nullptr;
    if (s.IsInvalidArgument() && !create_if_missing) {
      return Status::NotFound(tier->name_ + " tier: no database at " + options.path + " (" +
                              s.ToString() + ")");
    }
    return FromRocks(s, tier->name_ + " tier: open " + options.path);
  }
  KVC_RETURN_IF_ERROR(tier->Recover());
  return tier;
}

Status RocksTier::Recover() {
  std::vector<std::string> damaged;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kManifests]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      Result<TierRecord> rec =
          DecodeTierRecord(std::string_view(it->value().data(), it->value().size()), false);
      if (rec.status().IsCorruption()) {
        damaged.push_back(it->key().ToString());
        continue;
      }
      // A record of a newer version counts with the size of its record (payload unknown).
      entries_.fetch_add(1, std::memory_order_relaxed);
      bytes_.fetch_add(rec.ok() ? rec->entry_bytes : it->value().size(), std::memory_order_relaxed);
    }
    KVC_RETURN_IF_ERROR(FromRocks(it->status(), name_ + " tier: recovery scan"));
  }
  for (const std::string& ekey : damaged) {
    rocksdb::WriteBatch batch;
    Result<TierRecord> old = StageRemoval(ekey, &batch);
    if (old.ok()) continue;  // readable after all: keep it (the batch is dropped)
    if (!old.status().IsCorruption()) return old.status().WithContext(name_ + " tier: recovery");
    KVC_RETURN_IF_ERROR(FromRocks(db_->Write(MakeWriteOptions(sync_), &batch),
                                  name_ + " tier: remove damaged record"));
    ++corrupt_at_open_;
  }
  return Status::OK();
}

Result<TierRecord> RocksTier::ReadRecord(std::string_view ekey, bool with_manifest) const {
  rocksdb::PinnableSlice value;
  rocksdb::Status s = db_->Get({}, handles_[kManifests], ToSlice(ekey), &value);
  if (s.IsNotFound()) return Status::NotFound(name_ + " tier: no entry");
  KVC_RETURN_IF_ERROR(FromRocks(s, name_ + " tier: read record"));
  Result<TierRecord> rec =
      DecodeTierRecord(std::string_view(value.data(), value.size()), with_manifest);
  if (!rec.ok()) return rec.status().WithContext(name_ + " tier");
  return rec;
}

Result<std::vector<BlobRef>> RocksTier::ReadBlobs(std::string_view ekey,
                                                  const Manifest& manifest) const {
  // The values stay alive in `holder` for as long as any returned BlobRef refers to one; values
  // pinned in the block cache release their handle into `cache`, destroyed after them.
  struct Holder {
    std::shared_ptr<rocksdb::Cache> cache;
    std::vector<std::string> keys;
    std::unique_ptr<rocksdb::PinnableSlice[]> values;
  };
  auto holder = std::make_shared<Holder>();
  holder->cache = block_cache_;
  std::vector<size_t> which;  // manifest index of each key
  for (size_t i = 0; i < manifest.tensors.size(); ++i) {
    if (manifest.tensors[i].nbytes == 0) continue;
    holder->keys.push_back(BlobKey(ekey, static_cast<uint32_t>(i)));
    which.push_back(i);
  }
  const size_t n = holder->keys.size();
  std::vector<rocksdb::Slice> keys(holder->keys.begin(), holder->keys.end());
  std::vector<rocksdb::Status> statuses(n);
  holder->values.reset(new rocksdb::PinnableSlice[n]);
  db_->MultiGet({}, handles_[kBlobs], n, keys.data(), holder->values.get(), statuses.data());
  std::vector<BlobRef> out(manifest.tensors.size());
  for (size_t j = 0; j < n; ++j) {
    const TensorDesc& desc = manifest.tensors[which[j]];
    if (statuses[j].IsNotFound()) {
      return Status::Corruption(name_ + " tier: " + desc.name + " missing");
    }
    KVC_RETURN_IF_ERROR(FromRocks(statuses[j], name_ + " tier: read " + desc.name));
    rocksdb::PinnableSlice& v = holder->values[j];
    out[which[j]] = {v.data(), v.size(), std::shared_ptr<void>(holder, &v)};
  }
  return out;
}

Result<TierRecord> RocksTier::StageRemoval(std::string_view ekey, rocksdb::WriteBatch* batch) {
  Result<TierRecord> old = ReadRecord(ekey, /*with_manifest=*/false);
  if (old.ok()) {
    for (uint32_t i = 0; i < old->n_tensors; ++i) {
      batch->Delete(handles_[kBlobs], BlobKey(ekey, i)).PermitUncheckedError();
    }
    batch->Delete(handles_[kByTime], AgeIndexKey(old->arrived_micros, ekey)).PermitUncheckedError();
  } else if (old.status().IsCorruption()) {
    // The tensor count is not trustworthy: drop every blob key of this entry.
    batch->DeleteRange(handles_[kBlobs], ToSlice(ekey), BlobKeyLimit(ekey)).PermitUncheckedError();
  } else {
    return old;
  }
  batch->Delete(handles_[kManifests], ToSlice(ekey)).PermitUncheckedError();
  return old;
}

void RocksTier::Uncount(const Result<TierRecord>& old) {
  if (old.ok() || old.status().IsCorruption()) entries_.fetch_sub(1, std::memory_order_relaxed);
  // The size of a record with a damaged header is unknown; bytes may then over-count.
  if (old.ok()) bytes_.fetch_sub(old->entry_bytes, std::memory_order_relaxed);
}

Status RocksTier::Write(std::string_view ekey, std::string_view manifest,
                        std::span<const std::string_view> blobs, uint64_t payload_bytes,
                        int64_t arrived_micros) {
  rocksdb::WriteBatch batch;
  Result<TierRecord> old = StageRemoval(ekey, &batch);
  if (!old.ok() && !old.status().IsNotFound() && !old.status().IsCorruption()) {
    return old.status();
  }
  TierRecord rec;
  rec.arrived_micros = arrived_micros;
  rec.nonce = next_nonce_.fetch_add(1, std::memory_order_relaxed);
  rec.entry_bytes = kTierHeaderBytes + manifest.size() + payload_bytes;
  rec.n_tensors = static_cast<uint32_t>(blobs.size());
  rec.manifest.assign(manifest);
  for (size_t i = 0; i < blobs.size(); ++i) {
    if (blobs[i].empty()) continue;
    KVC_RETURN_IF_ERROR(FromRocks(
        batch.Put(handles_[kBlobs], BlobKey(ekey, static_cast<uint32_t>(i)), ToSlice(blobs[i])),
        name_ + " tier: stage tensor"));
  }
  KVC_RETURN_IF_ERROR(FromRocks(
      batch.Put(handles_[kManifests], ToSlice(ekey), EncodeTierRecord(rec)), name_ + " tier"));
  KVC_RETURN_IF_ERROR(
      FromRocks(batch.Put(handles_[kByTime], AgeIndexKey(arrived_micros, ekey), rocksdb::Slice()),
                name_ + " tier"));
  KVC_RETURN_IF_ERROR(
      FromRocks(db_->Write(MakeWriteOptions(sync_), &batch), name_ + " tier: write"));
  Uncount(old);
  entries_.fetch_add(1, std::memory_order_relaxed);
  bytes_.fetch_add(rec.entry_bytes, std::memory_order_relaxed);
  return Status::OK();
}

Status RocksTier::Remove(std::string_view ekey) {
  rocksdb::WriteBatch batch;
  Result<TierRecord> old = StageRemoval(ekey, &batch);
  if (!old.ok() && !old.status().IsCorruption()) return old.status();
  KVC_RETURN_IF_ERROR(
      FromRocks(db_->Write(MakeWriteOptions(sync_), &batch), name_ + " tier: remove"));
  Uncount(old);
  return Status::OK();
}

Status RocksTier::Oldest(size_t max, const AgeIndexEntry* after,
                         std::vector<AgeIndexEntry>* out) const {
  out->clear();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kByTime]));
  if (after == nullptr) {
    it->SeekToFirst();
  } else {
    // The smallest key greater than `after`'s key.
    it->Seek(AgeIndexKey(after->arrived_micros, after->ekey) + '\0');
  }
  for (; it->Valid() && out->size() < max; it->Next()) {
    const rocksdb::Slice k = it->key();
    if (k.size() <= 8) return Status::Corruption(name_ + " tier: malformed age index key");
    out->push_back(
        {static_cast<int64_t>(DecodeFixed64BE(k.data())), std::string(k.data() + 8, k.size() - 8)});
  }
  return FromRocks(it->status(), name_ + " tier: age index scan");
}

Status RocksTier::DropIndexEntry(const AgeIndexEntry& entry) {
  return FromRocks(db_->Delete(MakeWriteOptions(sync_), handles_[kByTime],
                               AgeIndexKey(entry.arrived_micros, entry.ekey)),
                   name_ + " tier: drop age index key");
}

Status RocksTier::Flush() {
  return FromRocks(db_->Flush(rocksdb::FlushOptions(), handles_), name_ + " tier: flush");
}

Status RocksTier::ForEachKey(const std::function<void(std::string_view)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, handles_[kManifests]));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    fn(std::string_view(it->key().data(), it->key().size()));
  }
  return FromRocks(it->status(), name_ + " tier: key scan");
}

}  // namespace kvc::storage
