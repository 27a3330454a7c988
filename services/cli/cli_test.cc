#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/kv_io.h"
#include "common/safetensors.h"
#include "services/cli/commands.h"

namespace kvc::cli {
namespace {

namespace fs = std::filesystem;

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

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kvc_cli_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    dump_ = (dir_ / "dump.safetensors").string();
    out_ = (dir_ / "out.safetensors").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Generate() {
    const CliRun r = Cli({"generate", "--out", dump_, "--preset", "tiny", "--tokens", "128",
                          "--dtype", "f16", "--seed", "3"});
    ASSERT_EQ(r.rc, kExitOk) << r.err;
    ASSERT_NE(r.out.find("T=128"), std::string::npos) << r.out;
  }

  fs::path dir_;
  std::string dump_, out_;
};

TEST_F(CliTest, GenerateCompactEvalRoundTrip) {
  Generate();
  const CliRun c = Cli({"compact", "--in", dump_, "--out", out_, "--method", "am", "--ratio", "8",
                        "--threads", "2", "--json"});
  ASSERT_EQ(c.rc, kExitOk) << c.err;
  const nlohmann::json cj = nlohmann::json::parse(c.out);
  EXPECT_TRUE(cj["gate"]["passed"].get<bool>());
  const CliRun e = Cli({"eval", "--in", dump_, "--compacted", out_, "--json"});
  ASSERT_EQ(e.rc, kExitOk) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out), cj["fidelity"]);
  const CliRun text = Cli({"eval", "--in", dump_, "--compacted", out_});
  ASSERT_EQ(text.rc, kExitOk);
  EXPECT_NE(text.out.find("cos_mean"), std::string::npos);
  EXPECT_NE(text.out.find("method am"), std::string::npos);
  Result<CompactedCache> loaded = LoadCompactedCache(out_);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->layers[0].k.dtype(), DType::kF16);
  EXPECT_EQ(loaded->layers[0].budget(0), 16);
}

TEST_F(CliTest, EvalReadsHeldOutQueriesFromAFile) {
  Generate();
  ASSERT_EQ(Cli({"compact", "--in", dump_, "--out", out_, "--method", "snapkv"}).rc, kExitOk);
  Result<KvCache> full = LoadKvCache(dump_);
  ASSERT_TRUE(full.ok());
  std::vector<NamedTensor> qs;
  for (int l = 0; l < full->layout.n_layers; ++l) {
    qs.push_back({"layers." + std::to_string(l) + ".q_ref", *full->layers[l].q_window});
  }
  const std::string qfile = (dir_ / "q.safetensors").string();
  ASSERT_TRUE(WriteSafetensors(qfile, qs).ok());
  const CliRun e = Cli({"eval", "--in", dump_, "--compacted", out_, "--heldout", qfile, "--json"});
  ASSERT_EQ(e.rc, kExitOk) << e.err;
  EXPECT_EQ(nlohmann::json::parse(e.out)["queries_per_head"].get<int>(),
            full->layers[0].q_window->dim(1));
}

TEST_F(CliTest, BadUsageExitsWithTwo) {
  EXPECT_EQ(Cli({}).rc, kExitUsage);
  EXPECT_EQ(Cli({"frobnicate"}).rc, kExitUsage);
  EXPECT_EQ(Cli({"compact", "--in", dump_}).rc, kExitUsage);  // --out missing
  EXPECT_EQ(Cli({"compact", "--in", dump_, "--out", out_, "--bogus"}).rc, kExitUsage);
  const CliRun m = Cli({"compact", "--in", dump_, "--out", out_, "--method", "kvzip"});
  EXPECT_EQ(m.rc, kExitUsage);
  EXPECT_EQ(m.err.rfind("error: not_supported: unknown method 'kvzip'", 0), 0u) << m.err;
  const CliRun r = Cli({"compact", "--in", dump_, "--out", out_, "--ratio", "0.5"});
  EXPECT_EQ(r.rc, kExitUsage);
  EXPECT_NE(r.err.find("spec.ratio"), std::string::npos) << r.err;
  EXPECT_EQ(Cli({"generate", "--out", out_, "--preset", "huge"}).rc, kExitUsage);
  EXPECT_EQ(Cli({"generate", "--out", out_, "--dtype", "i32"}).rc, kExitUsage);
  EXPECT_EQ(Cli({"--help"}).rc, kExitOk);
}

TEST_F(CliTest, RuntimeErrorsExitWithOne) {
  const CliRun r = Cli({"compact", "--in", (dir_ / "missing.safetensors").string(), "--out", out_});
  EXPECT_EQ(r.rc, kExitRuntime);
  EXPECT_EQ(r.err.rfind("error: not_found", 0), 0u) << r.err;
  Generate();
  const CliRun s = Cli({"compact", "--in", dump_, "--out", out_, "--budget", "999"});
  EXPECT_EQ(s.rc, kExitRuntime);
  EXPECT_NE(s.err.find("exceeds the source length"), std::string::npos) << s.err;
  EXPECT_FALSE(fs::exists(out_));
}

TEST_F(CliTest, FailedGateIsWrittenAndReported) {
  Generate();
  const CliRun r = Cli({"compact", "--in", dump_, "--out", out_, "--ratio", "50",
                        "--gate-min-cosine", "0.999999", "--gate-max-rounds", "1"});
  EXPECT_EQ(r.rc, kExitRuntime);
  EXPECT_NE(r.err.find("quality gate not met"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("gate: FAILED"), std::string::npos) << r.out;
  Result<CompactedCache> loaded = LoadCompactedCache(out_);
  ASSERT_TRUE(loaded.ok());
  EXPECT_FALSE(nlohmann::json::parse(loaded->metadata.at("gate"))["passed"].get<bool>());
}

}  // namespace
}  // namespace kvc::cli
