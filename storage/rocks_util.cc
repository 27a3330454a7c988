#include "storage/rocks_util.h"

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>

#include <algorithm>

namespace kvc::storage {

Status FromRocks(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return Status::OK();
  std::string msg(context);
  msg += ": ";
  msg += s.ToString();
  switch (s.code()) {
    case rocksdb::Status::kNotFound:
    case rocksdb::Status::kExpired:
      return Status::NotFound(msg);
    case rocksdb::Status::kCorruption:
      return Status::Corruption(msg);
    case rocksdb::Status::kNotSupported:
      return Status::NotSupported(msg);
    case rocksdb::Status::kInvalidArgument:
      return Status::InvalidArgument(msg);
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTryAgain:
      return Status::Unavailable(msg);
    case rocksdb::Status::kTimedOut:
      return Status::DeadlineExceeded(msg);
    case rocksdb::Status::kShutdownInProgress:
    case rocksdb::Status::kAborted:
      return Status::Cancelled(msg);
    case rocksdb::Status::kColumnFamilyDropped:
      return Status::FailedPrecondition(msg);
    case rocksdb::Status::kIncomplete:
    case rocksdb::Status::kMergeInProgress:
      return Status::Internal(msg);
    default:
      if (s.IsNoSpace() || s.IsMemoryLimit()) return Status::ResourceExhausted(msg);
      return Status::IOError(msg);
  }
}

rocksdb::CompressionType ToRocksCompression(Compression c) {
  switch (c) {
    case Compression::kLz4:
      return rocksdb::kLZ4Compression;
    case Compression::kZstd:
      return rocksdb::kZSTD;
    case Compression::kNone:
      break;
  }
  return rocksdb::kNoCompression;
}

rocksdb::DBOptions MakeDbOptions(const RocksTierOptions& options, bool create_if_missing) {
  rocksdb::DBOptions db;
  db.create_if_missing = create_if_missing;
  db.create_missing_column_families = true;
  db.max_background_jobs = std::max(1, options.max_background_jobs);
  // Large tensors pass through the WAL; cap it so old logs are flushed away instead of growing.
  db.max_total_wal_size = 4 * options.write_buffer_size;
  db.bytes_per_sync = 1 << 20;
  db.keep_log_file_num = 4;
  return db;
}

std::vector<rocksdb::ColumnFamilyDescriptor> MakeColumnFamilies(
    const RocksTierOptions& options, std::shared_ptr<rocksdb::Cache> block_cache) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache =
      block_cache ? std::move(block_cache) : rocksdb::NewLRUCache(options.block_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;

  rocksdb::ColumnFamilyOptions base;
  base.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  base.compression = ToRocksCompression(options.compression);
  base.bottommost_compression = ToRocksCompression(options.compression);
  base.level_compaction_dynamic_level_bytes = true;

  rocksdb::ColumnFamilyOptions blobs = base;
  blobs.enable_blob_files = options.enable_blob_files;
  blobs.min_blob_size = options.min_blob_size;
  blobs.blob_file_size = options.blob_file_size;
  blobs.blob_compression_type = ToRocksCompression(options.blob_compression);
  blobs.enable_blob_garbage_collection = options.enable_blob_gc;
  blobs.blob_garbage_collection_age_cutoff = options.blob_gc_age_cutoff;
  blobs.write_buffer_size = options.write_buffer_size;

  return {{rocksdb::kDefaultColumnFamilyName, base},
          {kManifestsCf, base},
          {kBlobsCf, blobs},
          {kByTimeCf, base}};
}

rocksdb::WriteOptions MakeWriteOptions(bool sync) {
  rocksdb::WriteOptions w;
  w.sync = sync;
  w.disableWAL = false;
  return w;
}

}  // namespace kvc::storage
