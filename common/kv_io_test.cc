#include "common/kv_io.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

namespace kvc {
namespace {

namespace fs = std::filesystem;

// Deterministic finite values in [-1, 1) of any floating dtype.
Tensor Filled(DType dtype, Shape shape, uint32_t seed) {
  Tensor f = Tensor::Empty(DType::kF32, std::move(shape));
  uint32_t x = seed * 2654435761u + 1;
  for (int64_t i = 0; i < f.numel(); ++i) {
    x = x * 1664525u + 1013904223u;
    f.data<float>()[i] = static_cast<float>(x >> 8) / static_cast<float>(1 << 23) - 1.f;
  }
  return *f.To(dtype);
}

struct CacheSpec {
  int layers = 2, kv = 2, q = 4, d = 3;
  int64_t tokens = 5;
  DType dtype = DType::kF16;
  DType q_dtype = DType::kF32;
  int window = 0;  // 0: no q_window
  int ref = 0;     // 0: no q_ref
};

KvCache MakeCache(const CacheSpec& s) {
  KvCache c;
  c.layout = {s.layers, s.kv, s.q, s.d, s.dtype, s.tokens};
  for (int l = 0; l < s.layers; ++l) {
    LayerKv x;
    x.k = Filled(s.dtype, {s.kv, s.tokens, s.d}, 10 * l + 1);
    x.v = Filled(s.dtype, {s.kv, s.tokens, s.d}, 10 * l + 2);
    if (s.window) x.q_window = Filled(s.q_dtype, {s.q, s.window, s.d}, 10 * l + 3);
    if (s.ref) x.q_ref = Filled(s.q_dtype, {s.q, s.ref, s.d}, 10 * l + 4);
    c.layers.push_back(x);
  }
  c.metadata = {{"model", "tiny-llama"}, {"tokens", "1,2,3,4,5"}, {"rope_theta", "10000"}};
  return c;
}

CompactedCache MakeCompacted(DType dtype = DType::kBF16) {
  CompactedCache c;
  c.layout = {2, 3, 6, 4, dtype, 40};
  const std::vector<std::vector<int64_t>> offsets = {{0, 2, 2, 7}, {0, 1, 4, 5}};
  for (int l = 0; l < 2; ++l) {
    CompactedLayer x;
    x.offsets = offsets[l];
    x.k = Filled(dtype, {x.total(), 4}, 20 + l);
    x.v = Filled(dtype, {x.total(), 4}, 30 + l);
    x.beta = Filled(DType::kF32, {x.total()}, 40 + l);
    c.layers.push_back(x);
  }
  c.layers[0].beta.data<float>()[1] = -std::numeric_limits<float>::infinity();
  c.metadata = {{"method", "am"}, {"spec", "{\"ratio\":10}"}, {"fidelity", "cos=0.99"}};
  return c;
}

bool SameBytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         (a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
}

bool Inside(const Tensor& t, const std::vector<uint8_t>& buf) {
  const auto* p = static_cast<const uint8_t*>(t.raw());
  return p >= buf.data() && p + t.nbytes() <= buf.data() + buf.size() &&
         reinterpret_cast<uintptr_t>(p) % DTypeSize(t.dtype()) == 0;
}

void ExpectSameCache(const KvCache& a, const KvCache& b) {
  EXPECT_EQ(a.layout, b.layout);
  EXPECT_EQ(a.metadata, b.metadata);
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    EXPECT_TRUE(SameBytes(a.layers[l].k, b.layers[l].k)) << l;
    EXPECT_TRUE(SameBytes(a.layers[l].v, b.layers[l].v)) << l;
    ASSERT_EQ(a.layers[l].q_window.has_value(), b.layers[l].q_window.has_value());
    ASSERT_EQ(a.layers[l].q_ref.has_value(), b.layers[l].q_ref.has_value());
    if (a.layers[l].q_window) {
      EXPECT_TRUE(SameBytes(*a.layers[l].q_window, *b.layers[l].q_window));
    }
    if (a.layers[l].q_ref) {
      EXPECT_TRUE(SameBytes(*a.layers[l].q_ref, *b.layers[l].q_ref));
    }
  }
}

std::string TempPath(const std::string& name) {
  static int counter = 0;
  return (fs::path(::testing::TempDir()) /
          ("kvc_io_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" + name))
      .string();
}

TEST(KvIoTest, KvCacheFileRoundTrips) {
  CacheSpec both;
  both.window = 2;
  both.ref = 3;
  CacheSpec none;
  none.dtype = DType::kF32;
  CacheSpec ref_only;
  ref_only.dtype = DType::kBF16;
  ref_only.q_dtype = DType::kBF16;
  ref_only.ref = 4;
  ref_only.layers = 3;
  for (const CacheSpec& spec : {both, none, ref_only}) {
    const KvCache cache = MakeCache(spec);
    const std::string path = TempPath("kv.safetensors");
    ASSERT_TRUE(SaveKvCache(path, cache).ok());
    KvLoadOptions mapped;
    mapped.open.mmap_threshold_bytes = 0;
    for (const KvLoadOptions& opt : {KvLoadOptions{}, mapped}) {
      Result<KvCache> back = LoadKvCache(path, opt);
      ASSERT_TRUE(back.ok()) << back.status().ToString();
      ExpectSameCache(cache, *back);
    }
    fs::remove(path);
  }
}

TEST(KvIoTest, LoadingDoesNotCopyTensorData) {
  CacheSpec spec;  // F16 K/V with odd head_dim and F32 queries: alignment needs the ordering
  spec.window = 3;
  spec.ref = 1;
  const KvCache cache = MakeCache(spec);
  Result<std::vector<uint8_t>> bytes = EncodeKvCache(cache);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  Result<SafetensorsReader> file = SafetensorsReader::Parse(*bytes, nullptr);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->metadata().at("format"), kKvCacheFormat);
  Result<KvCache> back = KvCacheFromSafetensors(*file);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSameCache(cache, *back);
  for (const LayerKv& x : back->layers) {
    EXPECT_TRUE(Inside(x.k, *bytes));
    EXPECT_TRUE(Inside(x.v, *bytes));
    EXPECT_TRUE(Inside(*x.q_window, *bytes));
    EXPECT_TRUE(Inside(*x.q_ref, *bytes));
  }
}

