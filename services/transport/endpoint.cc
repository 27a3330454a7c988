#include "services/transport/endpoint.h"

#include <unistd.h>

#include <atomic>
#include <future>
#include <random>
#include <unordered_map>

#include "services/transport/address.h"
#include "services/transport/bootstrap.h"
#include "services/transport/peer.h"
#include "services/transport/registration_cache.h"
#include "services/transport/staging_pool.h"

namespace kvc::transport {
namespace {

using Clock = std::chrono::steady_clock;

// A fetch waiting for its payload; set exactly once.
class FetchWaiter {
 public:
  void Set(Result<CompactedCache> r) {
    if (!set_.exchange(true)) promise_.set_value(std::move(r));
  }
  std::future<Result<CompactedCache>> future() { return promise_.get_future(); }

 private:
  std::atomic<bool> set_{false};
  std::promise<Result<CompactedCache>> promise_;
};

class UcxEndpoint final : public Endpoint, public PeerDelegate {
 public:
  UcxEndpoint(std::shared_ptr<UcxContext> ctx, std::string remote, const ConnectOptions& options)
      : ctx_(std::move(ctx)),
        remote_(std::move(remote)),
        options_(options),
        pool_(StagingPool::Create(ctx_->handle(), {options.staging_bytes, options.staging_bytes})),
        regs_(ctx_->handle(), options.registration_cache_bytes, options.registration_cache_entries),
        next_fetch_(std::random_device{}() | 1) {}
  ~UcxEndpoint() override { Close(); }

  Status Start(const SocketAddress& addr);

  Result<UploadReceipt> Upload(const KvCache& cache, const UploadOptions& options) override {
    KVC_ASSIGN_OR_RETURN(OutgoingPayload payload, MakeUploadPayload(cache));
    return Send(std::move(payload), options);
  }
  Result<UploadReceipt> Send(OutgoingPayload payload, const UploadOptions& options) override;
  Result<CompactedCache> Fetch(std::string_view key, const FetchOptions& options) override;
  bool connected() const override { return connected_.load(); }
  const std::string& remote() const override { return remote_; }
  std::string Describe() const override;
  void Close() override;

  // PeerDelegate (progress thread)
  Result<StagingPool*> AdmitPayload(Peer& peer, uint64_t session,
                                    const PayloadDescriptor& desc) override;
  void OnPayload(Peer& peer, uint64_t session, PayloadDescriptor desc,
                 std::vector<StagingRef> buffers) override;
  void OnPayloadFailed(Peer& peer, uint64_t session, const Status& status) override;
  void OnFetchRequest(Peer& peer, uint64_t session, std::string key) override;
  void OnFetchError(Peer& peer, uint64_t session, const Status& status) override;
  void OnHelloAck(Peer& peer) override;
  void OnClosed(Peer& peer, const Status& why) override;

 private:
  std::shared_ptr<FetchWaiter> TakeWaiter(uint64_t session);
  void SetHello(const Status& st);

