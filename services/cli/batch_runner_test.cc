// `kvcompact batch` through the CLI entry point, in-process: resumption, bad inputs, usage
// errors, the JSON summary and --store.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/kv_io.h"
#include "common/safetensors.h"
#include "common/sha256.h"
#include "services/cli/batch_store.h"
#include "services/cli/batch_writer.h"
#include "services/cli/commands.h"
#include "tests/synth/synth_kv.h"

#ifdef KVC_BATCH_WITH_STORE
#include "storage/tiered_store.h"
#endif

namespace kvc::cli {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct CliRun {
  int rc;
  std::string out, err;
};

CliRun Cli(std::vector<std::string> args) {
  args.insert(args.begin(), "kvcompact");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  const int rc = Main(static_cast<int>(argv.size()), argv.data(), out, err);
  return {rc, out.str(), err.str()};
}

std::vector<uint8_t> ReadBytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

struct Stamp {
  ino_t ino;
  int64_t mtime_ns;
  bool operator==(const Stamp&) const = default;
};

Stamp StampOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return {st.st_ino, int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}

class BatchRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("kvc_batch_run_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    in_ = root_ / "in";
    out_ = root_ / "out";
    fs::create_directories(in_);
  }
  void TearDown() override { fs::remove_all(root_); }

  KvCache Dump(uint64_t seed, int64_t tokens = 512) {
    SynthOptions o = SynthSmall();
    o.layout.tokens = tokens;
    o.layout.n_layers = 2;
    o.n_ref = 64;
    o.seed = seed;
    Result<KvCache> kv = GenerateSyntheticKv(o);
    EXPECT_TRUE(kv.ok());
    return std::move(*kv);
  }
  void AddDump(const std::string& name, uint64_t seed) {
    ASSERT_TRUE(SaveKvCache((in_ / name).string(), Dump(seed)).ok());
  }

  CliRun Batch(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"batch",       "--in",       in_.string(), "--out",
                                     out_.string(), "--progress", "lines"};
    // Defaults the test did not set itself.
    for (const auto& [flag, value] : {std::pair{"--ratio", "8"}, {"--threads", "2"}}) {
      if (std::find(extra.begin(), extra.end(), flag) == extra.end()) {
        extra.insert(extra.end(), {flag, value});
      }
    }
    args.insert(args.end(), extra.begin(), extra.end());
    return Cli(args);
  }

  static Json Doc(const Json& summary, const std::string& name) {
    for (const Json& d : summary["documents"]) {
      if (d["name"] == name) return d;
    }
    ADD_FAILURE() << "no document " << name << " in " << summary.dump();
    return Json();
  }

  fs::path root_, in_, out_;
};

TEST_F(BatchRunnerTest, RerunSkipsFinishedDocumentsAndRecomputesIdentically) {
  for (int i = 0; i < 3; ++i) AddDump("doc" + std::to_string(i) + ".safetensors", 10 + i);
  const CliRun first = Batch({"--json"});
  ASSERT_EQ(first.rc, kExitOk) << first.err;
  const Json s1 = Json::parse(first.out);
  EXPECT_EQ(s1["counts"]["done"], 3);
  std::map<std::string, std::vector<uint8_t>> bytes;
  std::map<std::string, Stamp> stamps;
  for (int i = 0; i < 3; ++i) {
    const std::string n = "doc" + std::to_string(i) + ".safetensors";
    bytes[n] = ReadBytes(out_ / n);
    stamps[n] = StampOf(out_ / n);
    const Json d = Doc(s1, n);
    EXPECT_EQ(d["status"], "done");
    EXPECT_NEAR(d["ratio"].get<double>(), 8.0, 0.01);
    EXPECT_GT(d["fidelity"]["cosine"]["mean"].get<double>(), 0.9);
    EXPECT_EQ(d["gate"]["requested"], false);
    EXPECT_TRUE(LoadCompactedCache((out_ / n).string()).ok());
  }
  // A second run finds everything finished and touches nothing.
  const CliRun second = Batch({"--json"});
  ASSERT_EQ(second.rc, kExitOk) << second.err;
  const Json s2 = Json::parse(second.out);
  EXPECT_EQ(s2["counts"]["skipped"], 3);
  EXPECT_EQ(s2["counts"]["done"], 0);
  for (const auto& [n, st] : stamps) EXPECT_EQ(StampOf(out_ / n), st) << n;
  EXPECT_EQ(Doc(s2, "doc1.safetensors")["fidelity"], Doc(s1, "doc1.safetensors")["fidelity"]);
  // A lost output is recomputed, byte for byte, and only that one.
  fs::remove(out_ / "doc1.safetensors");
  const CliRun third = Batch({"--json"});
  ASSERT_EQ(third.rc, kExitOk) << third.err;
  const Json s3 = Json::parse(third.out);
  EXPECT_EQ(Doc(s3, "doc1.safetensors")["status"], "done");
  EXPECT_EQ(Doc(s3, "doc0.safetensors")["status"], "skipped");
  EXPECT_EQ(ReadBytes(out_ / "doc1.safetensors"), bytes["doc1.safetensors"]);
  EXPECT_EQ(StampOf(out_ / "doc2.safetensors"), stamps["doc2.safetensors"]);
}