TEST(KvIoTest, CompactedCacheRoundTrips) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    const CompactedCache cache = MakeCompacted(dtype);
    const std::string path = TempPath("c.safetensors");
    ASSERT_TRUE(SaveCompactedCache(path, cache).ok());
    Result<CompactedCache> back = LoadCompactedCache(path);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(back->layout, cache.layout);
    EXPECT_EQ(back->metadata, cache.metadata);
    ASSERT_EQ(back->layers.size(), 2u);
    for (int l = 0; l < 2; ++l) {
      EXPECT_EQ(back->layers[l].offsets, cache.layers[l].offsets);
      EXPECT_TRUE(SameBytes(back->layers[l].k, cache.layers[l].k));
      EXPECT_TRUE(SameBytes(back->layers[l].v, cache.layers[l].v));
      EXPECT_TRUE(SameBytes(back->layers[l].beta, cache.layers[l].beta));
    }
    EXPECT_EQ(back->layers[0].budget(1), 0);
    fs::remove(path);
  }
  Result<std::vector<uint8_t>> bytes = EncodeCompactedCache(MakeCompacted());
  ASSERT_TRUE(bytes.ok());
  Result<SafetensorsReader> file = SafetensorsReader::Parse(*bytes, nullptr);
  ASSERT_TRUE(file.ok());
  Result<CompactedCache> back = CompactedCacheFromSafetensors(*file);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(Inside(back->layers[1].k, *bytes));
  EXPECT_TRUE(Inside(back->layers[1].beta, *bytes));
  EXPECT_EQ(file->metadata().at("source_tokens"), "40");
}

