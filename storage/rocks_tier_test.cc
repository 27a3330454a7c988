#include "storage/rocks_tier.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include "storage/rocks_util.h"
#include "storage/testing.h"

namespace kvc::storage {
namespace {

using testing::CacheShape;
using testing::MakeCache;
using testing::TempDir;

struct Written {
  CompactedCache cache;
  EncodedEntry encoded;
};

Written Encode(uint64_t seed, CacheShape shape = {}) {
  Written w{MakeCache(seed, shape), {}};
  w.encoded = EncodeEntry(w.cache, {}, 100).value();
  return w;
}

Status WriteTo(RocksTier& tier, std::string_view ekey, const Written& w, int64_t arrived) {
  return tier.Write(ekey, w.encoded.manifest, w.encoded.blobs, w.encoded.payload_bytes, arrived);
}

std::unique_ptr<RocksTier> OpenTier(const std::string& path) {
  RocksTierOptions options = RocksTierOptions::Warm();
  options.path = path;
  Result<std::unique_ptr<RocksTier>> tier = RocksTier::Open("warm", options, false, true);
  EXPECT_TRUE(tier.ok()) << tier.status().ToString();
  return tier.ok() ? std::move(tier).value() : nullptr;
}

CompactedCache ReadBack(RocksTier& tier, std::string_view ekey) {
  Result<TierRecord> rec = tier.ReadRecord(ekey);
  EXPECT_TRUE(rec.ok()) << rec.status().ToString();
  Manifest m = DecodeManifest(rec->manifest).value();
  std::vector<BlobRef> blobs = tier.ReadBlobs(ekey, m).value();
  return AssembleCache(m, blobs).value();
}

TEST(RocksTierTest, WriteReadReplaceRemove) {
  TempDir dir;
  auto tier = OpenTier(dir.Sub("warm"));
  ASSERT_NE(tier, nullptr);
  const Written a = Encode(1), b = Encode(2);
  EXPECT_TRUE(tier->ReadRecord("k1").status().IsNotFound());
  ASSERT_TRUE(WriteTo(*tier, "k1", a, 10).ok());
  EXPECT_TRUE(testing::SameCache(a.cache, ReadBack(*tier, "k1")));
  const uint64_t a_bytes = kTierHeaderBytes + a.encoded.manifest.size() + a.encoded.payload_bytes;
  EXPECT_EQ(tier->entries(), 1u);
  EXPECT_EQ(tier->bytes(), a_bytes);
  ASSERT_TRUE(WriteTo(*tier, "k1", b, 20).ok());
  EXPECT_TRUE(testing::SameCache(b.cache, ReadBack(*tier, "k1")));
  EXPECT_EQ(tier->entries(), 1u);
  EXPECT_EQ(tier->bytes(), kTierHeaderBytes + b.encoded.manifest.size() + b.encoded.payload_bytes);
  std::vector<AgeIndexEntry> oldest;
  ASSERT_TRUE(tier->Oldest(10, nullptr, &oldest).ok());
  ASSERT_EQ(oldest.size(), 1u);  // the replaced write's index key is gone
  EXPECT_EQ(oldest[0].arrived_micros, 20);
  ASSERT_TRUE(tier->Remove("k1").ok());
  EXPECT_TRUE(tier->ReadRecord("k1").status().IsNotFound());
  EXPECT_TRUE(tier->Remove("k1").IsNotFound());
  EXPECT_EQ(tier->entries(), 0u);
  EXPECT_EQ(tier->bytes(), 0u);
  ASSERT_TRUE(tier->Oldest(10, nullptr, &oldest).ok());
  EXPECT_TRUE(oldest.empty());
}

TEST(RocksTierTest, ReopenRecoversCountersAndAgeOrder) {
  TempDir dir;
  uint64_t bytes = 0;
  {
    auto tier = OpenTier(dir.Sub("warm"));
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(WriteTo(*tier, "key" + std::to_string(i), Encode(i), 1000 - i * 10).ok());
    }
    bytes = tier->bytes();
  }
  auto tier = OpenTier(dir.Sub("warm"));
  EXPECT_EQ(tier->entries(), 5u);
  EXPECT_EQ(tier->bytes(), bytes);
  std::vector<AgeIndexEntry> first, rest;
  ASSERT_TRUE(tier->Oldest(2, nullptr, &first).ok());
  ASSERT_EQ(first.size(), 2u);
  EXPECT_EQ(first[0].ekey, "key4");  // oldest arrival
  EXPECT_EQ(first[1].ekey, "key3");
  ASSERT_TRUE(tier->Oldest(10, &first.back(), &rest).ok());
  ASSERT_EQ(rest.size(), 3u);
  EXPECT_EQ(rest[0].ekey, "key2");
  EXPECT_EQ(rest[2].ekey, "key0");
  std::vector<std::string> keys;
  ASSERT_TRUE(tier->ForEachKey([&](std::string_view k) { keys.emplace_back(k); }).ok());
  EXPECT_EQ(keys.size(), 5u);
}

TEST(RocksTierTest, ZeroByteTensorsHaveNoBlob) {
  TempDir dir;
  auto tier = OpenTier(dir.Sub("warm"));
  CacheShape shape;
  shape.max_budget = 0;  // every head keeps nothing
  const Written w = Encode(3, shape);
  ASSERT_EQ(w.encoded.payload_bytes, 0u);
  ASSERT_TRUE(WriteTo(*tier, "empty", w, 1).ok());
  EXPECT_TRUE(testing::SameCache(w.cache, ReadBack(*tier, "empty")));
}

TEST(RocksTierTest, MissingBlobIsCorruption) {
  TempDir dir;
  const Written w = Encode(4);
  {
    auto tier = OpenTier(dir.Sub("warm"));
    ASSERT_TRUE(WriteTo(*tier, "k", w, 1).ok());
  }
  {
    // Delete one tensor behind the tier's back.
    rocksdb::DB* db = nullptr;
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    RocksTierOptions options = RocksTierOptions::Warm();
    ASSERT_TRUE(rocksdb::DB::Open(MakeDbOptions(options, false), dir.Sub("warm"),
                                  MakeColumnFamilies(options), &handles, &db)
                    .ok());
    ASSERT_TRUE(db->Delete({}, handles[2], BlobKey("k", 0)).ok());
    // And damage another entry's record header.
    std::string rec = EncodeTierRecord(TierRecord{5, 6, 7, 0, "x"});
    rec[3] ^= 1;
    ASSERT_TRUE(db->Put({}, handles[1], "damaged", rec).ok());
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
    delete db;
  }
  auto tier = OpenTier(dir.Sub("warm"));
  EXPECT_EQ(tier->corrupt_at_open(), 1u);  // the damaged header, removed at open
  EXPECT_TRUE(tier->ReadRecord("damaged").status().IsNotFound());
  EXPECT_EQ(tier->entries(), 1u);
  Result<TierRecord> rec = tier->ReadRecord("k");
  ASSERT_TRUE(rec.ok());
  Manifest m = DecodeManifest(rec->manifest).value();
  EXPECT_TRUE(tier->ReadBlobs("k", m).status().IsCorruption());
}

TEST(TierRecordTest, HeaderIsVersionedAndChecked) {
  const TierRecord rec{123, 456, 789, 3, "manifest-bytes"};
  const std::string bytes = EncodeTierRecord(rec);
  ASSERT_EQ(bytes.size(), kTierHeaderBytes + 14);
  Result<TierRecord> back = DecodeTierRecord(bytes);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->arrived_micros, 123);
  EXPECT_EQ(back->nonce, 456u);
  EXPECT_EQ(back->entry_bytes, 789u);
  EXPECT_EQ(back->n_tensors, 3u);
  EXPECT_EQ(back->manifest, "manifest-bytes");
  for (size_t i = 1; i < kTierHeaderBytes; ++i) {
    std::string edited = bytes;
    edited[i] ^= 0x40;
    EXPECT_TRUE(DecodeTierRecord(edited).status().IsCorruption()) << i;
  }
  std::string v2 = bytes;
  v2[0] = 2;
  EXPECT_TRUE(DecodeTierRecord(v2).status().IsNotSupported());
  EXPECT_TRUE(DecodeTierRecord(bytes.substr(0, 10)).status().IsCorruption());
}

TEST(RocksUtilTest, StatusesConvertAtTheEdge) {
  EXPECT_TRUE(FromRocks(rocksdb::Status::OK(), "x").ok());
  EXPECT_TRUE(FromRocks(rocksdb::Status::NotFound(), "x").IsNotFound());
  EXPECT_TRUE(FromRocks(rocksdb::Status::Corruption("bad"), "x").IsCorruption());
  EXPECT_EQ(FromRocks(rocksdb::Status::IOError("disk"), "x").code(), Code::kIOError);
  EXPECT_EQ(FromRocks(rocksdb::Status::NoSpace("full"), "x").code(), Code::kResourceExhausted);
  EXPECT_EQ(FromRocks(rocksdb::Status::Busy(), "x").code(), Code::kUnavailable);
  EXPECT_NE(FromRocks(rocksdb::Status::Corruption("bad"), "ctx").message().find("ctx"),
            std::string::npos);
}

}  // namespace
}  // namespace kvc::storage