TEST_F(BatchRunnerTest, OutputsDoNotDependOnJobsOrThreads) {
  for (int i = 0; i < 4; ++i) AddDump("doc" + std::to_string(i) + ".safetensors", 20 + i);
  const CliRun parallel = Batch({"--jobs", "3", "--threads", "1", "--json"});
  ASSERT_EQ(parallel.rc, kExitOk) << parallel.err;
  EXPECT_EQ(Json::parse(parallel.out)["jobs"], 3);
  const fs::path serial_out = root_ / "serial";
  const CliRun serial = Cli({"batch", "--in", in_.string(), "--out", serial_out.string(), "--jobs",
                             "1", "--threads", "2", "--ratio", "8", "--progress", "none"});
  ASSERT_EQ(serial.rc, kExitOk) << serial.err;
  for (int i = 0; i < 4; ++i) {
    const std::string n = "doc" + std::to_string(i) + ".safetensors";
    EXPECT_EQ(ReadBytes(out_ / n), ReadBytes(serial_out / n)) << n;
  }
}

TEST_F(BatchRunnerTest, ADifferentSpecRedoesTheDocuments) {
  AddDump("a.safetensors", 1);
  ASSERT_EQ(Batch().rc, kExitOk);
  const CliRun r = Batch({"--json", "--method", "snapkv"});
  ASSERT_EQ(r.rc, kExitOk) << r.err;
  const Json d = Doc(Json::parse(r.out), "a.safetensors");
  EXPECT_EQ(d["status"], "done");
  EXPECT_NE(d["note"].get<std::string>().find("another spec"), std::string::npos) << d.dump();
  Result<CompactedCache> c = LoadCompactedCache((out_ / "a.safetensors").string());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->metadata.at("method"), "snapkv");
}

TEST_F(BatchRunnerTest, BadInputsAreReportedAndTheOthersFinish) {
  AddDump("good1.safetensors", 1);
  AddDump("good2.safetensors", 2);
  // Truncated: the header promises more bytes than the file has.
  fs::copy_file(in_ / "good1.safetensors", in_ / "truncated.safetensors");
  fs::resize_file(in_ / "truncated.safetensors", fs::file_size(in_ / "truncated.safetensors") / 2);
  // Not safetensors at all.
  std::ofstream(in_ / "garbage.safetensors") << "this is not a KV dump";
  // Well-formed but holding a NaN in layer 1's keys (found when that layer is compacted).
  // SaveKvCache refuses NaN, so encode a clean dump and poke the NaN into its data.
  Result<std::vector<uint8_t>> bytes = EncodeKvCache(Dump(3));
  ASSERT_TRUE(bytes.ok());
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes->data(), 8);
  Result<SafetensorsReader> parsed = SafetensorsReader::ParseCopy(*bytes);
  ASSERT_TRUE(parsed.ok());
  const SafetensorsEntry* e = parsed->Find("layers.1.k");
  ASSERT_NE(e, nullptr);
  const float nan = std::nanf("");
  std::memcpy(bytes->data() + 8 + header_len + e->begin + 400, &nan, 4);
  std::ofstream(in_ / "nan.safetensors", std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes->data()),
             static_cast<std::streamsize>(bytes->size()));
  const CliRun r = Batch({"--json"});
  EXPECT_EQ(r.rc, 1) << r.err;
  const Json s = Json::parse(r.out);
  EXPECT_EQ(s["counts"]["done"], 2);
  EXPECT_EQ(s["counts"]["failed"], 3);
  EXPECT_EQ(s["exit_code"], 1);
  for (const char* bad : {"truncated.safetensors", "garbage.safetensors", "nan.safetensors"}) {
    const Json d = Doc(s, bad);
    EXPECT_EQ(d["status"], "failed") << bad;
    EXPECT_TRUE(d["error"].is_string()) << bad;
    EXPECT_FALSE(fs::exists(out_ / bad)) << bad;
  }
  EXPECT_NE(Doc(s, "nan.safetensors")["error"].get<std::string>().find("NaN"), std::string::npos);
  for (const char* good : {"good1.safetensors", "good2.safetensors"}) {
    EXPECT_TRUE(VerifyCompactedFile((out_ / good).string()).ok()) << good;
  }
  for (const auto& e : fs::directory_iterator(out_)) {
    EXPECT_FALSE(IsBatchTemporary(e.path().filename().string())) << e.path();
  }
  // The failures are reported on stderr as they happen, and in the text summary.
  EXPECT_NE(r.err.find("FAILED nan.safetensors"), std::string::npos) << r.err;
  const CliRun text = Batch();
  EXPECT_EQ(text.rc, 1);
  EXPECT_NE(text.out.find("2 already done, 3 failed"), std::string::npos) << text.out;
}