TEST(KvIoTest, SaveRejectsInvalidCachesAndWritesNothing) {
  KvCache bad = MakeCache({});
  bad.layers[1].v = Tensor::Zeros(DType::kF16, {2, 4, 3});
  const std::string path = TempPath("bad.safetensors");
  Status s = SaveKvCache(path, bad);
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("layers.1.v"), std::string::npos) << s.ToString();
  EXPECT_FALSE(fs::exists(path));

  KvCache reserved = MakeCache({});
  reserved.metadata["n_q_heads"] = "8";
  s = SaveKvCache(path, reserved);
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("n_q_heads"), std::string::npos) << s.ToString();
  reserved.metadata["n_q_heads"] = "4";  // agrees with the layout: accepted, stripped on load
  ASSERT_TRUE(SaveKvCache(path, reserved).ok());
  EXPECT_EQ(LoadKvCache(path)->metadata, MakeCache({}).metadata);
  fs::remove(path);

  CompactedCache cbad = MakeCompacted();
  cbad.layers[0].beta.data<float>()[0] = std::nanf("");
  EXPECT_TRUE(EncodeCompactedCache(cbad).status().IsInvalidArgument());
}

// ---- malformed files ---------------------------------------------------------------------------

// The tensors of a valid dump, by name, for tests to edit before encoding.
struct Dump {
  std::vector<NamedTensor> tensors;
  SafetensorsMetadata metadata;

  void Erase(const std::string& name) {
    std::erase_if(tensors, [&](const NamedTensor& t) { return t.name == name; });
  }
  void Set(const std::string& name, Tensor t) {
    Erase(name);
    tensors.push_back({name, std::move(t)});
  }
};

Dump KvDump(const KvCache& c) {
  Dump d;
  for (int l = 0; l < c.layout.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    d.tensors.push_back({p + "k", c.layers[l].k});
    d.tensors.push_back({p + "v", c.layers[l].v});
    if (c.layers[l].q_window) d.tensors.push_back({p + "q_window", *c.layers[l].q_window});
    if (c.layers[l].q_ref) d.tensors.push_back({p + "q_ref", *c.layers[l].q_ref});
  }
  d.metadata = c.metadata;
  d.metadata["n_q_heads"] = std::to_string(c.layout.n_q_heads);
  return d;
}

Tensor I64(std::vector<int64_t> v) {
  Tensor t = Tensor::Empty(DType::kI64, {static_cast<int64_t>(v.size())});
  std::copy(v.begin(), v.end(), t.data<int64_t>());
  return t;
}

Dump CompactedDump(const CompactedCache& c) {
  Dump d;
  for (int l = 0; l < c.layout.n_layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    d.tensors.push_back({p + "k", c.layers[l].k});
    d.tensors.push_back({p + "v", c.layers[l].v});
    d.tensors.push_back({p + "beta", c.layers[l].beta});
    d.tensors.push_back({p + "offsets", I64(c.layers[l].offsets)});
  }
  d.metadata = c.metadata;
  d.metadata["n_q_heads"] = std::to_string(c.layout.n_q_heads);
  d.metadata["source_tokens"] = std::to_string(c.layout.tokens);
  return d;
}

Result<SafetensorsReader> Encode(const Dump& d) {
  Result<std::vector<uint8_t>> bytes = EncodeSafetensors(d.tensors, d.metadata);
  if (!bytes.ok()) return bytes.status();
  return SafetensorsReader::ParseCopy(*bytes, "dump");
}

Status LoadKv(const Dump& d, bool check_finite = true) {
  Result<SafetensorsReader> file = Encode(d);
  if (!file.ok()) return file.status();
  KvLoadOptions opt;
  opt.check_finite = check_finite;
  return KvCacheFromSafetensors(*file, opt).status();
}

Status LoadCompacted(const Dump& d) {
  Result<SafetensorsReader> file = Encode(d);
  if (!file.ok()) return file.status();
  return CompactedCacheFromSafetensors(*file).status();
}

#define EXPECT_INVALID(status, needle)                                                     \
  do {                                                                                     \
    const Status s_ = (status);                                                            \
    EXPECT_TRUE(s_.IsInvalidArgument()) << s_.ToString();                                  \
    EXPECT_NE(s_.message().find(needle), std::string::npos) << s_.ToString();              \
    EXPECT_EQ(s_.message().rfind("dump", 0), 0u) << "names the source: " << s_.ToString(); \
  } while (0)

