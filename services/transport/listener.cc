#include "services/transport/listener.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <future>
#include <random>
#include <unordered_map>

#include "services/transport/address.h"
#include "services/transport/bootstrap.h"
#include "services/transport/payload.h"
#include "services/transport/peer.h"
#include "services/transport/task_pool.h"
#include "services/transport/ucx_status.h"

namespace kvc::transport {

using Clock = std::chrono::steady_clock;

class Listener::Impl final : public PeerDelegate {
 public:
  Impl(std::shared_ptr<UcxContext> ctx, const ListenerOptions& options, UploadHandler on_upload,
       FetchHandler on_fetch)
      : ctx_(std::move(ctx)),
        options_(options),
        on_upload_(std::move(on_upload)),
        on_fetch_(std::move(on_fetch)),
        pool_(options.staging ? options.staging
                              : StagingPool::Create(ctx_->handle(), {options.staging_bytes,
                                                                     options.staging_bytes})),
        handlers_(std::max(1, options.handler_threads)) {
    peer_options_.idle_timeout = options.upload_idle_timeout;
  }
  ~Impl() override { Stop(); }

  Status Start(const SocketAddress& addr);
  void Stop();
  ListenerStats stats() const;
  uint16_t port() const { return port_; }
  const std::string& address() const { return address_; }
  const std::shared_ptr<StagingPool>& staging() const { return pool_; }

  // PeerDelegate (progress thread)
  Result<StagingPool*> AdmitPayload(Peer& peer, uint64_t session,
                                    const PayloadDescriptor& desc) override;
  void OnPayload(Peer& peer, uint64_t session, PayloadDescriptor desc,
                 std::vector<StagingRef> buffers) override;
  void OnPayloadFailed(Peer& peer, uint64_t session, const Status& status) override;
  void OnFetchRequest(Peer& peer, uint64_t session, std::string key) override;
  void OnFetchError(Peer&, uint64_t, const Status&) override {}
  void OnHelloAck(Peer&) override {}
  void OnClosed(Peer& peer, const Status& why) override;

 private:
  // A TCP bootstrap connection that has not said hello over UCX yet (see bootstrap.h).
  struct Pending {
    std::string name;
    std::string received;
    uint64_t token = 0;  // non-zero once answered
    Clock::time_point deadline;
  };
  void AcceptAll();
  void OnBootstrapReadable(int fd);
  std::shared_ptr<FrameSink> AdoptHello(int fd, ucp_ep_h ep);
  void DropPending(int fd);
  void Sweep();
  Status RunUploadHandler(const UploadInfo& info, KvCache cache);
  void ServeFetch(const std::shared_ptr<Peer>& peer, uint64_t session, const std::string& key);

  struct Counters {
    std::atomic<uint64_t> accepted{0}, open{0}, lost{0}, completed{0}, rejected{0}, invalid{0},
        over_budget{0}, corrupt{0}, timed_out{0}, aborted{0}, bytes{0}, fetched{0}, fetch_failed{0};
  };

  const std::shared_ptr<UcxContext> ctx_;
  const ListenerOptions options_;
  const UploadHandler on_upload_;
  const FetchHandler on_fetch_;
  std::shared_ptr<StagingPool> pool_;
  TaskPool handlers_;
  PeerOptions peer_options_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::string address_;
  uint64_t sweep_timer_ = 0;
  bool stopping_ = false;                                   // progress thread
  std::unordered_map<Peer*, std::shared_ptr<Peer>> peers_;  // progress thread
  std::unordered_map<int, Pending> pending_;                // by socket; progress thread
  std::mt19937_64 random_{std::random_device{}()};          // progress thread
  std::atomic<bool> stopped_{false};
  Counters n_;
};

Status Listener::Impl::Start(const SocketAddress& addr) {
  KVC_ASSIGN_OR_RETURN(listen_fd_, ListenSocket(addr));
  Result<SocketAddress> bound = LocalAddress(listen_fd_);
  port_ = bound.ok() ? AddressPort(bound->storage) : 0;
  address_ = bound.ok() ? AddressToString(bound->storage) : AddressToString(addr.storage);
  std::promise<void> watching;
  KVC_RETURN_IF_ERROR(ctx_->Post([&] {
    ctx_->WatchFd(listen_fd_, [this](short) { AcceptAll(); });
    watching.set_value();
  }));
  watching.get_future().wait();
  const auto period = std::clamp(options_.upload_idle_timeout / 4, std::chrono::milliseconds(10),
                                 std::chrono::milliseconds(1000));
  sweep_timer_ = ctx_->AddTimer(period, [this] { Sweep(); });
  return Status::OK();
}

void Listener::Impl::Stop() {
  if (stopped_.exchange(true)) return;
  std::promise<void> done;
  auto f = done.get_future();
  const Status posted = ctx_->Post([&] {
    stopping_ = true;
    if (sweep_timer_) ctx_->RemoveTimer(sweep_timer_);
    if (listen_fd_ >= 0) {
      ctx_->UnwatchFd(listen_fd_);
      close(listen_fd_);
      listen_fd_ = -1;
    }
    std::vector<int> pending;
    for (auto& [fd, p] : pending_) pending.push_back(fd);
    for (int fd : pending) DropPending(fd);
    auto peers = peers_;
    for (auto& [raw, peer] : peers) {
      peer->Close(/*force=*/false, Status::Cancelled("listener stopped"));
    }
    peers_.clear();
    done.set_value();
  });
  if (posted.ok()) f.wait();
  if (listen_fd_ >= 0) close(listen_fd_);  // the context was already gone
  handlers_.Shutdown();
}

// --- Bootstrap connections ----------------------------------------------------------------------

void Listener::Impl::AcceptAll() {
  for (;;) {
    SocketAddress from;
    from.length = sizeof(from.storage);
    const int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&from.storage), &from.length,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: drained (other errors: the next poll retries)
    if (stopping_) {
      close(fd);
      continue;
    }
    pending_[fd] =
        Pending{AddressToString(from.storage), {}, 0, Clock::now() + std::chrono::seconds(10)};
    ctx_->WatchFd(fd, [this, fd](short) { OnBootstrapReadable(fd); });
  }
}

