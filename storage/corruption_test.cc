// Damaged files: bytes flipped in the warm tier's blob files and SST files (found by listing the
// database directory) are reported as Corruption or as a missing entry — never returned as data.
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "storage/rocks_util.h"
#include "storage/testing.h"
#include "storage/tiered_store.h"

namespace kvc::storage {
namespace {

namespace fs = std::filesystem;
using testing::KeyFor;

constexpr int kEntries = 24;

CompactedCache Entry(uint64_t i) {
  testing::CacheShape shape;
  shape.n_layers = 3;
  shape.head_dim = 64;
  shape.tokens = 512;
  shape.fixed_budget = 40 + static_cast<int64_t>(i);  // tensors of 10-16 KB: blob files
  return testing::MakeCache(i, shape);
}

class CorruptionTest : public ::testing::Test {
 protected:
  TieredStoreOptions Options() {
    TieredStoreOptions o;
    o.warm.path = dir_.Sub("warm");
    o.sync = true;
    o.maintenance_interval = std::chrono::milliseconds(0);
    return o;
  }

  // Puts the entries, then flushes every column family so all bytes live in SST and blob files
  // (none only in the write-ahead log).
  void Populate() {
    {
      auto store = TieredStore::Open(Options()).value();
      for (int i = 0; i < kEntries; ++i) ASSERT_TRUE(store->Put(KeyFor(i), Entry(i)).ok());
    }
    const TieredStoreOptions o = Options();
    rocksdb::DB* db = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    ASSERT_TRUE(rocksdb::DB::Open(MakeDbOptions(o.warm, false), o.warm.path,
                                  MakeColumnFamilies(o.warm), &handles, &db)
                    .ok());
    ASSERT_TRUE(db->Flush(rocksdb::FlushOptions(), handles).ok());
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    delete db;
  }

  std::vector<fs::path> FilesEndingIn(const std::string& ext) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(Options().warm.path)) {
      if (e.path().extension() == ext) out.push_back(e.path());
    }
    return out;
  }

  // XORs bytes at `count` random offsets inside [begin, end) of the file's length.
  void Flip(const fs::path& file, double begin, double end, int count, std::mt19937_64* rng) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good()) << file;
    const auto size = static_cast<uint64_t>(fs::file_size(file));
    const uint64_t lo = static_cast<uint64_t>(size * begin);
    const uint64_t hi = static_cast<uint64_t>(size * end);
    ASSERT_LT(lo, hi);
    for (int i = 0; i < count; ++i) {
      const uint64_t at = lo + (*rng)() % (hi - lo);
      char c;
      f.seekg(static_cast<std::streamoff>(at));
      f.read(&c, 1);
      c = static_cast<char>(c ^ (1 + (*rng)() % 255));
      f.seekp(static_cast<std::streamoff>(at));
      f.write(&c, 1);
    }
  }

  // Reads every entry: each is intact, Corruption (and then gone), or missing. Returns how
  // many were reported as Corruption.
  int ReadAll(TieredStore& store) {
    int corrupt = 0;
    for (int i = 0; i < kEntries; ++i) {
      Result<CompactedCache> got = store.Get(KeyFor(i));
      if (got.ok()) {
        std::string why;
        EXPECT_TRUE(testing::SameCache(Entry(i), *got, &why)) << "entry " << i << ": " << why;
      } else if (got.status().IsCorruption()) {
        ++corrupt;
        EXPECT_FALSE(store.Get(KeyFor(i)).ok()) << "entry " << i << " came back after Corruption";
      } else {
        EXPECT_TRUE(got.status().IsNotFound()) << got.status().ToString();
      }
    }
    return corrupt;
  }

  testing::TempDir dir_{"kvc-corrupt"};
};

TEST_F(CorruptionTest, FlippedBlobFileBytesAreCorruption) {
  Populate();
  const std::vector<fs::path> blobs = FilesEndingIn(".blob");
  ASSERT_FALSE(blobs.empty()) << "no blob files: BlobDB is not in use";
  std::mt19937_64 rng(1);
  // Stay clear of the blob file header and footer: flip bytes of records.
  for (const fs::path& f : blobs) Flip(f, 0.1, 0.9, 3, &rng);
  auto store = TieredStore::Open(Options()).value();
  const int corrupt = ReadAll(*store);
  EXPECT_GT(corrupt, 0);
  EXPECT_EQ(store->Stats().warm.corruptions, static_cast<uint64_t>(corrupt));
  EXPECT_EQ(store->Stats().warm.entries, static_cast<uint64_t>(kEntries - corrupt));
  // A second pass finds the survivors intact and nothing more to report.
  EXPECT_EQ(ReadAll(*store), 0);
}

TEST_F(CorruptionTest, FlippedSstBytesAreNeverReturnedAsData) {
  Populate();
  const std::vector<fs::path> ssts = FilesEndingIn(".sst");
  ASSERT_FALSE(ssts.empty());
  std::mt19937_64 rng(2);
  // Data blocks come first in an SST; flip there (index and footer damage fails Open instead).
  for (const fs::path& f : ssts) Flip(f, 0.0, 0.3, 2, &rng);
  Result<std::unique_ptr<TieredStore>> store = TieredStore::Open(Options());
  if (!store.ok()) {
    // Damage that RocksDB notices while opening is reported, never ignored.
    EXPECT_TRUE(store.status().IsCorruption()) << store.status().ToString();
    return;
  }
  const int corrupt = ReadAll(**store);
  EXPECT_GT(corrupt + static_cast<int>((*store)->Stats().warm.corruptions), 0);
}

}  // namespace
}  // namespace kvc::storage
