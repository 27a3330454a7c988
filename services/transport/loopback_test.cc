// Loopback tests of the UCX data plane, once with UCX_TLS=tcp and once with UCX_TLS=shm. UCX
// reads UCX_TLS when a context is created, so each test sets it before creating its contexts
// (ctest runs every test in its own process). The multi-process tests start
// transport_test_peer, which inherits the setting.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "services/transport/endpoint.h"
#include "services/transport/listener.h"
#include "services/transport/testing.h"

extern char** environ;

namespace kvc::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

template <typename Pred>
bool Eventually(Pred pred, std::chrono::milliseconds limit = 10s) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

class LoopbackTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    setenv("UCX_TLS", GetParam().c_str(), 1);
    Result<std::shared_ptr<UcxContext>> s = UcxContext::Create({.name = "server"});
    Result<std::shared_ptr<UcxContext>> c = UcxContext::Create({.name = "client"});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    server_ctx_ = *s;
    client_ctx_ = *c;
  }

  void TearDown() override {
    listener_.reset();
    std::lock_guard<std::mutex> lock(mu_);
    received_.clear();
  }

  void StartListener(ListenerOptions o = {}) {
    o.address = "127.0.0.1";
    auto on_upload = [this](const UploadInfo& info, KvCache cache) -> Status {
      std::lock_guard<std::mutex> lock(mu_);
      received_[info.session] = std::move(cache);
      return handler_status_;
    };
    auto on_fetch = [](const FetchRequest& r) -> Result<CompactedCache> {
      const std::string prefix = "compacted-";
      if (r.key.rfind(prefix, 0) != 0) return Status::NotFound("no entry for " + r.key);
      const uint64_t seed = std::stoull(r.key.substr(prefix.size()));
      return testing::MakeCompactedCache(testing::SmallLayout(128, DType::kF16), 7, seed);
    };
    Result<std::unique_ptr<Listener>> l = Listener::Start(server_ctx_, o, on_upload, on_fetch);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    listener_ = std::move(*l);
    ASSERT_NE(listener_->port(), 0);
  }

  std::unique_ptr<Endpoint> ConnectClient(std::shared_ptr<UcxContext> ctx = nullptr) {
    Result<std::unique_ptr<Endpoint>> ep =
        Connect(ctx ? ctx : client_ctx_, "127.0.0.1", listener_->port());
    EXPECT_TRUE(ep.ok()) << ep.status().ToString();
    return ep.ok() ? std::move(*ep) : nullptr;
  }

  size_t received_count() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_.size();
  }
  bool StagingDrains() {
    return Eventually([&] { return listener_->stats().staging_in_use == 0; });
  }

  std::shared_ptr<UcxContext> server_ctx_, client_ctx_;
  std::unique_ptr<Listener> listener_;
  std::mutex mu_;
  std::map<uint64_t, KvCache> received_;
  Status handler_status_;
};

std::string TlsName(const ::testing::TestParamInfo<std::string>& info) { return info.param; }
INSTANTIATE_TEST_SUITE_P(Tls, LoopbackTest, ::testing::Values("tcp", "shm"), TlsName);

TEST_P(LoopbackTest, UsesTheRequestedTransport) {
  StartListener();
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  const std::string info = ep->Describe();
  const bool has_tcp = info.find("tcp/") != std::string::npos;
  const bool has_shm = info.find("posix/") != std::string::npos ||
                       info.find("sysv/") != std::string::npos ||
                       info.find("cma/") != std::string::npos;
  if (GetParam() == "tcp") {
    EXPECT_TRUE(has_tcp && !has_shm) << info;
  } else {
    EXPECT_TRUE(has_shm && !has_tcp) << info;
  }
}

TEST_P(LoopbackTest, KvCacheUploadRoundTrip) {
  StartListener();
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  // 128 tokens x 2 heads x 16 dims of f16: 8 KiB per k/v tensor (eager), and a 4096-token
  // cache whose tensors (256 KiB) go by rendezvous.
  for (int64_t tokens : {128, 4096}) {
    const KvCache sent =
        testing::MakeKvCache(testing::SmallLayout(tokens, DType::kF16), 8, 16, tokens);
    Result<UploadReceipt> r = ep->Upload(sent, {});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_NE(r->session, 0u);
    std::lock_guard<std::mutex> lock(mu_);
    ASSERT_EQ(received_.count(r->session), 1u);
    EXPECT_EQ(testing::DiffKvCache(sent, received_[r->session]), "");
    EXPECT_EQ(r->bytes, MakeUploadPayload(sent)->total_bytes());
  }
  const ListenerStats s = listener_->stats();
  EXPECT_EQ(s.uploads_completed, 2u);
  EXPECT_GT(s.staging_in_use, 0u);  // the handler kept the caches
  {
    std::lock_guard<std::mutex> lock(mu_);
    received_.clear();
  }
  EXPECT_TRUE(StagingDrains());
}

