// RocksTier: one RocksDB database holding entries (internal to storage/; the warm and the cold
// tier are two instances with different options).
//
// Layout (column families, see rocks_util.h):
//   manifests  encoded store key                    -> tier record (header + encoded manifest)
//   blobs      encoded store key | u32 BE index     -> bytes of manifest tensor `index`
//   by_time    u64 BE arrival micros | store key    -> "" (the age index maintenance scans)
// An entry's record, blobs and index key are written and removed in one WriteBatch, so a crash
// leaves all of it or none of it. Zero-byte tensors have no blob key.
//
// The tier record header (FORMAT.md, "Tier record"): u8 record version | fixed64 arrival micros |
// fixed64 nonce | fixed64 entry bytes | fixed32 tensor count | fixed32 check (low 32 bits of
// XXH3_64 of the previous 29 bytes), then the encoded manifest.
//
// Thread safety: all methods may be called concurrently. Reads see committed writes. Mutations of
// one key (Write, Remove, DropIndexEntry) must be serialised by the caller, and a reader that
// needs the record and its blobs to match must exclude mutators of that key meanwhile
// (TieredStore's key stripes do both). Counters are atomic.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "storage/format.h"
#include "storage/options.h"

namespace rocksdb {
class Cache;
class ColumnFamilyHandle;
class DB;
class WriteBatch;
}  // namespace rocksdb

namespace kvc::storage {

inline constexpr uint8_t kTierRecordVersion = 1;
inline constexpr size_t kTierHeaderBytes = 33;

struct TierRecord {
  int64_t arrived_micros = 0;  // when the entry arrived in this tier
  uint64_t nonce = 0;          // distinguishes two writes of the same key
  uint64_t entry_bytes = 0;    // record bytes + tensor payload bytes (what capacity counts)
  uint32_t n_tensors = 0;      // blob keys 0..n_tensors-1 may exist
  std::string manifest;        // the encoded manifest (not yet decoded or verified)

  bool SameWrite(const TierRecord& o) const {
    return nonce == o.nonce && arrived_micros == o.arrived_micros;
  }
};

// One key of the age index.
struct AgeIndexEntry {
  int64_t arrived_micros = 0;
  std::string ekey;  // encoded store key
};

class RocksTier {
 public:
  // Opens (or creates) the database at options.path. `name` ("warm", "cold") prefixes messages.
  // Scans the records to count entries and bytes; records whose header is damaged are removed
  // and counted in corrupt_at_open().
  static Result<std::unique_ptr<RocksTier>> Open(std::string name, const RocksTierOptions& options,
                                                 bool sync, bool create_if_missing);
  ~RocksTier();
  RocksTier(const RocksTier&) = delete;
  RocksTier& operator=(const RocksTier&) = delete;

  // The record of `ekey` (without its manifest bytes unless with_manifest). NotFound if none;
  // Corruption if its header fails validation; NotSupported for an unknown record version.
  Result<TierRecord> ReadRecord(std::string_view ekey, bool with_manifest = true) const;

  // The blobs of `manifest`'s tensors (zero-byte tensors come back empty). They keep their bytes
  // alive on their own, also after the tier is closed. Corruption if a non-empty tensor has no
  // blob.
  Result<std::vector<BlobRef>> ReadBlobs(std::string_view ekey, const Manifest& manifest) const;

  // Writes the entry atomically, replacing any entry of `ekey`. `blobs` are the tensor bytes in
  // manifest order. REQUIRES: the caller serialises mutations of ekey.
  Status Write(std::string_view ekey, std::string_view manifest,
               std::span<const std::string_view> blobs, uint64_t payload_bytes,
               int64_t arrived_micros);

  // Removes the entry atomically. NotFound if there is none. A record with a damaged header is
  // removed too (its blobs by key range; its age index key is dropped later by maintenance).
  // REQUIRES: the caller serialises mutations of ekey.
  Status Remove(std::string_view ekey);

  // Up to `max` entries of the age index, oldest first, starting after `after` (from the first
  // when null).
  Status Oldest(size_t max, const AgeIndexEntry* after, std::vector<AgeIndexEntry>* out) const;
  // Removes an age index key whose record is gone or was rewritten.
  // REQUIRES: the caller serialises mutations of the entry's key.
  Status DropIndexEntry(const AgeIndexEntry& entry);

  // Flushes every column family's memtable to files and waits.
  Status Flush();

  // Calls fn for every stored key (encoded), in key order.
  Status ForEachKey(const std::function<void(std::string_view ekey)>& fn) const;

  uint64_t entries() const { return entries_.load(std::memory_order_relaxed); }
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  uint64_t corrupt_at_open() const { return corrupt_at_open_; }
  const std::string& name() const { return name_; }

 private:
  RocksTier(std::string name, bool sync);
  Status Recover();
  // Adds the deletions of `ekey`'s current entry to `batch` and returns its record: NotFound
  // when there is none, Corruption (still staged for removal) when its header is damaged.
  Result<TierRecord> StageRemoval(std::string_view ekey, rocksdb::WriteBatch* batch);
  // Forgets the counted size of a removed entry (nothing when `old` was not readable).
  void Uncount(const Result<TierRecord>& old);

  std::string name_;
  bool sync_;
  // Values pinned in the block cache refer to it: every BlobRef holds it, so it outlives them.
  std::shared_ptr<rocksdb::Cache> block_cache_;
  rocksdb::DB* db_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // default, manifests, blobs, by_time
  std::atomic<uint64_t> entries_{0};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> next_nonce_{0};
  uint64_t corrupt_at_open_ = 0;
};

// Encoders of the keys above (exposed for tests that inspect the databases).
std::string BlobKey(std::string_view ekey, uint32_t index);
std::string AgeIndexKey(int64_t arrived_micros, std::string_view ekey);
// Header + manifest of a tier record.
std::string EncodeTierRecord(const TierRecord& record);
// Inverse of EncodeTierRecord; Corruption / NotSupported as ReadRecord.
Result<TierRecord> DecodeTierRecord(std::string_view bytes, bool with_manifest = true);

}  // namespace kvc::storage
