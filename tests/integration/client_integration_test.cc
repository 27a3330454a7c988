// The client library and the kvcompact CLI against three kvcompactd processes on loopback
// (one cluster shared by the suite; these tests do not hurt the workers): round trips over UCX
// and inline, prefix reuse across requests of different lengths, bad input, concurrent clients.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include "common/kv_io.h"
#include "services/cli/commands.h"
#include "services/client/client.h"
#include "services/engine/engine_testing.h"
#include "services/transport/testing.h"
#include "tests/integration/client_cluster.h"

namespace kvc {
namespace {

namespace et = engine::testing;
using client::Client;
using client::UcxMode;
using testing::TokenRange;

class ClientIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = testing::ClientCluster::Start({});
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cluster_ = std::move(c).value().release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    if (cluster_ == nullptr) GTEST_SKIP() << "the cluster did not start";
  }

  static std::unique_ptr<Client> MakeClient(UcxMode mode, int only = -1) {
    client::ClientOptions o = cluster_->Options(only);
    o.ucx_mode = mode;
    o.inline_threshold_bytes = 0;  // kAuto: every cache over UCX
    auto c = Client::Create(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }
  // store.puts of worker i.
  static uint64_t Puts(int i) {
    auto c = MakeClient(UcxMode::kOff, i);
    auto s = c->Stats();
    EXPECT_TRUE(s[0].status.ok()) << s[0].status.ToString();
    return s[0].status.ok() ? s[0].value->store.puts : 0;
  }

  static testing::ClientCluster* cluster_;
  CompactionSpec spec_ = et::FastSpec();
};

testing::ClientCluster* ClientIntegrationTest::cluster_ = nullptr;

TEST_F(ClientIntegrationTest, RoundTripOverUcxAndInlineAgree) {
  auto ucx = MakeClient(UcxMode::kRequired);
  auto plain = MakeClient(UcxMode::kOff);
  const std::vector<int32_t> tokens = TokenRange(256, 10'000);
  const KvCache cache = et::TinyCache(21, 256);
  auto put = ucx->Compact(tokens, cache, spec_);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_TRUE(put->via_ucx);
  EXPECT_TRUE(put->outcome.stored);
  EXPECT_EQ(put->worker, ucx->RouteOf(*ucx->Chain(tokens, cache.layout, spec_))[0]);
  EXPECT_GT(put->outcome.entry.fidelity.mean_cosine, 0.5);

  auto by_ucx = ucx->Fetch(put->ref);
  ASSERT_TRUE(by_ucx.ok()) << by_ucx.status().ToString();
  EXPECT_TRUE(by_ucx->via_ucx);
  auto inline_copy = plain->Fetch(put->ref);
  ASSERT_TRUE(inline_copy.ok()) << inline_copy.status().ToString();
  EXPECT_FALSE(inline_copy->via_ucx);
  EXPECT_EQ(transport::testing::DiffCompacted(by_ucx->cache, inline_copy->cache), "");
  EXPECT_EQ(by_ucx->cache.total_entries(), put->outcome.entry.entries);
  EXPECT_EQ(by_ucx->cache.layout, cache.layout);

  // The same request inline gives the same entry (the same key, the same bytes).
  auto again = plain->Compact(tokens, cache, spec_);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->via_ucx);
  EXPECT_EQ(again->worker, put->worker);
  EXPECT_EQ(again->outcome.entry.entries, put->outcome.entry.entries);
}

TEST_F(ClientIntegrationTest, LongerRequestReusesTheStoredPrefix) {
  auto c = MakeClient(UcxMode::kAuto);
  const KvCache prefix = et::TinyCache(31, 320);  // 5 blocks of 64
  auto put = c->Compact(TokenRange(320, 50'000), prefix, spec_);
  ASSERT_TRUE(put.ok()) << put.status().ToString();

  // The longer request: the same 320 tokens, then 400 more.
  std::vector<int32_t> longer = TokenRange(720, 50'000);
  for (size_t i = 320; i < longer.size(); ++i) longer[i] = static_cast<int32_t>(7 * i);
  const KvLayout layout = et::TinyCache(32, 720).layout;
  auto chain = c->Chain(longer, layout, spec_);
  ASSERT_TRUE(chain.ok());
  EXPECT_EQ(c->RouteOf(*chain)[0], put->worker);  // routed by the first block: same worker
  auto hit = c->FetchPrefix(longer, layout, spec_);
  ASSERT_TRUE(hit.ok()) << hit.status().ToString();
  EXPECT_EQ(hit->lookup.matched_blocks, 5u);
  EXPECT_EQ(hit->lookup.chain_blocks, 12u);  // 11 full blocks and a partial one
  EXPECT_EQ(hit->lookup.matched_tokens, 320);
  EXPECT_EQ(hit->fetch.worker, put->worker);
  EXPECT_EQ(hit->fetch.cache.layout.tokens, 320);
  EXPECT_EQ(hit->fetch.cache.total_entries(), put->outcome.entry.entries);

  // Another tenant asking for the same tokens finds nothing.
  client::ClientOptions other = cluster_->Options();
  other.tenant = "someone-else";
  auto stranger = Client::Create(other);
  ASSERT_TRUE(stranger.ok());
  auto miss = (*stranger)->Lookup(longer, layout, spec_);
  ASSERT_TRUE(miss.ok()) << miss.status().ToString();
  EXPECT_EQ(miss->matched_blocks, 0u);
}

TEST_F(ClientIntegrationTest, BadInputGetsATypedErrorAndChangesNothing) {
  auto c = MakeClient(UcxMode::kAuto);
  std::vector<uint64_t> before;
  for (int i = 0; i < cluster_->size(); ++i) before.push_back(Puts(i));
  const std::vector<int32_t> tokens = TokenRange(128, 70'000);

  KvCache nan = et::TinyCache(41, 128);  // reaches the worker over UCX; its staging refuses it
  nan.layers[1].v.data<float>()[5] = std::numeric_limits<float>::infinity();
  auto r = c->Compact(tokens, nan, spec_);
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();

  KvCache wrong = et::TinyCache(41, 128);
  wrong.layers[0].k = wrong.layers[0].q_window.value();
  EXPECT_TRUE(c->Compact(tokens, wrong, spec_).status().IsInvalidArgument());

  CompactionSpec unknown = spec_;
  unknown.method = static_cast<Method>(99);
  EXPECT_TRUE(c->Compact(tokens, et::TinyCache(41, 128), unknown).status().IsNotSupported());

  for (int i = 0; i < cluster_->size(); ++i) EXPECT_EQ(Puts(i), before[i]) << "worker " << i;
  auto lookup = c->Lookup(tokens, nan.layout, spec_);
  ASSERT_TRUE(lookup.ok());
  EXPECT_EQ(lookup->matched_blocks, 0u);
  for (auto& s : c->Stats()) {
    ASSERT_TRUE(s.status.ok()) << s.status.ToString();
    EXPECT_EQ(s.value->staged_uploads, 0u) << s.worker;
  }
  // Every worker still serves.
  auto good = c->Compact(tokens, et::TinyCache(41, 128), spec_);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
}

TEST_F(ClientIntegrationTest, ConcurrentClientsSpreadOverTheWorkers) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 6;
  auto shared = MakeClient(UcxMode::kAuto);
  std::atomic<int> failures{0};
  std::mutex mu;
  std::map<std::string, int> per_worker;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads share one client, the others have their own.
      std::unique_ptr<Client> own = t % 2 == 0 ? MakeClient(UcxMode::kAuto) : nullptr;
      Client& c = own ? *own : *shared;
      for (int i = 0; i < kPerThread; ++i) {
        const std::vector<int32_t> tokens = TokenRange(192, 1'000'000 + (t * 100 + i) * 1000);
        const KvCache cache = et::TinyCache(100 + t * 100 + i, 192);
        auto put = c.Compact(tokens, cache, spec_);
        auto hit = put.ok() ? c.FetchPrefix(tokens, cache.layout, spec_)
                            : Result<client::PrefixHit>(put.status());
        if (!hit.ok() || hit->lookup.matched_blocks != 3 ||
            hit->fetch.cache.total_entries() != put->outcome.entry.entries) {
          ADD_FAILURE() << (hit.ok() ? "wrong entry" : hit.status().ToString());
          ++failures;
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        ++per_worker[put->worker];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GE(per_worker.size(), 2u) << "every request went to one worker";
}

// `kvcompact put | lookup | fetch | stats` in-process against the cluster.
TEST_F(ClientIntegrationTest, CliPutLookupFetchStats) {
  storage::testing::TempDir dir("kvc-it-cli");
  KvCache cache = et::TinyCache(51, 256);
  std::string ids;
  for (int32_t t : TokenRange(256, 90'000)) ids += (ids.empty() ? "" : ",") + std::to_string(t);
  cache.metadata["tokens"] = ids;
  const std::string dump = dir.Sub("dump.safetensors");
  ASSERT_TRUE(SaveKvCache(dump, cache).ok());
  std::string workers;
  for (int i = 0; i < cluster_->size(); ++i) {
    workers += (i ? "," : "") + cluster_->address(i);
  }
  auto run = [](std::vector<std::string> args, std::string* out_text) {
    args.insert(args.begin(), "kvcompact");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    std::ostringstream out, err;
    const int rc = cli::Main(static_cast<int>(argv.size()), argv.data(), out, err);
    *out_text = out.str() + err.str();
    return rc;
  };
  const std::vector<std::string> key = {"--workers", workers, "--block-size", "64",
                                        "--tenant",  "cli",   "--method",     "snapkv",
                                        "--ratio",   "4"};
  auto with = [&](std::vector<std::string> head) {
    head.insert(head.end(), key.begin(), key.end());
    return head;
  };
  std::string text;
  ASSERT_EQ(run(with({"put", "--in", dump, "--tokens-from-metadata"}), &text), 0) << text;
  EXPECT_NE(text.find("stored"), std::string::npos) << text;
  ASSERT_EQ(run(with({"lookup", "--in", dump, "--json"}), &text), 0) << text;
  EXPECT_NE(text.find("\"matched_blocks\":4"), std::string::npos) << text;
  const std::string out = dir.Sub("out.safetensors");
  ASSERT_EQ(run(with({"fetch", "--in", dump, "--out", out}), &text), 0) << text;
  auto fetched = LoadCompactedCache(out);
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  EXPECT_EQ(fetched->layout.tokens, 256);
  EXPECT_EQ(fetched->metadata.at("method"), "snapkv");
  ASSERT_EQ(run({"stats", "--workers", workers}, &text), 0) << text;
  for (int i = 0; i < cluster_->size(); ++i) {
    EXPECT_NE(text.find(cluster_->id(i) + "  serving"), std::string::npos) << text;
  }
}

}  // namespace
}  // namespace kvc