TEST_P(LoopbackTest, ClientChosenSessionIdsAndDuplicates) {
  StartListener();
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  const KvCache cache = testing::MakeKvCache(testing::SmallLayout(), 0, 0, 5);
  UploadOptions o;
  o.session_id = 424242;
  Result<UploadReceipt> r = ep->Upload(cache, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->session, 424242u);
  {
    std::lock_guard<std::mutex> lock(mu_);
    received_.clear();
  }
  ASSERT_TRUE(StagingDrains());
  // Hold session 77 open (no end marker), then ask for it again.
  UploadOptions stall;
  stall.session_id = 77;
  stall.faults.send_end = false;
  stall.timeout = 3s;
  std::thread first([&] { EXPECT_FALSE(ep->Upload(cache, stall).ok()); });
  ASSERT_TRUE(Eventually([&] { return listener_->stats().staging_in_use > 0; }));
  UploadOptions again;
  again.session_id = 77;
  Status dup = ep->Upload(cache, again).status();
  EXPECT_EQ(dup.code(), Code::kInvalidArgument) << dup.ToString();
  first.join();
}

TEST_P(LoopbackTest, CompactedCacheFetchRoundTrip) {
  StartListener();
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  for (uint64_t seed : {3, 4}) {
    Result<CompactedCache> got = ep->Fetch("compacted-" + std::to_string(seed), {});
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    const CompactedCache want =
        testing::MakeCompactedCache(testing::SmallLayout(128, DType::kF16), 7, seed);
    EXPECT_EQ(testing::DiffCompacted(want, *got), "");
  }
  Status missing = ep->Fetch("nothing-here", {}).status();
  EXPECT_TRUE(missing.IsNotFound()) << missing.ToString();
  EXPECT_TRUE(Eventually([&] { return listener_->stats().fetches_served == 2; }));
}

TEST_P(LoopbackTest, FetchBeyondClientBudgetIsRefused) {
  StartListener();
  ConnectOptions o;
  o.staging_bytes = 4096;  // far below the ~100 KiB cache
  Result<std::unique_ptr<Endpoint>> ep = Connect(client_ctx_, "127.0.0.1", listener_->port(), o);
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  Status st = (*ep)->Fetch("compacted-5", {}).status();
  EXPECT_EQ(st.code(), Code::kResourceExhausted) << st.ToString();
  EXPECT_TRUE(Eventually([&] { return listener_->stats().fetches_failed == 1; }));
}

TEST_P(LoopbackTest, WorkerRefusesCompactedUploads) {
  StartListener();
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  Result<OutgoingPayload> p =
      MakeFetchPayload(testing::MakeCompactedCache(testing::SmallLayout(), 3, 1));
  ASSERT_TRUE(p.ok());
  Status st = ep->Send(std::move(*p), {}).status();
  EXPECT_TRUE(st.IsNotSupported()) << st.ToString();
  EXPECT_EQ(listener_->stats().uploads_invalid, 1u);
  EXPECT_EQ(received_count(), 0u);
}