TEST_F(BatchRunnerTest, UsageErrorsExitWithTwo) {
  AddDump("a.safetensors", 1);
  const CliRun workers = Batch({"--workers", "host1:9090,host2:9090"});
  EXPECT_EQ(workers.rc, kExitUsage);
  EXPECT_NE(workers.err.find("not yet supported"), std::string::npos) << workers.err;
  EXPECT_NE(workers.err.find("client library"), std::string::npos) << workers.err;
  EXPECT_EQ(Cli({"batch", "--in", in_.string(), "--out", in_.string()}).rc, kExitUsage);
  EXPECT_EQ(Cli({"batch", "--in", (root_ / "nope").string(), "--out", out_.string()}).rc,
            kExitUsage);
  EXPECT_EQ(Batch({"--memory-budget", "lots"}).rc, kExitUsage);
  EXPECT_EQ(Batch({"--method", "snapkv", "--chunk-tokens", "128"}).rc, kExitUsage);
  EXPECT_EQ(Batch({"--method", "magic"}).rc, kExitUsage);
  EXPECT_EQ(Batch({"--progress", "loud"}).rc, kExitUsage);
  EXPECT_FALSE(fs::exists(out_ / "a.safetensors"));
  const CliRun help = Cli({"batch", "--help"});
  EXPECT_EQ(help.rc, kExitOk);
  for (const char* word :
       {"--store", "--workers", "--memory-budget", "--chunk-tokens", "not yet", "not_supported"}) {
    EXPECT_NE(help.out.find(word), std::string::npos) << word;
  }
}

