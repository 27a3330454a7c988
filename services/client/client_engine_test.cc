// The client against a real worker stack assembled in this process: Engine over a TieredStore
// in a temporary directory, the Thrift handler and server, and a UCX listener wired to the
// engine the way kvcompactd wires it. Covers both transports, prefix reuse, and bad input that
// must change nothing. (tests/integration runs the same against kvcompactd processes.)
#include <gtest/gtest.h>

#include <limits>
#include <numeric>

#include "common/metrics.h"
#include "services/client/client.h"
#include "services/engine/engine.h"
#include "services/engine/engine_testing.h"
#include "services/engine/spec_hash.h"
#include "services/rpc/call_recorder.h"
#include "services/rpc/handler.h"
#include "services/rpc/server.h"
#include "services/transport/listener.h"
#include "storage/testing.h"

namespace kvc::client {

// Names the parameter in test listings.
void PrintTo(UcxMode mode, std::ostream* os) { *os << UcxModeName(mode); }

namespace {

namespace et = engine::testing;

std::vector<int32_t> Tokens(int64_t n, int32_t first = 100) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

// One worker: engine, UCX listener, Thrift server.
class LocalWorker {
 public:
  LocalWorker() {
    auto store = storage::TieredStore::Open(et::StoreOptions(dir_.path().string()));
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    engine_ = std::make_unique<engine::Engine>(
        engine::EngineOptions{}, std::shared_ptr<storage::TieredStore>(std::move(store).value()),
        nullptr, &metrics_);
    EXPECT_TRUE(engine_->Start().ok());
    StartUcx();
    recorder_ = std::make_unique<rpc::CallRecorder>(&metrics_);
    rpc::HandlerOptions ho;
    if (listener_) ho.ucx_address = "127.0.0.1:" + std::to_string(listener_->port());
    auto handler = std::make_shared<rpc::KvCompactHandler>(engine_.get(), recorder_.get(), ho);
    rpc::ThriftServerOptions so;
    so.address = "127.0.0.1";
    so.port = 0;
    auto server = rpc::ThriftServer::Start(handler, so);
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    if (server.ok()) server_ = std::move(server).value();
  }
  ~LocalWorker() {
    if (server_) server_->Stop();
    if (listener_) listener_->Stop();
    engine_->Stop();
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  uint64_t ucx_connections() const {
    return listener_ ? listener_->stats().connections_accepted : 0;
  }
  bool has_ucx() const { return listener_ != nullptr; }
  engine::Engine& engine() { return *engine_; }

 private:
  void StartUcx() {
    auto ctx = transport::UcxContext::Create();
    if (!ctx.ok()) return;  // no UCX transport here: the UCX tests skip
    ctx_ = std::move(ctx).value();
    transport::ListenerOptions lo;
    lo.address = "127.0.0.1";
    lo.staging_bytes = size_t{256} << 20;
    engine::Engine* e = engine_.get();
    auto listener = transport::Listener::Start(
        ctx_, lo,
        [e](const transport::UploadInfo& info, KvCache cache) {
          return e->StageUpload(info.session, std::move(cache));
        },
        [e](const transport::FetchRequest& req) -> Result<CompactedCache> {
          KVC_ASSIGN_OR_RETURN(engine::EntryKeyParts key, engine::ParseEntryFetchKey(req.key));
          KVC_ASSIGN_OR_RETURN(engine::FetchOutcome found, e->Fetch(key.block_hash, key.spec_hash));
          return std::move(found.cache);
        });
    if (listener.ok()) listener_ = std::move(listener).value();
  }

  storage::testing::TempDir dir_{"kvc-client"};
  MetricsRegistry metrics_;
  std::unique_ptr<engine::Engine> engine_;
  std::shared_ptr<transport::UcxContext> ctx_;
  std::unique_ptr<transport::Listener> listener_;
  std::unique_ptr<rpc::CallRecorder> recorder_;
  std::unique_ptr<rpc::ThriftServer> server_;
};

class ClientEngineTest : public ::testing::TestWithParam<UcxMode> {
 protected:
  void SetUp() override {
    worker_ = std::make_unique<LocalWorker>();
    if (GetParam() != UcxMode::kOff && !worker_->has_ucx()) {
      GTEST_SKIP() << "UCX cannot start here";
    }
    ClientOptions o;
    o.workers = {*ParseWorkerAddress(worker_->address())};
    o.block_size = 64;
    o.model_id = "tiny";
    o.ucx_mode = GetParam();
    o.inline_threshold_bytes = 0;  // in kAuto: every cache and entry over UCX
    o.timeouts.compact = std::chrono::milliseconds(60000);
    auto c = Client::Create(o);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    client_ = std::move(c).value();
  }

  uint64_t Puts() { return worker_->engine().Stats().store.puts; }