void Listener::Impl::OnBootstrapReadable(int fd) {
  auto it = pending_.find(fd);
  if (it == pending_.end()) return;
  Pending& p = it->second;
  char buf[kClientHelloBytes];
  const size_t want = p.token ? sizeof(buf) : kClientHelloBytes - p.received.size();
  const ssize_t n = read(fd, buf, want);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0 || p.token != 0) return DropPending(fd);  // closed, or talking out of turn
  p.received.append(buf, static_cast<size_t>(n));
  if (p.received.size() < kClientHelloBytes) return;
  const Status st = ParseClientHello(p.received.data());
  uint64_t token = 0;
  while (token == 0) token = random_();
  if (!WriteAll(fd, EncodeServerHello(st, token, ctx_->worker_address())) || !st.ok()) {
    return DropPending(fd);
  }
  p.token = token;
  ctx_->ExpectHello(token, [this, fd](ucp_ep_h ep) { return AdoptHello(fd, ep); });
}

std::shared_ptr<FrameSink> Listener::Impl::AdoptHello(int fd, ucp_ep_h ep) {
  auto it = pending_.find(fd);
  if (it == pending_.end()) return nullptr;
  const std::string name = it->second.name;
  pending_.erase(it);
  ctx_->UnwatchFd(fd);
  Result<std::shared_ptr<Peer>> peer = Peer::Adopt(ctx_.get(), ep, fd, name, this, peer_options_);
  if (!peer.ok()) return nullptr;
  peers_[peer->get()] = *peer;
  ++n_.accepted;
  ++n_.open;
  return *peer;
}

void Listener::Impl::DropPending(int fd) {
  auto it = pending_.find(fd);
  if (it == pending_.end()) return;
  if (it->second.token) ctx_->ForgetHello(it->second.token);
  pending_.erase(it);
  ctx_->UnwatchFd(fd);
  close(fd);
}

void Listener::Impl::Sweep() {
  const auto now = Clock::now();
  for (auto& [raw, peer] : peers_) peer->Sweep(now);
  std::vector<int> expired;
  for (auto& [fd, p] : pending_) {
    if (now > p.deadline) expired.push_back(fd);
  }
  for (int fd : expired) DropPending(fd);
}

ListenerStats Listener::Impl::stats() const {
  ListenerStats s;
  s.connections_accepted = n_.accepted;
  s.connections_open = n_.open;
  s.connections_lost = n_.lost;
  s.uploads_completed = n_.completed;
  s.uploads_rejected = n_.rejected;
  s.uploads_invalid = n_.invalid;
  s.uploads_over_budget = n_.over_budget;
  s.uploads_corrupt = n_.corrupt;
  s.uploads_timed_out = n_.timed_out;
  s.uploads_aborted = n_.aborted;
  s.bytes_received = n_.bytes;
  s.fetches_served = n_.fetched;
  s.fetches_failed = n_.fetch_failed;
  s.staging_in_use = pool_->bytes_in_use();
  s.staging_cached = pool_->bytes_cached();
  return s;
}

// --- Uploads ------------------------------------------------------------------------------------

Result<StagingPool*> Listener::Impl::AdmitPayload(Peer&, uint64_t, const PayloadDescriptor& desc) {
  if (desc.kind != PayloadKind::kKvCache) {
    return Status::NotSupported("a worker accepts KV cache uploads only");
  }
  if (!on_upload_) return Status::NotSupported("this listener accepts no uploads");
  return pool_.get();
}