TEST_F(BatchRunnerTest, LeftoverTemporariesAreRemovedAndALockedOutputRefused) {
  AddDump("a.safetensors", 1);
  fs::create_directories(out_);
  std::ofstream(out_ / ".a.safetensors.kvcbatch-999-0.out.tmp") << "half";
  std::ofstream(out_ / ".a.safetensors.kvcbatch-999-0.s2.tmp") << "half";
  std::ofstream(out_ / "keep.txt") << "not ours";
  const CliRun r = Batch({"--json"});
  ASSERT_EQ(r.rc, kExitOk) << r.err;
  EXPECT_EQ(Json::parse(r.out)["temporaries_removed"], 2);
  EXPECT_TRUE(fs::exists(out_ / "keep.txt"));
  const int fd = ::open((out_ / ".kvcompact-batch.lock").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  const CliRun locked = Batch();
  EXPECT_EQ(locked.rc, 1);
  EXPECT_NE(locked.err.find("another kvcompact batch"), std::string::npos) << locked.err;
  ::close(fd);
}

TEST_F(BatchRunnerTest, JsonSummaryFileAndPlanNotes) {
  AddDump("a.safetensors", 1);
  const fs::path json = root_ / "summary.json";
  const CliRun r = Batch({"--json-out", json.string(), "--chunk-tokens", "128"});
  ASSERT_EQ(r.rc, kExitOk) << r.err;
  EXPECT_NE(r.out.find("chunk-local fit"), std::string::npos) << r.out;
  std::ifstream f(json);
  const Json s = Json::parse(f);
  const Json d = Doc(s, "a.safetensors");
  EXPECT_EQ(d["plan"]["chunk_bounds"], (std::vector<int64_t>{0, 128, 256, 384, 512}));
  EXPECT_GT(d["plan"]["estimated_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(s["exit_code"], 0);
  EXPECT_NE(r.err.find("done a.safetensors: ratio 8.00"), std::string::npos) << r.err;
}

TEST_F(BatchRunnerTest, GateFailureIsAFailure) {
  AddDump("a.safetensors", 1);
  const CliRun r =
      Batch({"--json", "--ratio", "64", "--gate-min-cosine", "0.99999", "--gate-max-rounds", "1"});
  EXPECT_EQ(r.rc, 1);
  const Json d = Doc(Json::parse(r.out), "a.safetensors");
  EXPECT_EQ(d["status"], "done");
  EXPECT_EQ(d["gate"]["passed"], false);
  EXPECT_TRUE(fs::exists(out_ / "a.safetensors"));  // written, and it records passed=false
}

TEST_F(BatchRunnerTest, StoreKeysFromTokensOrFromContent) {
  KvCache with_tokens = Dump(5);
  std::string ids;
  for (int i = 0; i < 512; ++i) ids += (i ? "," : "") + std::to_string(1000 + i);
  with_tokens.metadata["tokens"] = ids;
  with_tokens.metadata["model"] = "llama-test";
  ASSERT_TRUE(SaveKvCache((in_ / "tok.safetensors").string(), with_tokens).ok());
  AddDump("plain.safetensors", 6);
  CompactionSpec spec;
  spec.ratio = 8;
  Result<DumpFile> tok = DumpFile::Open((in_ / "tok.safetensors").string());
  Result<DumpFile> plain = DumpFile::Open((in_ / "plain.safetensors").string());
  ASSERT_TRUE(tok.ok() && plain.ok());
  Result<DocumentKey> k1 = KeyForDocument(tok->info(), spec, "");
  Result<DocumentKey> k2 = KeyForDocument(plain->info(), spec, "");
  ASSERT_TRUE(k1.ok() && k2.ok());
  EXPECT_EQ(k1->kind, "prefix_chain");
  EXPECT_EQ(k1->tokens.size(), 512u);
  EXPECT_EQ(k2->kind, "content_sha256");
  EXPECT_EQ(k1->spec_hash, k2->spec_hash);
  EXPECT_EQ(k1->block_hash.size(), 32u);
  EXPECT_NE(KeyForDocument(tok->info(), spec, "tenant-b")->block_hash, k1->block_hash);
  EXPECT_TRUE(ParseTokenIds("[1, 2,3]", 3) == (std::vector<int32_t>{1, 2, 3}));
  EXPECT_TRUE(ParseTokenIds("512", 512).empty());  // a count, not ids
  EXPECT_TRUE(ParseTokenIds("1,2,", 2).empty());
  const fs::path store = root_ / "store";
  const CliRun r = Batch({"--json", "--store", store.string()});
#ifdef KVC_BATCH_WITH_STORE
  ASSERT_EQ(r.rc, kExitOk) << r.err;
  EXPECT_EQ(Doc(Json::parse(r.out), "tok.safetensors")["store"].get<std::string>().rfind("put ", 0),
            0u);
  const CliRun again = Batch({"--json", "--store", store.string()});
  ASSERT_EQ(again.rc, kExitOk) << again.err;
  EXPECT_EQ(Doc(Json::parse(again.out), "tok.safetensors")["store"].get<std::string>().rfind(
                "already stored", 0),
            0u);
  storage::TieredStoreOptions o;
  o.warm.path = store.string();
  o.maintenance_interval = std::chrono::milliseconds(0);
  auto s = storage::TieredStore::Open(o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  for (const auto& [name, key] : {std::pair{"tok.safetensors", *k1}, {"plain.safetensors", *k2}}) {
    // The spec hash is the SHA-256 of the spec JSON the output records (the CLI's flags).
    Result<OutputInfo> info = VerifyCompactedFile((out_ / name).string());
    ASSERT_TRUE(info.ok());
    const Sha256::Digest d = Sha256::Hash(info->metadata.at("spec"));
    Result<CompactedCache> got = (*s)->Get({key.block_hash, std::string(d.begin(), d.end())});
    ASSERT_TRUE(got.ok()) << name << ": " << got.status().ToString();
    Result<CompactedCache> file = LoadCompactedCache((out_ / name).string());
    ASSERT_TRUE(file.ok());
    EXPECT_EQ(got->total_entries(), file->total_entries());
    EXPECT_EQ(got->metadata, file->metadata);
  }
#else
  EXPECT_EQ(r.rc, kExitUsage);
  EXPECT_NE(r.err.find("not_supported"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out_ / "tok.safetensors"));
#endif
}

}  // namespace
}  // namespace kvc::cli