  std::unique_ptr<LocalWorker> worker_;
  std::unique_ptr<Client> client_;
  CompactionSpec spec_ = et::FastSpec();
};

TEST_P(ClientEngineTest, PrefixReuseEndToEnd) {
  const KvCache shorter = et::TinyCache(3, 256);
  Result<CompactReply> put = client_->Compact(Tokens(256), shorter, spec_);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_TRUE(put->outcome.stored);
  EXPECT_EQ(put->via_ucx, GetParam() != UcxMode::kOff);
  EXPECT_GT(put->outcome.achieved_ratio, 1.0);
  EXPECT_EQ(put->outcome.entry.layout.tokens, 256);

  // A longer request with the same first 256 tokens finds the 4 blocks of the shorter one.
  const KvCache longer = et::TinyCache(4, 384);
  Result<PrefixHit> hit = client_->FetchPrefix(Tokens(384), longer.layout, spec_);
  ASSERT_TRUE(hit.ok()) << hit.status().ToString();
  EXPECT_EQ(hit->lookup.chain_blocks, 6u);
  EXPECT_EQ(hit->lookup.matched_blocks, 4u);
  EXPECT_EQ(hit->lookup.matched_tokens, 256);
  EXPECT_EQ(hit->lookup.ref.block_hash, put->ref.block_hash);
  EXPECT_EQ(hit->fetch.cache.layout.tokens, 256);
  EXPECT_EQ(hit->fetch.cache.total_entries(), put->outcome.entry.entries);
  EXPECT_EQ(hit->fetch.via_ucx, GetParam() != UcxMode::kOff);
  EXPECT_TRUE(hit->fetch.cache.Validate().ok());

  // Different tokens in the first block: no match. Another spec: no match.
  Result<LookupReply> other = client_->Lookup(Tokens(384, 5), longer.layout, spec_);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->matched_blocks, 0u);
  CompactionSpec other_spec = spec_;
  other_spec.ratio = 4;
  other = client_->Lookup(Tokens(384), longer.layout, other_spec);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->matched_blocks, 0u);

  // One UCX endpoint carried the upload and the fetch.
  EXPECT_EQ(worker_->ucx_connections(), GetParam() == UcxMode::kOff ? 0u : 1u);

  // Delete, then the prefix is gone.
  ASSERT_TRUE(client_->Delete(put->ref).ok());
  EXPECT_TRUE(client_->Delete(put->ref).IsNotFound());
  EXPECT_TRUE(client_->FetchPrefix(Tokens(384), longer.layout, spec_).status().IsNotFound());
}

TEST_P(ClientEngineTest, BadInputIsRefusedAndChangesNothing) {
  const uint64_t puts = Puts();
  // NaN: the inline encoder refuses it here; over UCX the worker's staging refuses it.
  KvCache nan = et::TinyCache(5, 128);
  Tensor k = nan.layers[1].k;
  k.data<float>()[17] = std::numeric_limits<float>::quiet_NaN();
  Result<CompactReply> r = client_->Compact(Tokens(128), nan, spec_);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
  EXPECT_NE(r.status().message().find("NaN"), std::string::npos) << r.status().ToString();

  // An unknown method and an out-of-range field are refused before the cache is uploaded
  // (tests/integration sends such specs to kvcompactd directly).
  CompactionSpec unknown = spec_;
  unknown.method = static_cast<Method>(200);
  r = client_->Compact(Tokens(128), et::TinyCache(5, 128), unknown);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotSupported()) << r.status().ToString();

  CompactionSpec negative = spec_;
  negative.ratio = -3;
  r = client_->Compact(Tokens(128), et::TinyCache(5, 128), negative);
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();

  // Wrong shapes: refused before anything is sent.
  KvCache wrong = et::TinyCache(5, 128);
  wrong.layers[0].v = wrong.layers[0].q_ref.value();
  r = client_->Compact(Tokens(128), wrong, spec_);
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();

  EXPECT_EQ(Puts(), puts);
  EXPECT_EQ(worker_->engine().Stats().staged_uploads, 0u);  // nothing left behind
  Result<LookupReply> miss = client_->Lookup(Tokens(128), et::TinyCache(5, 128).layout, spec_);
  ASSERT_TRUE(miss.ok());
  EXPECT_EQ(miss->matched_blocks, 0u);
  // The worker still serves.
  Result<CompactReply> good = client_->Compact(Tokens(128), et::TinyCache(5, 128), spec_);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(Puts(), puts + 1);
}

TEST_P(ClientEngineTest, StatsAndHealth) {
  std::vector<WorkerReport<WorkerHealth>> h = client_->Health();
  ASSERT_EQ(h.size(), 1u);
  ASSERT_TRUE(h[0].status.ok()) << h[0].status.ToString();
  EXPECT_TRUE(h[0].value->serving);
  EXPECT_EQ(h[0].value->ucx_address.empty(), !worker_->has_ucx());
  ASSERT_TRUE(client_->Compact(Tokens(128), et::TinyCache(6, 128), spec_).ok());
  std::vector<WorkerReport<engine::EngineStats>> s = client_->Stats();
  ASSERT_TRUE(s[0].status.ok());
  EXPECT_EQ(s[0].value->jobs_succeeded, 1u);
  EXPECT_EQ(s[0].value->store.puts, 1u);
}

INSTANTIATE_TEST_SUITE_P(Transports, ClientEngineTest,
                         ::testing::Values(UcxMode::kOff, UcxMode::kAuto),
                         [](const auto& info) { return std::string(UcxModeName(info.param)); });

}  // namespace
}  // namespace kvc::client
