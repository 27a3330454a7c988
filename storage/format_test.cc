#include "storage/format.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <random>

#include "storage/coding.h"
#include "storage/testing.h"

namespace kvc::storage {
namespace {

using testing::CacheShape;
using testing::MakeCache;
using testing::SameCache;

std::vector<BlobRef> RefsOf(const EncodedEntry& e) {
  std::vector<BlobRef> refs;
  for (std::string_view b : e.blobs) refs.push_back({b.data(), b.size(), nullptr});
  return refs;
}

EncodedEntry MustEncode(const CompactedCache& cache, const EntryExtras& extras = {}) {
  Result<EncodedEntry> e = EncodeEntry(cache, extras, 1234567);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return std::move(e).value();
}

// Re-seals a manifest whose bytes were edited: recomputes the trailing checksum.
std::string Reseal(std::string bytes) {
  bytes.resize(bytes.size() - 8);
  PutFixed64(&bytes, Checksum64(bytes.data(), bytes.size()));
  return bytes;
}

TEST(FormatTest, RoundTripKeepsEverything) {
  for (DType dtype : {DType::kF16, DType::kBF16, DType::kF32}) {
    CacheShape shape;
    shape.dtype = dtype;
    shape.n_layers = 3;
    shape.n_kv_heads = 4;
    const CompactedCache cache = MakeCache(7, shape);
    EntryExtras extras;
    extras.source_tokens = {1, 2, 3, 70000, 4000000000u};
    extras.attributes = {{"tenant", "t1"}, {"model", "qwen"}};
    const EncodedEntry e = MustEncode(cache, extras);
    EXPECT_EQ(e.payload_bytes, testing::PayloadBytes(cache));
    Result<Manifest> m = DecodeManifest(e.manifest);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(m->format_version, kManifestFormatVersion);
    EXPECT_EQ(m->created_at_micros, 1234567);
    EXPECT_EQ(m->extras, extras);
    EXPECT_EQ(m->metadata, cache.metadata);
    EXPECT_EQ(m->tensors.size(), 9u);
    EXPECT_EQ(m->tensors[2].name, "layers.0.beta");
    EXPECT_EQ(m->payload_bytes(), e.payload_bytes);
    Result<CompactedCache> back = AssembleCache(*m, RefsOf(e));
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    std::string why;
    EXPECT_TRUE(SameCache(cache, *back, &why)) << why;
    EXPECT_TRUE(back->Validate().ok());
  }
}

TEST(FormatTest, RaggedBudgetsWithEmptyHeadsAndLayers) {
  CompactedCache cache = MakeCache(3, CacheShape{});
  // Layer 1 keeps nothing at all; layer 0 has an empty middle head.
  CompactedLayer& empty = cache.layers[1];
  empty.offsets = {0, 0, 0};
  empty.k = Tensor::Empty(cache.layout.dtype, {0, cache.layout.head_dim});
  empty.v = Tensor::Empty(cache.layout.dtype, {0, cache.layout.head_dim});
  empty.beta = Tensor::Empty(DType::kF32, {0});
  CacheShape wide;
  wide.n_kv_heads = 3;
  wide.n_q_heads = 6;
  CompactedCache ragged = MakeCache(11, wide);
  ragged.layers[0] = MakeCache(12, wide).layers[0];
  for (const CompactedCache* c : {&cache, &ragged}) {
    const EncodedEntry e = MustEncode(*c);
    Result<Manifest> m = DecodeManifest(e.manifest);
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    Result<CompactedCache> back = AssembleCache(*m, RefsOf(e));
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_TRUE(SameCache(*c, *back));
  }
}

TEST(FormatTest, UnknownVersionIsNotSupported) {
  std::string bytes = MustEncode(MakeCache(1, CacheShape{})).manifest;
  for (uint32_t v : {0u, 2u, 0xffffffffu}) {
    std::string edited = bytes;
    std::memcpy(edited.data(), &v, 4);
    EXPECT_TRUE(DecodeManifest(Reseal(edited)).status().IsNotSupported()) << v;
  }
}

TEST(FormatTest, EveryTruncationIsCorruption) {
  const std::string bytes = MustEncode(MakeCache(2, CacheShape{})).manifest;
  for (size_t n = 0; n < bytes.size(); ++n) {
    Result<Manifest> m = DecodeManifest(std::string_view(bytes).substr(0, n));
    EXPECT_TRUE(m.status().IsCorruption()) << "length " << n << ": " << m.status().ToString();
  }
  EXPECT_TRUE(DecodeManifest(bytes + "x").status().IsCorruption());
}

TEST(FormatTest, EveryBitFlipIsDetected) {
  const std::string bytes = MustEncode(MakeCache(4, CacheShape{})).manifest;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string edited = bytes;
      edited[i] = static_cast<char>(edited[i] ^ (1 << bit));
      Result<Manifest> m = DecodeManifest(edited);
      ASSERT_FALSE(m.ok()) << "flip at " << i << " bit " << bit;
      // Flips in the version word read as another version; everything else is corruption.
      if (i >= 4) {
        ASSERT_TRUE(m.status().IsCorruption()) << m.status().ToString();
      }
    }
  }
}