TEST_P(LoopbackTest, ConcurrentUploadsFromSeveralClients) {
  StartListener();
  std::vector<std::unique_ptr<Endpoint>> eps;
  eps.push_back(ConnectClient());
  Result<std::shared_ptr<UcxContext>> other = UcxContext::Create({.name = "client2"});
  ASSERT_TRUE(other.ok());
  eps.push_back(ConnectClient(*other));
  ASSERT_TRUE(eps[0] && eps[1]);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3; ++i) {
        const uint64_t seed = 100 + 10 * t + i;
        const KvCache c = testing::MakeKvCache(testing::SmallLayout(1024 + 64 * t), 4, 0, seed);
        Result<UploadReceipt> r = eps[t % 2]->Upload(c, {});
        if (!r.ok()) {
          ADD_FAILURE() << r.status().ToString();
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  std::lock_guard<std::mutex> lock(mu_);
  ASSERT_EQ(received_.size(), 18u);
  for (auto& [session, cache] : received_) {
    const uint64_t seed = std::stoull(cache.metadata.at("seed"));
    const int t = static_cast<int>((seed - 100) / 10);
    const KvCache want = testing::MakeKvCache(testing::SmallLayout(1024 + 64 * t), 4, 0, seed);
    EXPECT_EQ(testing::DiffKvCache(want, cache), "") << "seed " << seed;
  }
}

OutgoingPayload SmallPayload(uint64_t seed, int64_t tokens = 4096) {
  return *MakeUploadPayload(testing::MakeKvCache(testing::SmallLayout(tokens), 0, 0, seed));
}

TEST_P(LoopbackTest, ShortTensorFrameIsCorruption) {
  StartListener();
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  for (int64_t tokens : {64, 4096}) {  // eager and rendezvous frames
    OutgoingPayload p = SmallPayload(1, tokens);
    Tensor& t = p.tensors[1];
    t = Tensor::Zeros(t.dtype(), {t.numel() / 2});  // half the announced bytes
    Status st = ep->Send(std::move(p), {}).status();
    EXPECT_TRUE(st.IsCorruption()) << st.ToString();
    EXPECT_NE(st.message().find("layers.0.v"), std::string::npos) << st.message();
  }
  EXPECT_EQ(received_count(), 0u);
  EXPECT_EQ(listener_->stats().uploads_corrupt, 2u);
  EXPECT_TRUE(StagingDrains());
}

TEST_P(LoopbackTest, MissingTensorsAreCorruption) {
  StartListener();
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  UploadOptions o;
  o.faults.stop_after_frames = 4;  // of 6
  Status st = ep->Send(SmallPayload(2), o).status();
  EXPECT_TRUE(st.IsCorruption()) << st.ToString();
  EXPECT_EQ(received_count(), 0u);
  EXPECT_TRUE(StagingDrains());
}

TEST_P(LoopbackTest, WrongChecksumIsCorruption) {
  StartListener();
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  for (int64_t frame : {0, 5}) {
    UploadOptions o;
    o.faults.corrupt_checksum_of = frame;
    Status st = ep->Send(SmallPayload(3), o).status();
    EXPECT_TRUE(st.IsCorruption()) << st.ToString();
    EXPECT_NE(st.message().find("checksum"), std::string::npos) << st.message();
  }
  EXPECT_EQ(received_count(), 0u);
  EXPECT_TRUE(StagingDrains());
  // The connection stays usable after refused uploads.
  EXPECT_TRUE(ep->Send(SmallPayload(4), {}).ok());
}

TEST_P(LoopbackTest, UploadOverBudgetIsRefused) {
  ListenerOptions o;
  o.staging_bytes = size_t{2} << 20;
  StartListener(o);
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  const KvCache big = testing::MakeKvCache(testing::SmallLayout(8192), 0, 0, 1);  // 6 MiB
  Status st = ep->Upload(big, {}).status();
  EXPECT_EQ(st.code(), Code::kResourceExhausted) << st.ToString();
  EXPECT_EQ(listener_->stats().uploads_over_budget, 1u);
  EXPECT_EQ(listener_->stats().staging_in_use, 0u);
  EXPECT_EQ(received_count(), 0u);
  EXPECT_TRUE(ep->Upload(testing::MakeKvCache(testing::SmallLayout(1024), 0, 0, 2), {}).ok());
}

TEST_P(LoopbackTest, IdleUploadIsDroppedAfterDeadline) {
  ListenerOptions lo;
  lo.upload_idle_timeout = 200ms;
  StartListener(lo);
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  UploadOptions o;
  o.faults.stop_after_frames = 1;
  o.faults.send_end = false;
  o.timeout = 10s;
  const auto t0 = Clock::now();
  Status st = ep->Send(SmallPayload(5), o).status();
  EXPECT_EQ(st.code(), Code::kDeadlineExceeded) << st.ToString();
  EXPECT_LT(Clock::now() - t0, 5s);  // the worker's deadline, not the client's
  EXPECT_EQ(listener_->stats().uploads_timed_out, 1u);
  EXPECT_TRUE(StagingDrains());
  EXPECT_EQ(received_count(), 0u);
}

TEST_P(LoopbackTest, ClientDeadlineWithdrawsTheUpload) {
  StartListener();  // worker idle timeout 30 s
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  UploadOptions o;
  o.faults.send_end = false;
  o.timeout = 300ms;
  Status st = ep->Send(SmallPayload(6), o).status();
  EXPECT_EQ(st.code(), Code::kDeadlineExceeded) << st.ToString();
  EXPECT_TRUE(Eventually([&] { return listener_->stats().uploads_aborted == 1; }));
  EXPECT_TRUE(StagingDrains());
}

TEST_P(LoopbackTest, HandlerErrorReachesTheClient) {
  StartListener();
  handler_status_ = Status::ResourceExhausted("engine queue full");
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  Status st = ep->Send(SmallPayload(7), {}).status();
  EXPECT_EQ(st.code(), Code::kResourceExhausted);
  EXPECT_EQ(st.message(), "engine queue full");
  EXPECT_EQ(listener_->stats().uploads_rejected, 1u);
}

TEST_P(LoopbackTest, ConnectToClosedPortIsUnavailable) {
  StartListener();
  const uint16_t port = listener_->port();
  listener_.reset();
  ConnectOptions o;
  o.connect_timeout = 3s;
  Result<std::unique_ptr<Endpoint>> ep = Connect(client_ctx_, "127.0.0.1", port, o);
  ASSERT_FALSE(ep.ok());
  EXPECT_TRUE(ep.status().code() == Code::kUnavailable ||
              ep.status().code() == Code::kDeadlineExceeded)
      << ep.status().ToString();
}

TEST_P(LoopbackTest, StoppedListenerMakesClientsUnavailable) {
  StartListener();
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  listener_->Stop();
  ASSERT_TRUE(Eventually([&] { return !ep->connected(); }));
  Status st = ep->Send(SmallPayload(8), {}).status();
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
}

// --- Multi-process ------------------------------------------------------------------------------

class PeerProcess {
 public:
  explicit PeerProcess(std::vector<std::string> args) {
    std::vector<char*> argv;
    args.insert(args.begin(), KVC_TRANSPORT_TEST_PEER);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ok_ = posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) == 0;
  }
  ~PeerProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      Wait(5s);
    }
  }
  bool ok() const { return ok_; }
  void Kill() { kill(pid_, SIGKILL); }
  // The exit status, or -1 if it did not exit in time (or died by a signal: -signal).
  int Wait(std::chrono::milliseconds limit) {
    const auto end = Clock::now() + limit;
    int status = 0;
    while (Clock::now() < end) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1000;
  }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
  bool exited_ = false;
};

