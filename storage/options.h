// Options of the tiered compacted-cache store (design §6). Plain structs; every field says what it
// means and its default. RocksDB types stay out of this header: rocks_options.cc translates.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "storage/clock.h"

namespace kvc::storage {

enum class Compression : uint8_t { kNone = 0, kLz4 = 1, kZstd = 2 };

// The in-process LRU of decoded entries. It caches what the durable tiers hold: dropping an entry
// from it never loses data.
struct HotTierOptions {
  // Bytes of tensor payload the LRU may hold; the least recently used entries leave first. An
  // entry larger than this is never cached. 0 disables the hot tier.
  // Default: 1 GiB.
  uint64_t capacity_bytes = uint64_t{1} << 30;
  // An entry cached longer than this (since it entered the hot tier) is dropped from memory; its
  // durable copy stays. 0 means no limit.
  // Default: 0.
  std::chrono::microseconds ttl{0};
};

// One RocksDB-backed tier (warm or cold). See RocksTierOptions::Warm() / Cold() for the presets
// TieredStoreOptions starts from.
struct RocksTierOptions {
  // Directory of the database. Required for the warm tier; for the cold tier an empty path
  // disables it (warm entries are then deleted, not demoted, when they leave the warm tier).
  // Default: "".
  std::string path;
  // Logical bytes (encoded manifest + tensor payload) the tier may hold. Past it, the oldest
  // entries (by time of arrival in the tier) leave: the warm tier demotes them to cold, the cold
  // tier deletes them (counted as evictions). Enforced right after the write that crossed it
  // (or, when another maintenance pass is running at that moment, by that pass or the next).
  // 0 means unbounded.
  // Default: 0.
  uint64_t capacity_bytes = 0;
  // An entry older than this since it arrived in the tier is invisible to reads and is deleted by
  // the next maintenance pass (counted as an expiration). A promotion or demotion is an arrival,
  // so entries that keep being used live on. 0 means no expiry.
  // Default: 0.
  std::chrono::microseconds ttl{0};
  // Compression of SST blocks (manifests, small tensors), including the bottommost level.
  // Default: kNone for warm (speed), kZstd for cold (capacity).
  Compression compression = Compression::kNone;
  // Integrated BlobDB: tensor values of at least min_blob_size bytes go to blob files, keeping
  // the LSM tree small. Default: true.
  bool enable_blob_files = true;
  // Smallest value that goes to a blob file; smaller tensors stay in SST blocks.
  // Default: 4096 bytes.
  uint64_t min_blob_size = 4096;
  // Target size of one blob file. Default: 256 MiB.
  uint64_t blob_file_size = uint64_t{256} << 20;
  // Compression of blob values. Default: kNone for warm, kZstd for cold.
  Compression blob_compression = Compression::kNone;
  // Blob garbage collection during compaction (reclaims space of deleted entries).
  // Default: true, with the oldest 25% of blob files eligible.
  bool enable_blob_gc = true;
  double blob_gc_age_cutoff = 0.25;
  // Memtable size of the blob column family; a Put's tensors pass through it (and the WAL)
  // before a flush moves them into blob files. Default: 128 MiB warm, 64 MiB cold.
  uint64_t write_buffer_size = uint64_t{128} << 20;
  // Block cache for manifests and index blocks. Default: 64 MiB.
  uint64_t block_cache_bytes = uint64_t{64} << 20;
  // RocksDB background flush/compaction threads. Default: 2.
  int max_background_jobs = 2;

  static RocksTierOptions Warm();
  static RocksTierOptions Cold();
};

struct TieredStoreOptions {
  HotTierOptions hot;
  RocksTierOptions warm = RocksTierOptions::Warm();
  RocksTierOptions cold = RocksTierOptions::Cold();
  // Warm entries older than this (since arrival in warm) are demoted to cold by maintenance.
  // 0 means demotion by capacity only.
  // Default: 0.
  std::chrono::microseconds warm_demote_after{0};
  // A cold hit moves the entry back to warm (and into hot). Default: true.
  bool promote_on_cold_hit = true;
  // WriteOptions.sync for every write: a Put that returned OK has its write-ahead log synced and
  // survives kill -9 and power loss. With false it survives kill -9 (the OS holds the data) but
  // not a power loss. Default: true.
  bool sync = true;
  // Create the databases when missing; otherwise Open fails with NotFound. Default: true.
  bool create_if_missing = true;
  // Put runs CompactedCache::Validate() (finite K/V, beta not NaN/+Inf) on top of the structural
  // checks it always runs. The engine validates its outputs already. Default: false.
  bool check_values_on_put = false;
  // Period of the background maintenance thread (TTL sweeps, demotion by age). 0 runs no thread:
  // the owner calls RunMaintenance() (e.g. from its timer). Capacity is enforced after writes
  // either way. Default: 10 s.
  std::chrono::milliseconds maintenance_interval{10'000};
  // Time source. Default: null, meaning the system clock.
  std::shared_ptr<Clock> clock;
};

}  // namespace kvc::storage