TEST(KvIoTest, ExternalDumpWithoutOurMetadataLoads) {
  CacheSpec spec;
  spec.ref = 2;
  const KvCache cache = MakeCache(spec);
  Dump d = KvDump(cache);
  d.metadata.erase("n_q_heads");  // inferred from q_ref; n_layers from the names
  Result<SafetensorsReader> file = Encode(d);
  ASSERT_TRUE(file.ok());
  Result<KvCache> back = KvCacheFromSafetensors(*file);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSameCache(cache, *back);
}

TEST(KvIoTest, KvCacheMissingOrUnexpectedTensors) {
  const KvCache cache = MakeCache({.layers = 3, .ref = 2});
  Dump missing_v = KvDump(cache);
  missing_v.Erase("layers.1.v");
  EXPECT_INVALID(LoadKv(missing_v), "missing tensor 'layers.1.v'");

  Dump gap = KvDump(cache);
  gap.Erase("layers.1.k");
  gap.Erase("layers.1.v");
  gap.Erase("layers.1.q_ref");
  EXPECT_INVALID(LoadKv(gap), "missing tensor 'layers.1.k'");

  Dump short_file = KvDump(cache);
  short_file.metadata["n_layers"] = "4";
  EXPECT_INVALID(LoadKv(short_file), "missing tensor 'layers.3.k'");

  Dump beyond = KvDump(cache);
  beyond.metadata["n_layers"] = "2";
  EXPECT_INVALID(LoadKv(beyond), "tensors of layer 2");

  for (const char* name : {"layers.0.x", "embeddings", "layers.01.k", "layers.-1.k", "layers.0",
                           "layers.99999.k", "layers..k"}) {
    Dump extra = KvDump(cache);
    extra.Set(name, Filled(DType::kF32, {1}, 1));
    EXPECT_INVALID(LoadKv(extra), "unexpected tensor '" + std::string(name) + "'");
  }

  Dump partial_q = KvDump(cache);
  partial_q.Erase("layers.2.q_ref");
  EXPECT_INVALID(LoadKv(partial_q), "layers.2.q_ref: present in some layers only");

  Dump empty;
  empty.metadata["n_q_heads"] = "4";
  EXPECT_INVALID(LoadKv(empty), "no layers");
}

TEST(KvIoTest, KvCacheInconsistentShapesAndMetadata) {
  const KvCache cache = MakeCache({.layers = 2, .window = 2});
  Dump t_mismatch = KvDump(cache);
  t_mismatch.Set("layers.1.k", Filled(DType::kF16, {2, 6, 3}, 1));
  EXPECT_INVALID(LoadKv(t_mismatch), "layers.1.k: shape [2, 6, 3], expected [2, 5, 3]");

  Dump dtype_mismatch = KvDump(cache);
  dtype_mismatch.Set("layers.0.v", Filled(DType::kF32, {2, 5, 3}, 1));
  EXPECT_INVALID(LoadKv(dtype_mismatch), "layers.0.v: dtype F32, expected F16");

  Dump rank = KvDump(cache);
  rank.Set("layers.0.k", Filled(DType::kF16, {10, 3}, 1));
  EXPECT_INVALID(LoadKv(rank), "layers.0.k: shape [10, 3] has rank 2");

  Dump int_kv = KvDump(cache);
  int_kv.Set("layers.0.k", *I64(std::vector<int64_t>(30, 1)).Reshape({2, 5, 3}));
  EXPECT_INVALID(LoadKv(int_kv), "dtype must be F32, F16 or BF16");

  Dump q_heads = KvDump(cache);
  q_heads.metadata["n_q_heads"] = "8";
  EXPECT_INVALID(LoadKv(q_heads), "metadata 'n_q_heads' = 8 but layers.0.q_window has 4 heads");

  Dump q_text = KvDump(cache);
  q_text.metadata["n_q_heads"] = "4x";
  EXPECT_INVALID(LoadKv(q_text), "'n_q_heads' must be a decimal integer, got '4x'");

  Dump gqa = KvDump(MakeCache({}));
  gqa.metadata["n_q_heads"] = "3";
  EXPECT_INVALID(LoadKv(gqa), "multiple of n_kv_heads");

  Dump no_q_heads = KvDump(MakeCache({}));
  no_q_heads.metadata.erase("n_q_heads");
  EXPECT_INVALID(LoadKv(no_q_heads), "'n_q_heads' is required");

  Dump bad_layers = KvDump(cache);
  bad_layers.metadata["n_layers"] = "0";
  EXPECT_INVALID(LoadKv(bad_layers), "'n_layers' = 0 is outside");

  Dump nan = KvDump(cache);
  Tensor k = Filled(DType::kF16, {2, 5, 3}, 7);
  k.data<uint16_t>()[4] = 0x7e00;  // f16 NaN
  nan.Set("layers.1.k", k);
  EXPECT_INVALID(LoadKv(nan), "non-finite");
  EXPECT_TRUE(LoadKv(nan, /*check_finite=*/false).ok());
}