TEST_P(LoopbackTest, RoundTripWithAnotherProcess) {
  StartListener();
  PeerProcess peer(
      {"--port", std::to_string(listener_->port()), "--mode", "roundtrip", "--seed", "31"});
  ASSERT_TRUE(peer.ok());
  ASSERT_EQ(peer.Wait(60s), 0);
  std::lock_guard<std::mutex> lock(mu_);
  ASSERT_EQ(received_.size(), 1u);
  const KvCache want = testing::MakeKvCache(testing::SmallLayout(128, DType::kF16), 8, 16, 31);
  EXPECT_EQ(testing::DiffKvCache(want, received_.begin()->second), "");
  EXPECT_TRUE(Eventually([&] { return listener_->stats().fetches_served == 1; }));
}

TEST_P(LoopbackTest, ServerSurvivesClientDyingMidUpload) {
  StartListener();
  PeerProcess peer({"--port", std::to_string(listener_->port()), "--mode", "stall"});
  ASSERT_TRUE(peer.ok());
  // Wait until the upload holds staging buffers and some of its frames have landed.
  ASSERT_TRUE(Eventually([&] { return listener_->stats().staging_in_use > 0; }, 30s));
  std::this_thread::sleep_for(200ms);
  peer.Kill();
  EXPECT_EQ(peer.Wait(10s), -SIGKILL);
  EXPECT_TRUE(Eventually([&] { return listener_->stats().connections_open == 0; }, 30s))
      << "open connections: " << listener_->stats().connections_open;
  EXPECT_TRUE(StagingDrains());
  const ListenerStats s = listener_->stats();
  EXPECT_EQ(s.uploads_aborted, 1u);
  EXPECT_EQ(s.uploads_completed, 0u);
  // Others carry on.
  auto ep = ConnectClient();
  ASSERT_NE(ep, nullptr);
  EXPECT_TRUE(ep->Send(SmallPayload(9), {}).ok());
  EXPECT_EQ(received_count(), 1u);
}

}  // namespace
}  // namespace kvc::transport