TEST(FormatTest, BadBlobIsCorruption) {
  const CompactedCache cache = MakeCache(5, CacheShape{});
  const EncodedEntry e = MustEncode(cache);
  Result<Manifest> m = DecodeManifest(e.manifest);
  ASSERT_TRUE(m.ok());
  for (size_t t = 0; t < e.blobs.size(); ++t) {
    if (e.blobs[t].empty()) continue;
    std::string flipped(e.blobs[t]);
    flipped[flipped.size() / 2] ^= 0x10;
    std::vector<BlobRef> refs = RefsOf(e);
    refs[t] = {flipped.data(), flipped.size(), nullptr};
    EXPECT_TRUE(AssembleCache(*m, refs).status().IsCorruption()) << t;
    refs[t] = {e.blobs[t].data(), e.blobs[t].size() - 1, nullptr};
    EXPECT_TRUE(AssembleCache(*m, refs).status().IsCorruption()) << t;
  }
  std::vector<BlobRef> refs = RefsOf(e);
  refs.pop_back();
  EXPECT_TRUE(AssembleCache(*m, refs).status().IsInvalidArgument());
}

// Manifests with a valid checksum whose content contradicts itself.
TEST(FormatTest, InconsistentManifestIsCorruption) {
  const EncodedEntry e = MustEncode(MakeCache(6, CacheShape{}));
  const Manifest good = DecodeManifest(e.manifest).value();
  std::vector<std::function<void(Manifest*)>> edits = {
      [](Manifest* m) { m->tensors[0].shape[0] += 1; },
      [](Manifest* m) { m->tensors[1].nbytes += 2; },
      [](Manifest* m) { m->tensors[2].dtype = DType::kF16; },
      [](Manifest* m) { m->tensors[3].name = "layers.9.k"; },
      [](Manifest* m) { m->tensors.pop_back(); },
      [](Manifest* m) { m->offsets[0][1] = m->offsets[0][2] + 1; },  // decreasing
      [](Manifest* m) { m->offsets[0][0] = 1; },
      [](Manifest* m) { m->offsets.pop_back(); },
      [](Manifest* m) { m->layout.tokens = 1; },  // budgets exceed T
      [](Manifest* m) { m->layout.n_q_heads = 3; },
      [](Manifest* m) { m->layout.n_layers = 0; },
      [](Manifest* m) { m->layout.dtype = DType::kI32; },
  };
  for (size_t i = 0; i < edits.size(); ++i) {
    Manifest bad = good;
    edits[i](&bad);
    Result<Manifest> m = DecodeManifest(EncodeManifest(bad));
    EXPECT_TRUE(m.status().IsCorruption()) << "edit " << i << ": " << m.status().ToString();
  }
  // Trailing bytes inside the checksummed region.
  std::string bytes = EncodeManifest(good);
  bytes.insert(bytes.size() - 8, "\x00", 1);
  EXPECT_TRUE(DecodeManifest(Reseal(bytes)).status().IsCorruption());
}

// Random edits re-sealed with a valid checksum (what the checksum alone would not catch):
// decoding never crashes, and whatever decodes and assembles is structurally valid and carries
// exactly the stored tensor bytes (each blob is verified against its own checksum).
TEST(FormatTest, MutatedManifestsNeverYieldInvalidCaches) {
  const CompactedCache cache = MakeCache(8, CacheShape{});
  const EncodedEntry e = MustEncode(cache);
  std::mt19937_64 rng(42);
  int decoded = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string edited = e.manifest;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < edits; ++k) {
      const size_t at = 4 + rng() % (edited.size() - 12);
      edited[at] = static_cast<char>(rng());
    }
    Result<Manifest> m = DecodeManifest(Reseal(edited));
    if (!m.ok()) {
      ASSERT_TRUE(m.status().IsCorruption()) << m.status().ToString();
      continue;
    }
    ++decoded;
    std::vector<BlobRef> refs = RefsOf(e);
    if (refs.size() != m->tensors.size()) continue;
    Result<CompactedCache> back = AssembleCache(*m, refs);
    if (!back.ok()) {
      ASSERT_TRUE(back.status().IsCorruption()) << back.status().ToString();
      continue;
    }
    ASSERT_TRUE(ValidateForStore(*back, false).ok());
    for (size_t l = 0; l < back->layers.size(); ++l) {
      const CompactedLayer& x = back->layers[l];
      const CompactedLayer& y = cache.layers[l];
      ASSERT_EQ(x.k.nbytes(), y.k.nbytes());
      ASSERT_EQ(std::memcmp(x.k.raw(), y.k.raw(), x.k.nbytes()), 0);
      ASSERT_EQ(std::memcmp(x.v.raw(), y.v.raw(), x.v.nbytes()), 0);
      ASSERT_EQ(std::memcmp(x.beta.raw(), y.beta.raw(), x.beta.nbytes()), 0);
    }
  }
  // Some edits only touch free-form fields (metadata bytes, times) and still decode.
  EXPECT_GT(decoded, 0);
}

