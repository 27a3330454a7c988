// `kvcompact put | lookup | fetch | stats`: token ids, flag handling and exit codes, run
// in-process against fake workers (services/client/fake_worker.h). tests/integration runs the
// commands against kvcompactd.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "common/kv_io.h"
#include "services/cli/commands.h"
#include "services/cli/remote_tokens.h"
#include "services/client/fake_worker.h"
#include "services/transport/testing.h"

namespace kvc::cli {
namespace {

namespace tt = transport::testing;

struct CliRun {
  int rc = -1;
  std::string out;
  std::string err;
};

CliRun Cli(std::vector<std::string> args) {
  args.insert(args.begin(), "kvcompact");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  CliRun r;
  r.rc = Main(static_cast<int>(argv.size()), argv.data(), out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

TEST(RemoteTokens, ParsesLists) {
  Result<std::vector<int32_t>> a = ParseTokenList("[1, 2,3 ]");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(*a, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(*ParseTokenList("42"), std::vector<int32_t>{42});
  for (const char* bad : {"", "[]", "1,,2", "1,x", "-1", "1,2,", "99999999999"}) {
    EXPECT_FALSE(ParseTokenList(bad).ok()) << "'" << bad << "'";
  }
}

TEST(RemoteTokens, MetadataGivenOrDerived) {
  KvCache c = tt::MakeKvCache(tt::SmallLayout(6), 0, 0, 1);
  c.metadata["tokens"] = "5,6,7,8,9,10";
  Result<DumpTokens> meta = TokensForDump(c, {}, /*require_metadata=*/true);
  ASSERT_TRUE(meta.ok()) << meta.status().ToString();
  EXPECT_EQ(meta->origin, TokenOrigin::kMetadata);
  EXPECT_EQ(meta->ids, (std::vector<int32_t>{5, 6, 7, 8, 9, 10}));
  EXPECT_TRUE(meta->note.empty());

  Result<DumpTokens> given = TokensForDump(c, {1, 2, 3, 4, 5, 6}, true);
  ASSERT_TRUE(given.ok());
  EXPECT_EQ(given->origin, TokenOrigin::kGiven);
  EXPECT_FALSE(TokensForDump(c, {1, 2}, false).ok());  // wrong count

  c.metadata["tokens"] = "6";  // a count, not the ids
  EXPECT_TRUE(TokensForDump(c, {}, true).status().IsInvalidArgument());
  Result<DumpTokens> derived = TokensForDump(c, {}, false);
  ASSERT_TRUE(derived.ok());
  EXPECT_EQ(derived->origin, TokenOrigin::kDerived);
  EXPECT_NE(derived->note.find("derived"), std::string::npos);
  EXPECT_EQ(derived->ids.size(), 6u);
}

TEST(RemoteTokens, DerivedIdsFollowTheKeysPositionByPosition) {
  const KvCache a = tt::MakeKvCache(tt::SmallLayout(8), 0, 0, 1);
  const std::vector<int32_t> ids = DeriveTokens(a);
  EXPECT_EQ(ids, DeriveTokens(a));  // deterministic
  for (int32_t id : ids) EXPECT_GE(id, 0);
  // A longer cache whose first 8 positions hold the same keys: the same first 8 ids.
  KvLayout longer_layout = tt::SmallLayout(12);
  KvCache b = tt::MakeKvCache(longer_layout, 0, 0, 2);
  const KvLayout& l = a.layout;
  const size_t row = static_cast<size_t>(l.head_dim) * sizeof(float);
  for (int h = 0; h < l.n_kv_heads; ++h) {
    std::memcpy(static_cast<uint8_t*>(b.layers[0].k.raw()) + h * 12 * row,
                static_cast<const uint8_t*>(a.layers[0].k.raw()) + h * 8 * row, 8 * row);
  }
  const std::vector<int32_t> longer = DeriveTokens(b);
  EXPECT_EQ(std::vector<int32_t>(longer.begin(), longer.begin() + 8), ids);
  EXPECT_NE(longer[8], ids[7]);
  // A different key at position 3 changes id 3 only.
  std::vector<int32_t> changed;
  static_cast<float*>(b.layers[0].k.raw())[3 * l.head_dim] += 1.0f;
  changed = DeriveTokens(b);
  for (int t = 0; t < 12; ++t) EXPECT_EQ(changed[t] != longer[t], t == 3) << t;
}

class RemoteCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_ = client::testing::FakeWorker::Start();
    ASSERT_NE(fake_, nullptr);
    dir_ = std::filesystem::temp_directory_path() /
           ("kvc-remote-cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    dump_ = (dir_ / "dump.safetensors").string();
    KvCache c = tt::MakeKvCache(tt::SmallLayout(40), 8, 8, 3);
    c.metadata["model"] = "small";
    ASSERT_TRUE(SaveKvCache(dump_, c).ok());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<client::testing::FakeWorker> fake_;
  std::filesystem::path dir_;
  std::string dump_;
};

TEST_F(RemoteCliTest, PutDerivesTokensAndSaysSo) {
  const CliRun r = Cli({"put", "--workers", fake_->address(), "--in", dump_, "--block-size", "16",
                        "--method", "snapkv", "--ratio", "4", "--ucx", "off"});
  ASSERT_EQ(r.rc, kExitOk) << r.err;
  EXPECT_NE(r.out.find("stored"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("derived"), std::string::npos) << r.err;
  ASSERT_EQ(fake_->compact_requests().size(), 1u);
  const rpc::CompactRequest req = fake_->compact_requests()[0];
  EXPECT_EQ(req.model, "small");  // from the dump's metadata
  EXPECT_EQ(req.block_hashes.size(), 3u);
  EXPECT_EQ(req.spec.method, "snapkv");
  // --tokens-from-metadata refuses a dump without token ids.
  const CliRun strict =
      Cli({"put", "--workers", fake_->address(), "--in", dump_, "--tokens-from-metadata"});
  EXPECT_EQ(strict.rc, kExitUsage);
  EXPECT_NE(strict.err.find("tokens-from-metadata"), std::string::npos) << strict.err;
}

TEST_F(RemoteCliTest, LookupAndFetchWithTokensAndLayout) {
  fake_->SetLookupMatch(2);
  const CliRun miss_free =
      Cli({"lookup", "--workers", fake_->address(), "--tokens", "1,2,3,4,5,6,7,8,9,10", "--layout",
           "3:2:4:16:f32", "--block-size", "4", "--json"});
  ASSERT_EQ(miss_free.rc, kExitOk) << miss_free.err;
  EXPECT_NE(miss_free.out.find("\"matched_blocks\":2"), std::string::npos) << miss_free.out;
  EXPECT_NE(miss_free.out.find("\"matched_tokens\":8"), std::string::npos) << miss_free.out;

  const std::string out = (dir_ / "out.safetensors").string();
  std::vector<std::string> fetch{"fetch",
                                 "--workers",
                                 fake_->address(),
                                 "--tokens",
                                 "1,2,3,4,5,6,7,8,9,10",
                                 "--layout",
                                 "3:2:4:16:f32",
                                 "--block-size",
                                 "4",
                                 "--out",
                                 out,
                                 "--ucx",
                                 "off"};
  const CliRun none = Cli(fetch);  // the fake has no entry to give
  EXPECT_EQ(none.rc, kExitRuntime);
  EXPECT_NE(none.err.find("not_found"), std::string::npos) << none.err;
  EXPECT_FALSE(std::filesystem::exists(out));

  const CompactedCache entry = tt::MakeCompactedCache(tt::SmallLayout(8), 3, 4);
  fake_->SetEntry(entry);
  const CliRun got = Cli(fetch);
  ASSERT_EQ(got.rc, kExitOk) << got.err;
  Result<CompactedCache> written = LoadCompactedCache(out);
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  EXPECT_EQ(tt::DiffCompacted(*written, entry), "");
}

TEST_F(RemoteCliTest, StatsAndUnavailable) {
  const CliRun s = Cli({"stats", "--workers", fake_->address()});
  ASSERT_EQ(s.rc, kExitOk) << s.err;
  EXPECT_NE(s.out.find(fake_->address()), std::string::npos);
  EXPECT_NE(s.out.find("serving"), std::string::npos) << s.out;
  fake_->Stop();
  const CliRun down = Cli({"stats", "--workers", fake_->address(), "--json"});
  EXPECT_EQ(down.rc, kExitRuntime);
  EXPECT_NE(down.out.find("\"ok\":false"), std::string::npos) << down.out;
  const CliRun put = Cli(
      {"put", "--workers", fake_->address(), "--in", dump_, "--ucx", "off", "--timeout-ms", "500"});
  EXPECT_EQ(put.rc, kExitRuntime);
  EXPECT_NE(put.err.find("unavailable: recompute"), std::string::npos) << put.err;
}

TEST_F(RemoteCliTest, BadUsage) {
  const std::string w = fake_->address();
  const std::vector<std::vector<std::string>> cases = {
      {"stats"},                         // no --workers
      {"stats", "--workers", "nohost"},  // bad worker
      {"lookup", "--workers", w},        // no request
      {"lookup", "--workers", w, "--tokens", "1,2", "--layout", "3:2:4"},
      {"lookup", "--workers", w, "--tokens", "1,x", "--layout", "3:2:4:16:f32"},
      {"put", "--workers", w, "--in", dump_, "--method", "magic"},
      {"put", "--workers", w, "--in", dump_, "--ratio", "0.5"},
      {"put", "--workers", w, "--in", dump_, "--option", "am.nonsense=1"},
      {"put", "--workers", w, "--in", dump_, "--ucx", "maybe"},
      {"put", "--workers", w, "--in", dump_, "--tokens", "1,2,3"},  // not the dump's count
  };
  for (const auto& args : cases) {
    const CliRun r = Cli(args);
    EXPECT_EQ(r.rc, kExitUsage) << ::testing::PrintToString(args) << "\n" << r.err;
  }
  EXPECT_EQ(fake_->total_calls(), 0);
  const CliRun missing = Cli({"put", "--workers", w, "--in", (dir_ / "none").string()});
  EXPECT_EQ(missing.rc, kExitRuntime) << missing.err;
}

}  // namespace
}  // namespace kvc::cli