void Listener::Impl::OnPayload(Peer& peer, uint64_t session, PayloadDescriptor desc,
                               std::vector<StagingRef> buffers) {
  const UploadInfo info{session, peer.name(), desc.total_bytes()};
  auto sp = peer.shared_from_this();
  const bool queued = handlers_.Submit([this, sp, info, desc, buffers]() mutable {
    Result<KvCache> cache = BuildKvCache(desc, buffers);
    buffers.clear();  // the cache's tensors hold them now
    const Status st = cache.ok() ? RunUploadHandler(info, std::move(*cache)) : cache.status();
    ++(st.ok() ? n_.completed : n_.rejected);
    if (st.ok()) n_.bytes += info.bytes;
    ctx_->Post([sp, st, id = info.session] { sp->FinishIncoming(id, st); }).IgnoreError();
  });
  if (!queued) {
    ++n_.aborted;
    peer.FinishIncoming(session, Status::Cancelled("listener stopping"));
  }
}

Status Listener::Impl::RunUploadHandler(const UploadInfo& info, KvCache cache) {
  try {
    return on_upload_(info, std::move(cache));
  } catch (const std::exception& e) {
    return Status::Internal(std::string("upload handler threw: ") + e.what());
  } catch (...) {
    return Status::Internal("upload handler threw");
  }
}

void Listener::Impl::OnPayloadFailed(Peer&, uint64_t, const Status& status) {
  switch (status.code()) {
    case Code::kResourceExhausted:
      ++n_.over_budget;
      break;
    case Code::kCorruption:
      ++n_.corrupt;
      break;
    case Code::kDeadlineExceeded:
      ++n_.timed_out;
      break;
    case Code::kInvalidArgument:
    case Code::kNotSupported:
      ++n_.invalid;
      break;
    default:
      ++n_.aborted;
      break;
  }
}

void Listener::Impl::OnClosed(Peer& peer, const Status& why) {
  peers_.erase(&peer);
  --n_.open;
  if (why.code() == Code::kUnavailable) ++n_.lost;
}

// --- Fetches ------------------------------------------------------------------------------------

void Listener::Impl::OnFetchRequest(Peer& peer, uint64_t session, std::string key) {
  if (!on_fetch_) {
    ++n_.fetch_failed;
    return peer.SendFetchError(session, Status::NotSupported("this listener serves no fetches"));
  }
  auto sp = peer.shared_from_this();
  if (!handlers_.Submit([this, sp, session, key] { ServeFetch(sp, session, key); })) {
    peer.SendFetchError(session, Status::Cancelled("listener stopping"));
  }
}

void Listener::Impl::ServeFetch(const std::shared_ptr<Peer>& peer, uint64_t session,
                                const std::string& key) {
  Result<CompactedCache> cache = Status::Internal("fetch handler threw");
  try {
    cache = on_fetch_(FetchRequest{session, key, peer->name()});
  } catch (const std::exception& e) {
    cache = Status::Internal(std::string("fetch handler threw: ") + e.what());
  } catch (...) {
  }
  Result<OutgoingPayload> payload = cache.ok() ? MakeFetchPayload(*cache) : cache.status();
  if (!payload.ok()) {
    ++n_.fetch_failed;
    const Status st = payload.status();
    ctx_->Post([peer, session, st] { peer->SendFetchError(session, st); }).IgnoreError();
    return;
  }
  SendParams params;
  params.session = session;
  params.deadline = Clock::now() + options_.push_timeout;
  params.rndv_threshold = options_.rndv_threshold;
  Result<uint64_t> sent = SendPayload(*ctx_, peer, std::move(*payload), nullptr, params);
  ++(sent.ok() ? n_.fetched : n_.fetch_failed);
}

// --- Listener -----------------------------------------------------------------------------------

Result<std::unique_ptr<Listener>> Listener::Start(std::shared_ptr<UcxContext> ctx,
                                                  const ListenerOptions& options,
                                                  UploadHandler on_upload, FetchHandler on_fetch) {
  if (ctx == nullptr) return Status::InvalidArgument("Listener needs a UcxContext");
  KVC_ASSIGN_OR_RETURN(SocketAddress addr,
                       ResolveAddress(options.address, options.port, /*passive=*/true));
  auto impl =
      std::make_unique<Impl>(std::move(ctx), options, std::move(on_upload), std::move(on_fetch));
  KVC_RETURN_IF_ERROR(impl->Start(addr));
  return std::unique_ptr<Listener>(new Listener(std::move(impl)));
}

Listener::Listener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Listener::~Listener() { Stop(); }
uint16_t Listener::port() const { return impl_->port(); }
std::string Listener::address() const { return impl_->address(); }
ListenerStats Listener::stats() const { return impl_->stats(); }
const std::shared_ptr<StagingPool>& Listener::staging() const { return impl_->staging(); }
void Listener::Stop() { impl_->Stop(); }

}  // namespace kvc::transport