TEST(KvIoTest, FormatMarkerIsChecked) {
  Dump compacted = CompactedDump(MakeCompacted());
  compacted.metadata["format"] = kCompactedCacheFormat;
  EXPECT_INVALID(LoadKv(compacted), "load it with LoadCompactedCache");

  Dump kv = KvDump(MakeCache({}));
  kv.metadata["format"] = kKvCacheFormat;
  EXPECT_INVALID(LoadCompacted(kv), "load it with LoadKvCache");

  kv.metadata["format"] = "kvcompact.kv_cache.v9";
  Status s = LoadKv(kv);
  EXPECT_TRUE(s.IsNotSupported()) << s.ToString();

  kv.metadata["format"] = "something-else";
  EXPECT_INVALID(LoadKv(kv), "metadata 'format' is 'something-else'");
}

TEST(KvIoTest, CompactedMissingAndInconsistent) {
  const CompactedCache cache = MakeCompacted();
  Dump no_beta = CompactedDump(cache);
  no_beta.Erase("layers.1.beta");
  EXPECT_INVALID(LoadCompacted(no_beta), "missing tensor 'layers.1.beta'");

  Dump no_offsets = CompactedDump(cache);
  no_offsets.Erase("layers.0.offsets");
  EXPECT_INVALID(LoadCompacted(no_offsets), "missing tensor 'layers.0.offsets'");

  Dump no_tokens = CompactedDump(cache);
  no_tokens.metadata.erase("source_tokens");
  EXPECT_INVALID(LoadCompacted(no_tokens), "missing metadata 'source_tokens'");

  Dump no_q = CompactedDump(cache);
  no_q.metadata.erase("n_q_heads");
  EXPECT_INVALID(LoadCompacted(no_q), "missing metadata 'n_q_heads'");

  Dump i32_offsets = CompactedDump(cache);
  Tensor o32 = Tensor::Zeros(DType::kI32, {4});
  i32_offsets.Set("layers.0.offsets", o32);
  EXPECT_INVALID(LoadCompacted(i32_offsets), "layers.0.offsets: dtype I32, expected I64");

  Dump nonzero = CompactedDump(cache);
  nonzero.Set("layers.1.offsets", I64({1, 2, 4, 5}));
  EXPECT_INVALID(LoadCompacted(nonzero), "first entry is 1, expected 0");

  Dump decreasing = CompactedDump(cache);
  decreasing.Set("layers.1.offsets", I64({0, 5, std::numeric_limits<int64_t>::min(), 5}));
  EXPECT_INVALID(LoadCompacted(decreasing), "entries decrease at index 2");

  Dump heads = CompactedDump(cache);
  heads.Set("layers.1.offsets", I64({0, 5}));
  EXPECT_INVALID(LoadCompacted(heads), "layers.1.offsets: expected n_kv_heads+1 entries");

  Dump rows = CompactedDump(cache);
  rows.Set("layers.1.offsets", I64({0, 1, 4, 6}));
  EXPECT_INVALID(LoadCompacted(rows), "layers.1.k: shape [5, 4], expected [6, 4]");

  Dump over_budget = CompactedDump(cache);
  over_budget.metadata["source_tokens"] = "3";
  EXPECT_INVALID(LoadCompacted(over_budget), "outside [0, T]");

  Dump beta16 = CompactedDump(cache);
  beta16.Set("layers.0.beta", Filled(DType::kF16, {7}, 3));
  EXPECT_INVALID(LoadCompacted(beta16), "layers.0.beta: expected F32");

  Dump query = CompactedDump(cache);
  query.Set("layers.0.q_ref", Filled(DType::kF32, {6, 1, 4}, 3));
  EXPECT_INVALID(LoadCompacted(query), "unexpected tensor 'layers.0.q_ref'");

  Dump k_rank = CompactedDump(cache);
  k_rank.Set("layers.0.k", Filled(DType::kBF16, {7, 2, 2}, 3));
  EXPECT_INVALID(LoadCompacted(k_rank), "layers.0.k: shape [7, 2, 2] has rank 3");
}