TEST(FormatTest, ArbitraryBytesNeverCrash) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 20000; ++round) {
    std::string bytes(rng() % 96, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    if (bytes.size() >= 4 && round % 2 == 0) {
      const uint32_t v = kManifestFormatVersion;
      std::memcpy(bytes.data(), &v, 4);
      if (bytes.size() >= 12) bytes = Reseal(bytes);
    }
    Result<Manifest> m = DecodeManifest(bytes);
    EXPECT_FALSE(m.ok());
  }
}

TEST(FormatTest, ValidateForStoreRejectsBadCaches) {
  const CompactedCache good = MakeCache(9, CacheShape{});
  ASSERT_TRUE(ValidateForStore(good, true).ok());
  std::vector<std::function<void(CompactedCache*)>> edits = {
      [](CompactedCache* c) { c->layers.pop_back(); },
      [](CompactedCache* c) { c->layers[0].offsets.pop_back(); },
      [](CompactedCache* c) { c->layers[0].offsets[1] = -1; },
      [](CompactedCache* c) {
        c->layers[0].beta = Tensor::Empty(DType::kF16, c->layers[0].beta.shape());
      },
      [](CompactedCache* c) {
        c->layers[1].k = Tensor::Empty(c->layout.dtype, {1, c->layout.head_dim});
      },
      [](CompactedCache* c) { c->layout.head_dim = 0; },
  };
  for (size_t i = 0; i < edits.size(); ++i) {
    CompactedCache bad = good;
    edits[i](&bad);
    EXPECT_TRUE(ValidateForStore(bad, false).IsInvalidArgument()) << i;
    EXPECT_TRUE(EncodeEntry(bad, {}, 0).status().IsInvalidArgument()) << i;
  }
  // Values are checked only on request.
  CompactedCache nan = good;
  nan.layers[0] = MakeCache(9, CacheShape{}).layers[0];
  nan.layers[0].beta = nan.layers[0].beta.Clone();
  ASSERT_GT(nan.layers[0].beta.numel(), 0);
  nan.layers[0].beta.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(ValidateForStore(nan, false).ok());
  EXPECT_TRUE(ValidateForStore(nan, true).IsInvalidArgument());
}

TEST(FormatTest, AssembleViewsAlignedBlobsAndCopiesMisalignedOnes) {
  CacheShape shape;
  shape.dtype = DType::kF32;
  const CompactedCache cache = MakeCache(10, shape);
  const EncodedEntry e = MustEncode(cache);
  const Manifest m = DecodeManifest(e.manifest).value();
  // Copy the blobs into one buffer at odd offsets.
  std::string arena;
  std::vector<size_t> at;
  for (std::string_view b : e.blobs) {
    arena.push_back('#');
    at.push_back(arena.size());
    arena.append(b);
  }
  auto owner = std::make_shared<std::string>(arena);
  std::vector<BlobRef> refs;
  for (size_t i = 0; i < e.blobs.size(); ++i) {
    refs.push_back({owner->data() + at[i], e.blobs[i].size(), owner});
  }
  Result<CompactedCache> back = AssembleCache(m, refs);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(SameCache(cache, *back));
  // Aligned input is viewed, not copied.
  Result<CompactedCache> viewed = AssembleCache(m, RefsOf(e));
  ASSERT_TRUE(viewed.ok());
  EXPECT_EQ(viewed->layers[0].k.raw(), static_cast<const void*>(e.blobs[0].data()));
}

TEST(CodingTest, VarintsRoundTripAndRejectOverlong) {
  std::string buf;
  const uint64_t values[] = {0, 1, 127, 128, 300, UINT32_MAX, uint64_t{1} << 63, UINT64_MAX};
  for (uint64_t v : values) PutVarint64(&buf, v);
  Reader r(buf);
  for (uint64_t v : values) {
    uint64_t got = 0;
    ASSERT_TRUE(r.GetVarint64(&got));
    EXPECT_EQ(got, v);
  }
  EXPECT_TRUE(r.done());
  uint64_t v;
  const std::string overlong(11, '\x80');
  EXPECT_FALSE(Reader(overlong).GetVarint64(&v));
  const std::string too_big = std::string(9, '\xff') + '\x02';
  EXPECT_FALSE(Reader(too_big).GetVarint64(&v));
  uint32_t v32;
  std::string big;
  PutVarint64(&big, uint64_t{1} << 32);
  EXPECT_FALSE(Reader(big).GetVarint32(&v32));
}

}  // namespace
}  // namespace kvc::storage
