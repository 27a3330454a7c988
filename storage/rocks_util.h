// RocksDB glue of the storage tiers (internal to storage/): status conversion at the edge and the
// translation of RocksTierOptions into RocksDB options. The benchmark's raw-RocksDB anchor builds
// its database from the same functions, so both run with identical options.
//
// Thread safety: pure functions.
#pragma once

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/status.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "storage/options.h"

namespace kvc::storage {

// Column families of a tier database, in this order after "default".
inline constexpr const char* kManifestsCf = "manifests";  // store key -> tier record
inline constexpr const char* kBlobsCf = "blobs";          // store key | u32 BE index -> tensor
inline constexpr const char* kByTimeCf = "by_time";       // u64 BE arrival time | store key -> ""

// Converts a RocksDB status; `context` prefixes the message. OK stays OK.
Status FromRocks(const rocksdb::Status& s, std::string_view context);

rocksdb::CompressionType ToRocksCompression(Compression c);

// DB-wide options (create flags, background jobs; the WAL is always on).
rocksdb::DBOptions MakeDbOptions(const RocksTierOptions& options, bool create_if_missing);

// Descriptors for default, manifests, blobs and by_time, sharing one block cache (made here when
// `block_cache` is null). BlobDB is enabled on the blobs family only (manifests stay in SST
// blocks for cheap lookups).
std::vector<rocksdb::ColumnFamilyDescriptor> MakeColumnFamilies(
    const RocksTierOptions& options, std::shared_ptr<rocksdb::Cache> block_cache = nullptr);

// WriteOptions with the store's sync policy (WAL always written).
rocksdb::WriteOptions MakeWriteOptions(bool sync);

}  // namespace kvc::storage