  const std::shared_ptr<UcxContext> ctx_;
  const std::string remote_;
  const ConnectOptions options_;
  std::shared_ptr<StagingPool> pool_;
  RegistrationCache regs_;
  std::shared_ptr<Peer> peer_;  // written on the progress thread before hello_ is set
  std::atomic<bool> connected_{false};
  std::atomic<bool> closed_{false};
  std::promise<Status> hello_;
  bool hello_set_ = false;                                              // progress thread
  std::unordered_map<uint64_t, std::shared_ptr<FetchWaiter>> waiters_;  // progress thread
  std::atomic<uint64_t> next_fetch_;
};

Status UcxEndpoint::Start(const SocketAddress& addr) {
  const auto deadline = Clock::now() + options_.connect_timeout;
  int sock = -1;
  KVC_ASSIGN_OR_RETURN(ServerHello server, ClientHandshake(addr, options_.connect_timeout, &sock));
  auto hello = hello_.get_future();
  const Status posted = ctx_->Post([this, server, sock] {
    Result<std::shared_ptr<Peer>> peer =
        Peer::Connect(ctx_.get(), server.worker_address, sock, remote_, this, PeerOptions());
    if (!peer.ok()) return SetHello(peer.status());
    peer_ = *peer;
    peer_->SendHello(server.token);
  });
  if (!posted.ok()) {
    close(sock);
    return posted;
  }
  if (hello.wait_until(deadline) != std::future_status::ready) {
    return Status::DeadlineExceeded("no answer from " + remote_ + " within " +
                                    std::to_string(options_.connect_timeout.count()) + " ms");
  }
  return hello.get();
}

void UcxEndpoint::SetHello(const Status& st) {
  if (hello_set_) return;
  hello_set_ = true;
  hello_.set_value(st);
}

Result<UploadReceipt> UcxEndpoint::Send(OutgoingPayload payload, const UploadOptions& options) {
  if (!connected()) return Status::Unavailable("not connected to " + remote_);
  const uint64_t bytes = payload.total_bytes();
  SendParams params;
  params.session = options.session_id;
  params.deadline = Clock::now() + options.timeout;
  params.rndv_threshold = options_.rndv_threshold;
  params.faults = options.faults;
  KVC_ASSIGN_OR_RETURN(uint64_t session,
                       SendPayload(*ctx_, peer_, std::move(payload), &regs_, params));
  return UploadReceipt{session, bytes};
}

Result<CompactedCache> UcxEndpoint::Fetch(std::string_view key, const FetchOptions& options) {
  if (!connected()) return Status::Unavailable("not connected to " + remote_);
  if (key.size() > kMaxKeyBytes) return Status::InvalidArgument("fetch key longer than 4096 bytes");
  uint64_t session = 0;
  while (session == 0) session = next_fetch_.fetch_add(1);
  auto waiter = std::make_shared<FetchWaiter>();
  auto result = waiter->future();
  KVC_RETURN_IF_ERROR(ctx_->Post([this, waiter, session, key = std::string(key)] {
    if (peer_ == nullptr || peer_->closed()) {
      return waiter->Set(Status::Unavailable("connection to " + remote_ + " is closed"));
    }
    waiters_[session] = waiter;
    peer_->SendFetchRequest(session, key);
  }));
  if (result.wait_for(options.timeout) != std::future_status::ready) {
    ctx_->Post([this, session] {
          waiters_.erase(session);
          if (peer_) peer_->DropIncoming(session, Status::DeadlineExceeded("the client gave up"));
        })
        .IgnoreError();
    return Status::DeadlineExceeded("fetch from " + remote_ + " did not finish within " +
                                    std::to_string(options.timeout.count()) + " ms");
  }
  return result.get();
}

std::string UcxEndpoint::Describe() const {
  std::promise<std::string> out;
  auto f = out.get_future();
  if (!ctx_->Post([this, &out] { out.set_value(peer_ ? peer_->Describe() : "not connected"); })
           .ok()) {
    return "context stopped";
  }
  return f.get();
}

void UcxEndpoint::Close() {
  if (closed_.exchange(true)) return;
  std::promise<void> done;
  auto f = done.get_future();
  const Status posted = ctx_->Post([this, &done] {
    if (peer_) peer_->Close(/*force=*/false, Status::Cancelled("closed by the client"));
    done.set_value();
  });
  if (posted.ok()) f.wait();
  connected_ = false;
}

// --- PeerDelegate -------------------------------------------------------------------------------

std::shared_ptr<FetchWaiter> UcxEndpoint::TakeWaiter(uint64_t session) {
  auto it = waiters_.find(session);
  if (it == waiters_.end()) return nullptr;
  auto w = std::move(it->second);
  waiters_.erase(it);
  return w;
}

Result<StagingPool*> UcxEndpoint::AdmitPayload(Peer&, uint64_t session,
                                               const PayloadDescriptor& desc) {
  if (waiters_.count(session) == 0) {
    return Status::InvalidArgument("no fetch waits for session " + std::to_string(session));
  }
  if (desc.kind != PayloadKind::kCompacted) {
    return Status::InvalidArgument("a fetch answer must be a compacted cache");
  }
  return pool_.get();
}

void UcxEndpoint::OnPayload(Peer& peer, uint64_t session, PayloadDescriptor desc,
                            std::vector<StagingRef> buffers) {
  std::shared_ptr<FetchWaiter> waiter = TakeWaiter(session);
  if (waiter == nullptr) return peer.FinishIncoming(session, Status::Cancelled("fetch abandoned"));
  UcxContext* ctx = ctx_.get();
  auto sp = peer.shared_from_this();
  const bool queued = ctx->verify_pool().Submit([ctx, sp, session, waiter, desc, buffers] {
    auto cache = std::make_shared<Result<CompactedCache>>(BuildCompactedCache(desc, buffers));
    const Status st = cache->ok() ? Status::OK() : cache->status();
    // Answer the worker before waking the caller, so the answer leaves even if the caller
    // closes the endpoint at once.
    const Status posted = ctx->Post([sp, session, st, waiter, cache] {
      sp->FinishIncoming(session, st);
      waiter->Set(std::move(*cache));
    });
    if (!posted.ok()) waiter->Set(posted);
  });
  if (!queued) {
    waiter->Set(Status::Cancelled("transport shutting down"));
    peer.FinishIncoming(session, Status::Cancelled("transport shutting down"));
  }
}

void UcxEndpoint::OnPayloadFailed(Peer&, uint64_t session, const Status& status) {
  if (auto w = TakeWaiter(session)) w->Set(status);
}

void UcxEndpoint::OnFetchRequest(Peer& peer, uint64_t session, std::string) {
  peer.SendFetchError(session, Status::NotSupported("a client endpoint serves no fetches"));
}

void UcxEndpoint::OnFetchError(Peer&, uint64_t session, const Status& status) {
  if (auto w = TakeWaiter(session)) w->Set(status);
}

void UcxEndpoint::OnHelloAck(Peer&) {
  connected_ = true;
  SetHello(Status::OK());
}

void UcxEndpoint::OnClosed(Peer&, const Status& why) {
  connected_ = false;
  const Status lost = Status::Unavailable("connection to " + remote_ + " lost: " + why.ToString());
  SetHello(lost);
  for (auto& [id, w] : waiters_) w->Set(lost);
  waiters_.clear();
}

}  // namespace

Result<std::unique_ptr<Endpoint>> Connect(std::shared_ptr<UcxContext> ctx, const std::string& host,
                                          uint16_t port, const ConnectOptions& options) {
  if (ctx == nullptr) return Status::InvalidArgument("Connect needs a UcxContext");
  KVC_ASSIGN_OR_RETURN(SocketAddress addr, ResolveAddress(host, port, /*passive=*/false));
  auto ep =
      std::make_unique<UcxEndpoint>(std::move(ctx), host + ":" + std::to_string(port), options);
  Status st = ep->Start(addr);
  if (!st.ok()) return st;  // the destructor closes what was opened
  return std::unique_ptr<Endpoint>(std::move(ep));
}

}  // namespace kvc::transport
