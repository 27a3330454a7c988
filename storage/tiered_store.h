// TieredStore: the compacted-cache store of a worker (design §6).
//
//   hot   in-process LRU of decoded entries, bounded in bytes (a cache of the tiers below)
//   warm  RocksDB on fast disk: manifests and tensor blobs in column families, BlobDB for the
//         tensors, WAL on. Every Put lands here.
//   cold  optional second RocksDB on capacity disk, ZSTD. Warm entries move here by age
//         (warm_demote_after) or pressure (warm.capacity_bytes); a cold hit moves the entry back.
//
// Entries are keyed by StoreKey (block hash, spec hash), both opaque bytes. Each entry is one
// CompactedCache plus EntryExtras, encoded as storage/FORMAT.md describes.
//
// Guarantees:
//   - A Put is one WriteBatch (manifest, every tensor, age index): after a crash the entry is
//     there whole or not at all. With options.sync (default) an OK Put survives kill -9 and power
//     loss; a reopened store finds every acknowledged entry.
//   - Moves between warm and cold write the destination (synced) before removing the source, so
//     a crash mid-move leaves a duplicate, never a loss; Open removes such duplicates (warm wins).
//   - Every read from warm or cold verifies the manifest and tensor checksums (hot entries were
//     verified when they were read). A damaged entry is never returned: Get answers Corruption,
//     removes the damaged entry (and any hot copy) and counts it in its tier's corruptions.
//   - Expired entries (per-tier TTL) are invisible at once and deleted by maintenance.
//
// Thread safety: all public methods may be called concurrently from any threads. Locking:
//   - key stripes: a fixed array of std::shared_mutex, chosen by a hash of the encoded key.
//     Mutations of a key (Put, Delete, promotion, demotion, expiry, eviction, removal of a
//     damaged entry) hold its stripe exclusively; reads of a key (Get, GetManifest, one key of
//     LookupLongestPrefix) hold it shared, so a reader never sees half of a concurrent write or
//     a key in flight between tiers. No thread holds two stripes at once.
//   - the hot tier has its own mutex, the innermost lock: taken briefly, never held while
//     acquiring anything else. Readers insert into it only while holding the key's stripe, so a
//     stale value can never overwrite a newer Put's invalidation.
//   - lock order: maintenance mutex, then one key stripe, then the hot tier's mutex.
//   - maintenance (RunMaintenance, capacity enforcement after writes) runs one pass at a time
//     (a separate mutex), taking stripes entry by entry.
//   - statistics are atomic counters.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/kv_cache.h"
#include "common/status.h"
#include "storage/format.h"
#include "storage/options.h"
#include "storage/stats.h"
#include "storage/store_key.h"

namespace kvc::storage {

// Result of LookupLongestPrefix.
struct PrefixMatch {
  // Number of leading blocks of the chain that are all stored (>= 1).
  size_t length = 0;
  // Index in the chain of the deepest stored block of that prefix.
  size_t last_index() const { return length - 1; }
};

class TieredStore {
 public:
  // Opens (creating when options.create_if_missing) the warm database and, when
  // options.cold.path is set, the cold one; recovers counters, removes duplicates a crash
  // during a move may have left, and starts the maintenance thread when
  // options.maintenance_interval > 0.
  // Errors: InvalidArgument (no warm path, warm and cold paths equal), NotFound (database
  // missing and !create_if_missing), IOError / Corruption from RocksDB.
  static Result<std::unique_ptr<TieredStore>> Open(const TieredStoreOptions& options);

  // Stops maintenance and closes the databases. REQUIRES: no call in flight.
  ~TieredStore();
  TieredStore(const TieredStore&) = delete;
  TieredStore& operator=(const TieredStore&) = delete;

  // Stores `cache` under `key`, replacing any entry of that key in any tier (the hot copy is
  // dropped). The tensors are checksummed and written to warm in one atomic batch; `cache` is
  // not retained. Then enforces tier capacities (which may demote older entries).
  // Errors: InvalidArgument (bad key, cache failing ValidateForStore; nothing changed),
  // IOError etc. from RocksDB (nothing changed).
  Status Put(const StoreKey& key, const CompactedCache& cache, const EntryExtras& extras = {});

  // The entry of `key`, checked against its checksums. Looks in hot, then warm, then cold; a warm
  // or cold hit is cached in hot, and a cold hit is promoted to warm (promote_on_cold_hit).
  // The returned tensors may share memory with the hot tier: treat them as read-only (Clone()
  // before writing). They stay valid after the store is destroyed.
  // Errors: NotFound when no live entry exists (nothing changed), Corruption when the stored
  // entry fails verification (the entry has then been removed and counted), NotSupported for an
  // entry written by a newer format (left in place), InvalidArgument for a bad key, IOError
  // when RocksDB cannot read (nothing changed).
  Result<CompactedCache> Get(const StoreKey& key);

  // The verified manifest of `key` (layout, offsets, tensor list, metadata, creation time,
  // extras) without reading tensors; no promotion. Errors as Get (a damaged manifest is removed).
  Result<Manifest> GetManifest(const StoreKey& key);

  // The longest prefix of `block_hashes` (a prefix-hash chain, in chain order) whose blocks are
  // all stored under `spec_hash` and live (not expired), probed block by block from the first
  // and stopping at the first gap. A block counts as stored when its tier record header is
  // valid; tensors are verified by the Get that follows. Counts as no hit or miss and promotes
  // nothing. Errors: NotFound when the first block is not stored (or the chain is empty),
  // InvalidArgument for a bad key part (nothing is probed then).
  Result<PrefixMatch> LookupLongestPrefix(std::span<const std::string> block_hashes,
                                          std::string_view spec_hash);

  // Removes the entry of `key` from every tier. OK if one was removed, NotFound if none existed
  // (nothing changed).
  Status Delete(const StoreKey& key);

  // One maintenance pass: drops expired entries of every tier, demotes warm entries older than
  // warm_demote_after, then enforces warm and cold capacity. Returns the first error met (the
  // pass stops there; the store stays consistent).
  Status RunMaintenance();

  // Writes the memtables of the warm and cold databases to their SST and blob files and waits.
  // Not needed for durability (the synced WAL holds every acknowledged write); useful before a
  // backup or a file-level check.
  Status Flush();

  // Current counters (see stats.h); cheap, lock-free except for the hot tier's mutex.
  StoreStats Stats() const;

 private:
  class Impl;
  explicit TieredStore(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace kvc::storage