// Files written by tests/fuzz/make_corpus.py, a separate Python implementation of the format.
TEST(KvIoTest, ReadsFilesFromAnIndependentWriter) {
  const fs::path dir = fs::path(KVC_SOURCE_ROOT) / "tests/fuzz/corpus/safetensors_fuzz";
  Result<KvCache> kv = LoadKvCache((dir / "kv_dump.safetensors").string());
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  EXPECT_EQ(kv->layout, (KvLayout{2, 1, 2, 2, DType::kF32, 3}));
  EXPECT_EQ(kv->metadata.at("model"), "tiny");
  EXPECT_EQ(kv->layers[1].v.data<float>()[5], -1.25f);
  EXPECT_TRUE(kv->has_q_ref());

  Result<CompactedCache> c = LoadCompactedCache((dir / "compacted.safetensors").string());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->layout, (KvLayout{2, 2, 4, 2, DType::kF32, 8}));
  EXPECT_EQ(c->layers[1].offsets, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(c->layers[0].beta.data<float>()[1], -1.5f);
  EXPECT_EQ(c->metadata.at("method"), "am");

  Result<SafetensorsReader> all =
      SafetensorsReader::Open((dir / "every_dtype.safetensors").string());
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  EXPECT_EQ(all->names(), (std::vector<std::string>{"a", "b", "c", "d", "e", "f"}));
  EXPECT_EQ(all->Get("b")->data<int64_t>()[0], -7);
  EXPECT_EQ(all->Get("c")->GetFloat(1), -2.f);
  EXPECT_EQ(all->Get("d")->GetFloat(0), 1.f);
  EXPECT_EQ(all->Get("e")->data<int32_t>()[0], 42);
  EXPECT_EQ(all->Get("f")->shape(), (Shape{0, 4}));
  EXPECT_EQ(all->metadata().at("note"), "seed");
  for (const char* bad : {"truncated", "short", "bad_json", "overlap"}) {
    EXPECT_TRUE(SafetensorsReader::Open((dir / (std::string(bad) + ".safetensors")).string())
                    .status()
                    .IsCorruption())
        << bad;
  }
  EXPECT_TRUE(SafetensorsReader::Open((dir / "unknown_dtype.safetensors").string())
                  .status()
                  .IsNotSupported());
}

TEST(KvIoTest, FileErrorsPassThrough) {
  EXPECT_TRUE(LoadKvCache(TempPath("absent")).status().IsNotFound());
  EXPECT_TRUE(LoadCompactedCache(TempPath("absent")).status().IsNotFound());
  const std::string path = TempPath("garbage");
  ASSERT_TRUE(SaveKvCache(path, MakeCache({})).ok());
  fs::resize_file(path, fs::file_size(path) - 1);
  Status s = LoadKvCache(path).status();
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  fs::remove(path);
}

}  // namespace
}  // namespace kvc
