#include "services/cli/batch_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "common/kv_io.h"
#include "kernels/compactor.h"
#include "tests/synth/synth_kv.h"

namespace kvc::cli {
namespace {

namespace fs = std::filesystem;

std::vector<uint8_t> ReadBytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

CompactedCache MakeCompacted(DType dtype) {
  SynthOptions o = SynthTiny();
  o.layout.n_layers = 3;
  o.layout.dtype = dtype;
  Result<KvCache> kv = GenerateSyntheticKv(o);
  EXPECT_TRUE(kv.ok()) << kv.status().ToString();
  CompactionSpec spec;
  spec.method = Method::kH2o;  // varying per-head layouts through the kept positions
  spec.ratio = 5;
  Result<CompactionResult> r = Compact(*kv, spec);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(r->cache);
}

std::vector<std::string> DirNames(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

class BatchWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kvc_batch_writer_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  Status Write(const CompactedCache& c, const std::string& path) {
    Result<std::unique_ptr<CompactedFileWriter>> w = CompactedFileWriter::Create(path, c.layout);
    if (!w.ok()) return w.status();
    for (const CompactedLayer& l : c.layers) KVC_RETURN_IF_ERROR((*w)->AppendLayer(l));
    return (*w)->Finish(c.metadata);
  }

  fs::path dir_;
};

TEST_F(BatchWriterTest, WritesTheSameBytesAsSaveCompactedCache) {
  for (DType dt : {DType::kF16, DType::kF32, DType::kBF16}) {
    const CompactedCache c = MakeCompacted(dt);
    const std::string path = (dir_ / "streamed.safetensors").string();
    ASSERT_TRUE(Write(c, path).ok());
    Result<std::vector<uint8_t>> want = EncodeCompactedCache(c);
    ASSERT_TRUE(want.ok());
    EXPECT_EQ(ReadBytes(path), *want) << DTypeName(dt);
    Result<CompactedCache> back = LoadCompactedCache(path);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    std::map<std::string, std::string> want_md = c.metadata;
    want_md.erase("source_tokens");  // Compact records it; the loader strips the reserved key
    EXPECT_EQ(back->metadata, want_md);
    EXPECT_EQ(DirNames(dir_), std::vector<std::string>{"streamed.safetensors"});
  }
}

TEST_F(BatchWriterTest, VerifyAcceptsAGoodFileAndReportsItsContents) {
  const CompactedCache c = MakeCompacted(DType::kF16);
  const std::string path = (dir_ / "out.safetensors").string();
  ASSERT_TRUE(Write(c, path).ok());
  Result<OutputInfo> info = VerifyCompactedFile(path);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->layout, c.layout);
  EXPECT_EQ(info->entries, c.total_entries());
  EXPECT_EQ(info->metadata.at("fidelity"), c.metadata.at("fidelity"));
  EXPECT_EQ(info->metadata.count("source_tokens"), 0u);
  EXPECT_EQ(info->metadata.size(), c.metadata.size() - 1);
}

TEST_F(BatchWriterTest, VerifyRejectsTruncatedAndDamagedFiles) {
  const CompactedCache c = MakeCompacted(DType::kF32);
  const std::string path = (dir_ / "out.safetensors").string();
  ASSERT_TRUE(Write(c, path).ok());
  const std::vector<uint8_t> good = ReadBytes(path);
  // Truncated by one byte.
  fs::resize_file(path, good.size() - 1);
  EXPECT_FALSE(VerifyCompactedFile(path).ok());
  // A NaN in the last tensor's data (a value of the last layer's k, v or beta).
  std::vector<uint8_t> bad = good;
  const float nan = std::nanf("");
  std::memcpy(bad.data() + bad.size() - 8, &nan, 4);
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(bad.data()), static_cast<std::streamsize>(bad.size()));
  Result<OutputInfo> v = VerifyCompactedFile(path);
  EXPECT_TRUE(v.status().IsInvalidArgument()) << v.status().ToString();
  // A KV dump is not a compacted cache.
  SynthOptions o = SynthTiny();
  ASSERT_TRUE(SaveKvCache(path, *GenerateSyntheticKv(o)).ok());
  EXPECT_FALSE(VerifyCompactedFile(path).ok());
  EXPECT_TRUE(VerifyCompactedFile((dir_ / "missing").string()).status().IsNotFound());
}

TEST_F(BatchWriterTest, UnfinishedWritersLeaveNothingBehind) {
  const CompactedCache c = MakeCompacted(DType::kF16);
  const std::string path = (dir_ / "out.safetensors").string();
  {
    auto w = CompactedFileWriter::Create(path, c.layout);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->AppendLayer(c.layers[0]).ok());
    bool temporaries = false;
    for (const std::string& n : DirNames(dir_)) temporaries = temporaries || IsBatchTemporary(n);
    EXPECT_TRUE(temporaries);
  }  // destroyed unfinished
  EXPECT_TRUE(DirNames(dir_).empty());
  auto w = CompactedFileWriter::Create(path, c.layout);
  ASSERT_TRUE((*w)->AppendLayer(c.layers[0]).ok());
  EXPECT_EQ((*w)->Finish(c.metadata).code(), Code::kFailedPrecondition);  // 1 of 3 layers
  EXPECT_TRUE(DirNames(dir_).empty());
  // A layer that breaks the layout abandons the writer.
  auto w2 = CompactedFileWriter::Create(path, c.layout);
  CompactedLayer broken = c.layers[0];
  broken.offsets.back() += 1;
  EXPECT_TRUE((*w2)->AppendLayer(broken).IsInvalidArgument());
  EXPECT_TRUE(DirNames(dir_).empty());
  // Reserved metadata must agree with the layout.
  auto w3 = CompactedFileWriter::Create(path, c.layout);
  for (const CompactedLayer& l : c.layers) ASSERT_TRUE((*w3)->AppendLayer(l).ok());
  EXPECT_TRUE((*w3)->Finish({{"n_layers", "7"}}).IsInvalidArgument());
  EXPECT_TRUE(DirNames(dir_).empty());
}

TEST(BatchTemporaryNames, RecogniseOnlyTheWritersNames) {
  EXPECT_TRUE(IsBatchTemporary(".doc.safetensors.kvcbatch-12-0.out.tmp"));
  EXPECT_TRUE(IsBatchTemporary(".doc.safetensors.kvcbatch-12-3.s2.tmp"));
  EXPECT_FALSE(IsBatchTemporary("doc.safetensors"));
  EXPECT_FALSE(IsBatchTemporary(".doc.safetensors.kvcbatch-12-0.out"));
  EXPECT_FALSE(IsBatchTemporary(".kvcompact-batch.lock"));
  EXPECT_FALSE(IsBatchTemporary("x.kvcbatch-1.tmp"));
}

}  // namespace
}  // namespace kvc::cli
