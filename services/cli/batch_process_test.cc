// `kvcompact batch` as a child process of the real binary: SIGKILL and SIGINT in the middle of a
// run, and the peak resident set on a large generated dump.
//
// The memory test sizes come from the environment, so the same test measures the full case by
// hand: KVC_BATCH_RSS_LAYERS (default 16), KVC_BATCH_RSS_TOKENS (16384), KVC_BATCH_RSS_METHOD
// (snapkv), KVC_BATCH_RSS_BUDGET (384MiB), KVC_BATCH_RSS_NREF (64), KVC_BATCH_RSS_DIR (the
// system temp directory; the dump is deleted afterwards). The default is a 1 GiB dump of the
// Llama-3.1-8B layout (16 of its 32 layers, 16k tokens).
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <thread>

#include "services/cli/batch.h"
#include "services/cli/batch_testing.h"
#include "services/cli/batch_writer.h"

namespace kvc::cli {
namespace {

namespace fs = std::filesystem;
using testing::ChildExit;

// Sanitizers add shadow memory to every process: resident-set bounds do not apply.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif
using testing::ChildProcess;

std::vector<uint8_t> ReadBytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string Env(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

class BatchProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(Env("KVC_BATCH_RSS_DIR", fs::temp_directory_path().string())) /
            ("kvc_batch_proc_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    in_ = root_ / "in";
    fs::create_directories(in_);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::vector<std::string> Args(const fs::path& out, std::vector<std::string> extra) {
    std::vector<std::string> a = {testing::KvcompactBinary(),
                                  "batch",
                                  "--in",
                                  in_.string(),
                                  "--out",
                                  out.string(),
                                  "--json",
                                  "--progress",
                                  "lines",
                                  "--progress-interval",
                                  "1"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  ChildExit Run(const fs::path& out, std::vector<std::string> extra) {
    Result<ChildProcess> c = testing::StartChild(Args(out, extra), (root_ / "run").string());
    EXPECT_TRUE(c.ok());
    return testing::WaitChild(*c);
  }

  // Four small documents that take a second or so each, compacted a layer at a time.
  void AddDocuments() {
    for (int i = 0; i < 4; ++i) {
      SynthOptions o = SynthSmall();
      o.layout.tokens = 1536;
      o.seed = 40 + i;
      ASSERT_TRUE(testing::WriteSyntheticDumpStreaming(
                      (in_ / ("doc" + std::to_string(i) + ".safetensors")).string(), o)
                      .ok());
    }
  }

  // Starts a run and waits until a document's output is being written (a temporary with data).
  ChildProcess StartAndWaitForTemporary(const fs::path& out) {
    Result<ChildProcess> c = testing::StartChild(
        Args(out, {"--group-layers", "1", "--threads", "2"}), (root_ / "interrupted").string());
    EXPECT_TRUE(c.ok());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(out, ec)) {
        if (IsBatchTemporary(e.path().filename().string()) && e.file_size(ec) > 0) return *c;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ADD_FAILURE() << "no temporary appeared";
    return *c;
  }

  // Every visible output verifies and equals the clean run's bytes.
  void ExpectOnlyCompleteOutputs(const fs::path& out, const fs::path& reference) {
    for (const auto& e : fs::directory_iterator(out)) {
      const std::string name = e.path().filename().string();
      if (name.starts_with(".")) continue;
      EXPECT_TRUE(VerifyCompactedFile(e.path().string()).ok()) << name;
      EXPECT_EQ(ReadBytes(e.path()), ReadBytes(reference / name)) << name;
    }
  }

  int CountTemporaries(const fs::path& out) {
    int n = 0;
    for (const auto& e : fs::directory_iterator(out)) {
      n += IsBatchTemporary(e.path().filename().string()) ? 1 : 0;
    }
    return n;
  }

  fs::path root_, in_;
};

TEST_F(BatchProcessTest, SigkillLeavesNoPartialOutputAndARerunCompletes) {
  AddDocuments();
  const fs::path ref = root_ / "ref", out = root_ / "out";
  const ChildExit clean = Run(ref, {"--group-layers", "1", "--threads", "2"});
  ASSERT_EQ(clean.exit_code, 0) << clean.err;
  fs::create_directories(out);
  const ChildProcess c = StartAndWaitForTemporary(out);
  ASSERT_EQ(::kill(c.pid, SIGKILL), 0);
  const ChildExit killed = testing::WaitChild(c);
  EXPECT_EQ(killed.term_signal, SIGKILL);
  EXPECT_GT(CountTemporaries(out), 0);  // killed while writing: temporaries, never an output
  ExpectOnlyCompleteOutputs(out, ref);
  const ChildExit rerun = Run(out, {"--group-layers", "1", "--threads", "2"});
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  const nlohmann::json s = nlohmann::json::parse(rerun.out);
  EXPECT_GE(s["temporaries_removed"].get<int>(), 1);
  EXPECT_EQ(s["counts"]["done"].get<int>() + s["counts"]["skipped"].get<int>(), 4);
  EXPECT_GE(s["counts"]["done"].get<int>(), 1);
  EXPECT_EQ(CountTemporaries(out), 0);
  ExpectOnlyCompleteOutputs(out, ref);
  for (int i = 0; i < 4; ++i)
    EXPECT_TRUE(fs::exists(out / ("doc" + std::to_string(i) + ".safetensors")));
}

TEST_F(BatchProcessTest, SigintStopsCleanlyAndARerunCompletes) {
  AddDocuments();
  const fs::path out = root_ / "out";
  fs::create_directories(out);
  const ChildProcess c = StartAndWaitForTemporary(out);
  ASSERT_EQ(::kill(c.pid, SIGINT), 0);
  const ChildExit stopped = testing::WaitChild(c);
  ASSERT_TRUE(stopped.exited) << "signal " << stopped.term_signal;
  EXPECT_EQ(stopped.exit_code, 1) << stopped.err;
  const nlohmann::json s = nlohmann::json::parse(stopped.out);
  EXPECT_GE(s["counts"]["interrupted"].get<int>(), 1);
  EXPECT_NE(stopped.err.find("interrupt"), std::string::npos) << stopped.err;
  EXPECT_EQ(CountTemporaries(out), 0);  // a graceful stop removes its own temporaries
  for (const auto& e : fs::directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with(".")) {
      EXPECT_TRUE(VerifyCompactedFile(e.path().string()).ok()) << name;
    }
  }
  const ChildExit rerun = Run(out, {"--group-layers", "1", "--threads", "2"});
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  const nlohmann::json r = nlohmann::json::parse(rerun.out);
  EXPECT_EQ(r["counts"]["done"].get<int>() + r["counts"]["skipped"].get<int>(), 4);
}

TEST_F(BatchProcessTest, PeakResidentSetStaysFarBelowTheDumpSize) {
  if (kSanitized) GTEST_SKIP() << "resident-set bounds are not measurable under a sanitizer";
  SynthOptions o = SynthLlama31_8B(std::stoll(Env("KVC_BATCH_RSS_TOKENS", "16384")));
  o.layout.n_layers = std::stoi(Env("KVC_BATCH_RSS_LAYERS", "16"));
  o.n_ref = std::stoll(Env("KVC_BATCH_RSS_NREF", "64"));
  const std::string method = Env("KVC_BATCH_RSS_METHOD", "snapkv");
  const std::string budget = Env("KVC_BATCH_RSS_BUDGET", "384MiB");
  const fs::path dump = in_ / "long.safetensors";
  ASSERT_TRUE(testing::WriteSyntheticDumpStreaming(dump.string(), o).ok());
  const auto dump_bytes = static_cast<int64_t>(fs::file_size(dump));
  const ChildExit r = Run(root_ / "out", {"--method", method, "--memory-budget", budget});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(r.out)["documents"][0];
  int64_t budget_bytes = 0;
  ASSERT_TRUE(ParseByteSize(budget, &budget_bytes));
  const double mib = 1024.0 * 1024.0;
  std::cout << "batch peak RSS: dump " << dump_bytes / mib << " MiB (" << o.layout.n_layers
            << " layers x " << o.layout.tokens << " tokens, 8B layout, " << method << "), peak "
            << r.peak_rss_bytes / mib << " MiB, modelled "
            << doc["plan"]["estimated_bytes"].get<int64_t>() / mib << " MiB, budget "
            << budget_bytes / mib << " MiB, groups " << doc["plan"]["groups"].size() << ", chunks "
            << doc["plan"]["chunk_bounds"].size() - 1 << "\n";
  RecordProperty("peak_rss_bytes", std::to_string(r.peak_rss_bytes));
  RecordProperty("dump_bytes", std::to_string(dump_bytes));
  EXPECT_LT(r.peak_rss_bytes, dump_bytes / 2);
  EXPECT_LE(r.peak_rss_bytes, budget_bytes + (int64_t{64} << 20));
}

TEST_F(BatchProcessTest, ChunkingBoundsTheAttentionMatchingSolve) {
  if (kSanitized) GTEST_SKIP() << "resident-set bounds are not measurable under a sanitizer";
  SynthOptions o = SynthLlama31_8B(32768);
  o.layout.n_layers = 2;
  o.n_ref = 64;
  ASSERT_TRUE(testing::WriteSyntheticDumpStreaming((in_ / "long.safetensors").string(), o).ok());
  const ChildExit whole = Run(root_ / "whole", {"--group-layers", "1", "--threads", "2"});
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  const ChildExit chunked = Run(root_ / "chunked", {"--memory-budget", "256MiB", "--threads", "2"});
  ASSERT_EQ(chunked.exit_code, 0) << chunked.err;
  const nlohmann::json doc = nlohmann::json::parse(chunked.out)["documents"][0];
  EXPECT_GT(doc["plan"]["chunk_bounds"].size(), 2u) << doc.dump();
  EXPECT_EQ(doc["over_budget"], false);
  std::cout << "AM 2 x 32k tokens: one layer at a time " << whole.peak_rss_bytes / (1 << 20)
            << " MiB, chunked to fit 256 MiB " << chunked.peak_rss_bytes / (1 << 20) << " MiB ("
            << doc["plan"]["chunk_bounds"].size() - 1 << " chunks)\n";
  EXPECT_LE(chunked.peak_rss_bytes, int64_t{256 + 32} << 20);
  EXPECT_LT(chunked.peak_rss_bytes, whole.peak_rss_bytes * 3 / 4);
  const double cos = doc["fidelity"]["cosine"]["mean"].get<double>();
  const double cos_whole =
      nlohmann::json::parse(whole.out)["documents"][0]["fidelity"]["cosine"]["mean"].get<double>();
  EXPECT_GT(cos, cos_whole - 0.02);
}

}  // namespace
}  // namespace kvc::cli
