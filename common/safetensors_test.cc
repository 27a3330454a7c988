#include "common/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace kvc {
namespace {

namespace fs = std::filesystem;

// Fills a tensor of any dtype with a byte pattern that differs per tensor (seed).
Tensor Pattern(DType dtype, Shape shape, uint8_t seed) {
  Tensor t = Tensor::Empty(dtype, std::move(shape));
  auto* p = static_cast<uint8_t*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(seed + 31 * i);
  return t;
}

bool SameBytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         (a.nbytes() == 0 || std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
}

// A file image: u64 length, the header text as given, then `data` bytes of zeros.
std::vector<uint8_t> Image(const std::string& header, size_t data = 0) {
  std::vector<uint8_t> out(8 + header.size() + data, 0);
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

Status ParseStatus(const std::vector<uint8_t>& bytes) {
  return SafetensorsReader::Parse(bytes, nullptr).status();
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::path(::testing::TempDir()) /
            ("kvc_st_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

std::vector<NamedTensor> EveryDtype() {
  return {{"a.f32", Pattern(DType::kF32, {2, 3}, 1)},
          {"b.f16", Pattern(DType::kF16, {5}, 2)},
          {"c.bf16", Pattern(DType::kBF16, {1, 2, 2}, 3)},
          {"d.i32", Pattern(DType::kI32, {4}, 4)},
          {"e.i64", Pattern(DType::kI64, {3, 1}, 5)}};
}

TEST(SafetensorsTest, RoundTripEveryDtypeInMemory) {
  const std::vector<NamedTensor> tensors = EveryDtype();
  const SafetensorsMetadata meta{{"model", "tiny"}, {"note", "üñí"}};
  Result<std::vector<uint8_t>> bytes = EncodeSafetensors(tensors, meta);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  // The header length makes the data buffer start at an 8-byte boundary; padding is spaces.
  uint64_t n = 0;
  std::memcpy(&n, bytes->data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
  EXPECT_EQ((*bytes)[8], '{');
  Result<SafetensorsReader> r = SafetensorsReader::ParseCopy(*bytes);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->metadata(), meta);
  ASSERT_EQ(r->size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(r->names()[i], tensors[i].name);
    Result<Tensor> t = r->Get(tensors[i].name);
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_TRUE(SameBytes(*t, tensors[i].tensor)) << tensors[i].name;
  }
  EXPECT_FALSE(r->mapped());
}

TEST(SafetensorsTest, EmptyTensorsAndScalars) {
  const std::vector<NamedTensor> tensors = {{"scalar", Pattern(DType::kF32, {}, 9)},
                                            {"empty", Tensor::Empty(DType::kF16, {0})},
                                            {"empty3d", Tensor::Empty(DType::kI64, {3, 0, 2})},
                                            {"default", Tensor()},
                                            {"tail", Pattern(DType::kBF16, {3}, 7)}};
  Result<std::vector<uint8_t>> bytes = EncodeSafetensors(tensors);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  Result<SafetensorsReader> r = SafetensorsReader::ParseCopy(*bytes);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->metadata().empty());
  for (const NamedTensor& nt : tensors) {
    Result<Tensor> t = r->Get(nt.name);
    ASSERT_TRUE(t.ok()) << nt.name;
    EXPECT_TRUE(SameBytes(*t, nt.tensor)) << nt.name;
  }
  EXPECT_EQ(r->Get("scalar")->rank(), 0);
  EXPECT_EQ(r->Get("scalar")->numel(), 1);
  EXPECT_EQ(r->Get("empty3d")->shape(), (Shape{3, 0, 2}));
}

TEST(SafetensorsTest, GetReturnsViewsAndNotFound) {
  Result<std::vector<uint8_t>> bytes = EncodeSafetensors(EveryDtype());
  ASSERT_TRUE(bytes.ok());
  auto owned = std::make_shared<std::vector<uint8_t>>(std::move(*bytes));
  Result<SafetensorsReader> r = SafetensorsReader::Parse(*owned, owned, "blob");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const SafetensorsEntry* e = r->Find("b.f16");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->dtype, DType::kF16);
  EXPECT_EQ(e->end - e->begin, 10u);
  // a.f32 sits first in the data buffer, which starts 8-aligned: no copy is made.
  Result<Tensor> a = r->Get("a.f32");
  ASSERT_TRUE(a.ok());
  const auto* base = owned->data();
  EXPECT_GE(static_cast<const uint8_t*>(a->raw()), base);
  EXPECT_LT(static_cast<const uint8_t*>(a->raw()), base + owned->size());
  // The reader shares ownership: the tensor outlives every other handle.
  owned.reset();
  Tensor keep = *a;
  r = Status::Cancelled("drop reader");
  EXPECT_EQ(keep.numel(), 6);
  EXPECT_TRUE(SameBytes(keep, EveryDtype()[0].tensor));

  Result<SafetensorsReader> r2 = SafetensorsReader::ParseCopy(*EncodeSafetensors(EveryDtype()));
  Result<Tensor> missing = r2->Get("nope");
  EXPECT_TRUE(missing.status().IsNotFound());
  EXPECT_NE(missing.status().message().find("'nope'"), std::string::npos);
  EXPECT_FALSE(r2->Contains("nope"));
  EXPECT_EQ(r2->Find("nope"), nullptr);
}

TEST(SafetensorsTest, MisalignedTensorIsCopiedCorrectly) {
  // An F16 tensor of odd length first, then an F32 tensor: the F32 starts 2 bytes past an
  // 8-byte boundary, which a zero-copy view must not expose.
  const std::vector<NamedTensor> tensors = {{"h", Pattern(DType::kF16, {3}, 1)},
                                            {"f", Pattern(DType::kF32, {4}, 2)}};
  Result<std::vector<uint8_t>> bytes = EncodeSafetensors(tensors);
  ASSERT_TRUE(bytes.ok());
  Result<SafetensorsReader> r = SafetensorsReader::ParseCopy(*bytes);
  ASSERT_TRUE(r.ok());
  Result<Tensor> f = r->Get("f");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(f->raw()) % 4, 0u);
  EXPECT_TRUE(SameBytes(*f, tensors[1].tensor));
}

TEST(SafetensorsTest, FileRoundTripReadAndMapped) {
  TempDir dir;
  const std::string path = dir.File("x.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, EveryDtype(), {{"k", "v"}}).ok());
  Result<SafetensorsReader> small = SafetensorsReader::Open(path);
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  EXPECT_FALSE(small->mapped());
  EXPECT_EQ(small->source(), path);
  EXPECT_EQ(small->metadata().at("k"), "v");
  EXPECT_TRUE(SameBytes(*small->Get("e.i64"), EveryDtype()[4].tensor));

  // Over the default 1 MiB threshold the file is mapped; tensors are writable copy-on-write.
  const std::string big_path = dir.File("big.safetensors");
  const std::vector<NamedTensor> big = {{"w", Pattern(DType::kF32, {512, 1024}, 3)},
                                        {"b", Pattern(DType::kBF16, {7}, 4)}};
  ASSERT_TRUE(WriteSafetensors(big_path, big).ok());
  ASSERT_GT(fs::file_size(big_path), uint64_t{1} << 20);
  {
    Result<SafetensorsReader> mapped = SafetensorsReader::Open(big_path);
    ASSERT_TRUE(mapped.ok()) << mapped.status().ToString();
    EXPECT_TRUE(mapped->mapped());
    Result<Tensor> w = mapped->Get("w");
    ASSERT_TRUE(w.ok());
    EXPECT_TRUE(SameBytes(*w, big[0].tensor));
    EXPECT_TRUE(SameBytes(*mapped->Get("b"), big[1].tensor));
    w->data<float>()[0] = 12345.f;  // private mapping: the file must not change
    EXPECT_EQ(w->data<float>()[0], 12345.f);
  }
  Result<SafetensorsReader> again = SafetensorsReader::Open(big_path);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(SameBytes(*again->Get("w"), big[0].tensor));

  SafetensorsOpenOptions always_map;
  always_map.mmap_threshold_bytes = 0;
  Result<SafetensorsReader> forced = SafetensorsReader::Open(path, always_map);
  ASSERT_TRUE(forced.ok());
  EXPECT_TRUE(forced->mapped());
  EXPECT_TRUE(SameBytes(*forced->Get("c.bf16"), EveryDtype()[2].tensor));
}

TEST(SafetensorsTest, AtomicWriteReplacesAndLeavesNoTemporaries) {
  TempDir dir;
  const std::string path = dir.File("a.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, EveryDtype()).ok());
  const std::vector<NamedTensor> second = {{"only", Pattern(DType::kF32, {2}, 8)}};
  ASSERT_TRUE(WriteSafetensors(path, second).ok());
  Result<SafetensorsReader> r = SafetensorsReader::Open(path);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->names(), std::vector<std::string>{"only"});

  // A rejected write leaves the previous file as it was.
  const std::vector<NamedTensor> dup = {{"x", Pattern(DType::kF32, {1}, 1)},
                                        {"x", Pattern(DType::kF32, {1}, 2)}};
  EXPECT_TRUE(WriteSafetensors(path, dup).IsInvalidArgument());
  EXPECT_EQ(SafetensorsReader::Open(path)->names(), std::vector<std::string>{"only"});
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);

  Status no_dir = WriteSafetensors(dir.File("missing/sub/a.safetensors"), second);
  EXPECT_EQ(no_dir.code(), Code::kIOError) << no_dir.ToString();
}

TEST(SafetensorsTest, OpenErrors) {
  TempDir dir;
  EXPECT_TRUE(SafetensorsReader::Open(dir.File("nope.safetensors")).status().IsNotFound());
  EXPECT_TRUE(SafetensorsReader::Open(dir.path().string()).status().IsInvalidArgument());
  const std::string tiny = dir.File("tiny");
  std::ofstream(tiny) << "abc";
  Status s = SafetensorsReader::Open(tiny).status();
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_NE(s.message().find(tiny), std::string::npos) << s.ToString();
}

TEST(SafetensorsTest, WriterRejectsBadNamesAndText) {
  const Tensor t = Pattern(DType::kF32, {1}, 1);
  const std::vector<NamedTensor> empty_name = {{"", t}};
  const std::vector<NamedTensor> reserved = {{"__metadata__", t}};
  const std::vector<NamedTensor> dup = {{"a", t}, {"a", t}};
  EXPECT_TRUE(EncodeSafetensors(empty_name).status().IsInvalidArgument());
  EXPECT_TRUE(EncodeSafetensors(reserved).status().IsInvalidArgument());
  Status d = EncodeSafetensors(dup).status();
  EXPECT_TRUE(d.IsInvalidArgument());
  EXPECT_NE(d.message().find("duplicate tensor name 'a'"), std::string::npos);
  const std::vector<NamedTensor> ok = {{"a", t}};
  Status utf = EncodeSafetensors(ok, {{"bad", std::string("\xff\xfe", 2)}}).status();
  EXPECT_TRUE(utf.IsInvalidArgument());
  EXPECT_NE(utf.message().find("UTF-8"), std::string::npos) << utf.ToString();
}

struct BadCase {
  const char* label;
  std::vector<uint8_t> bytes;
  Code code;
  const char* needle;  // must appear in the message
};

constexpr Code kC = Code::kCorruption;

// A header with one tensor "a" whose fields are given as JSON text; `extra` is appended inside.
std::string One(const char* dtype, const char* shape, const char* offsets, const char* extra = "") {
  return std::string("{\"a\":{\"dtype\":") + dtype + ",\"shape\":" + shape +
         ",\"data_offsets\":" + offsets + extra + "}}";
}

// "name":{F32 [n] at begin}
std::string F32Entry(const char* name, int n, int begin) {
  return "\"" + std::string(name) + "\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(n) +
         "],\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(begin + 4 * n) +
         "]}";
}

// Problems with the framing, the JSON as a whole, the metadata and the buffer coverage.
std::vector<BadCase> FileCases() {
  std::vector<uint8_t> huge_n(16, 0);
  const uint64_t huge = (uint64_t{100} << 20) + 1;
  std::memcpy(huge_n.data(), &huge, 8);
  std::vector<uint8_t> long_n = Image("{}", 0);
  const uint64_t too_long = 1000;
  std::memcpy(long_n.data(), &too_long, 8);
  const std::string deep = std::string(40, '[') + std::string(40, ']');
  const std::string a0 = F32Entry("a", 1, 0);
  return {
      {"short", {1, 2, 3}, kC, "shorter than the 8-byte"},
      {"n beyond file", long_n, kC, "exceeds the 2 bytes"},
      {"n absurd", huge_n, kC, "exceeds the limit"},
      {"empty header", Image(""), kC, "not valid JSON"},
      {"bad json", Image("{\"a\":"), kC, "not valid JSON"},
      {"not object", Image("[1,2]"), kC, "must be a JSON object, got array"},
      {"too deep", Image("{\"a\":" + deep + "}"), kC, "nests deeper"},
      {"metadata not object", Image("{\"__metadata__\":[1]}"), kC, "must be an object"},
      {"metadata non-string", Image("{\"__metadata__\":{\"a\":1}}"), kC,
       "metadata 'a' must be a string"},
      {"duplicate tensor", Image("{" + a0 + "," + F32Entry("a", 1, 4) + "}", 8), kC,
       "duplicate key 'a'"},
      {"overlap", Image("{" + F32Entry("a", 2, 0) + "," + F32Entry("b", 2, 4) + "}", 12), kC,
       "overlap"},
      {"hole", Image("{" + a0 + "," + F32Entry("b", 1, 8) + "}", 12), kC, "hole"},
      {"hole at start", Image("{" + F32Entry("a", 1, 4) + "}", 8), kC, "hole"},
      {"trailing bytes", Image("{" + a0 + "}", 8), kC, "4 trailing bytes"},
  };
}

// Problems inside one tensor entry.
std::vector<BadCase> EntryCases() {
  return {
      {"entry not object", Image("{\"a\":3}"), kC, "entry must be an object"},
      {"missing dtype", Image("{\"a\":{\"shape\":[],\"data_offsets\":[0,0]}}"), kC,
       "missing field \"dtype\""},
      {"missing shape", Image("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,0]}}"), kC,
       "missing field \"shape\""},
      {"missing offsets", Image("{\"a\":{\"dtype\":\"F32\",\"shape\":[0]}}"), kC,
       "missing field \"data_offsets\""},
      {"unknown field", Image(One("\"F32\"", "[1]", "[0,4]", ",\"x\":1"), 4), kC,
       "unknown field 'x'"},
      {"duplicate field", Image(One("\"F32\"", "[1]", "[0,4]", ",\"dtype\":\"F16\""), 4), kC,
       "duplicate key 'dtype'"},
      {"dtype not string", Image(One("4", "[1]", "[0,4]"), 4), kC, "\"dtype\" must be a string"},
      {"unknown dtype", Image(One("\"F64\"", "[1]", "[0,8]"), 8), Code::kNotSupported, "F64"},
      {"shape not array", Image(One("\"F32\"", "1", "[0,4]"), 4), kC, "\"shape\" must be an array"},
      {"dim float", Image(One("\"F32\"", "[1.5]", "[0,4]"), 4), kC, "non-negative integer"},
      {"dim string", Image(One("\"F32\"", "[\"1\"]", "[0,4]"), 4), kC, "non-negative integer"},
      {"negative dim", Image(One("\"F32\"", "[-1]", "[0,4]"), 4), kC, "dimension 0 is negative"},
      {"too many elements", Image(One("\"F32\"", "[4294967296,4294967296,0]", "[0,0]")), kC,
       "too many elements"},
      {"offsets short", Image(One("\"F32\"", "[1]", "[0]"), 4), kC, "[begin, end]"},
      {"offset negative", Image(One("\"F32\"", "[1]", "[-4,0]"), 4), kC, "negative"},
      {"end before begin", Image(One("\"F32\"", "[1]", "[4,0]"), 4), kC, "before begin"},
      {"end beyond", Image(One("\"F32\"", "[2]", "[0,8]"), 4), kC, "beyond the data buffer"},
      {"size mismatch", Image(One("\"F32\"", "[2]", "[0,4]"), 4), kC, "needs 8"},
  };
}

TEST(SafetensorsTest, RejectsEveryMalformedInput) {
  std::vector<BadCase> cases = FileCases();
  for (BadCase& c : EntryCases()) cases.push_back(std::move(c));
  for (const BadCase& c : cases) {
    Status s = ParseStatus(c.bytes);
    EXPECT_EQ(s.code(), c.code) << c.label << ": " << s.ToString();
    EXPECT_NE(s.message().find(c.needle), std::string::npos) << c.label << ": " << s.ToString();
    EXPECT_NE(s.message().find("<memory>"), std::string::npos) << c.label << ": " << s.ToString();
  }
}

TEST(SafetensorsTest, AcceptsHandWrittenValidHeader) {
  // Empty tensors may share an offset with the next tensor; the header may be unpadded.
  std::vector<uint8_t> bytes = Image(
      "{\"__metadata__\":{\"m\":\"x\"},"
      "\"z\":{\"dtype\":\"I32\",\"shape\":[0],\"data_offsets\":[0,0]},"
      "\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
      8);
  const int32_t values[2] = {7, -9};
  std::memcpy(bytes.data() + bytes.size() - 8, values, 8);
  Result<SafetensorsReader> r = SafetensorsReader::ParseCopy(bytes);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->names(), (std::vector<std::string>{"z", "a"}));
  Result<Tensor> a = r->Get("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->data<int32_t>()[0], 7);
  EXPECT_EQ(a->data<int32_t>()[1], -9);
}

}  // namespace
}  // namespace kvc
