#include "services/transport/ucx_context.h"

#include <poll.h>
#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <future>

#include "services/transport/ucx_status.h"
#include "services/transport/wire.h"

namespace kvc::transport {

using Clock = std::chrono::steady_clock;

// --- UcpContextHandle ---------------------------------------------------------------------------

Result<std::shared_ptr<UcpContextHandle>> UcpContextHandle::Create(const std::string& name) {
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) return FromUcs(st, "ucp_config_read").WithContext("UCX configuration");
  ucp_params_t params{};
  params.field_mask =
      UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_MT_WORKERS_SHARED | UCP_PARAM_FIELD_NAME;
  params.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.mt_workers_shared = 1;
  params.name = name.c_str();
  ucp_context_h context = nullptr;
  st = ucp_init(&params, config, &context);
  ucp_config_release(config);
  if (st != UCS_OK) return Status::Unavailable(FromUcs(st, "ucp_init").message());
  return std::shared_ptr<UcpContextHandle>(new UcpContextHandle(context));
}

UcpContextHandle::~UcpContextHandle() { ucp_cleanup(context_); }

Result<ucp_mem_h> UcpContextHandle::Map(void* addr, size_t len) {
  ucp_mem_map_params_t params{};
  params.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH;
  params.address = addr;
  params.length = len;
  ucp_mem_h memh = nullptr;
  const ucs_status_t st = ucp_mem_map(context_, &params, &memh);
  if (st != UCS_OK) return FromUcs(st, "ucp_mem_map of " + std::to_string(len) + " bytes");
  return memh;
}

void UcpContextHandle::Unmap(ucp_mem_h memh) { ucp_mem_unmap(context_, memh); }

// --- UcxContext: life cycle ---------------------------------------------------------------------

Result<std::shared_ptr<UcxContext>> UcxContext::Create(const UcxContextOptions& options) {
  KVC_ASSIGN_OR_RETURN(auto handle, UcpContextHandle::Create(options.name));
  std::shared_ptr<UcxContext> ctx(new UcxContext(std::move(handle), options));
  KVC_RETURN_IF_ERROR(ctx->Start());
  return ctx;
}

UcxContext::UcxContext(std::shared_ptr<UcpContextHandle> handle, const UcxContextOptions& options)
    : options_(options), handle_(std::move(handle)) {}

Status UcxContext::Start() {
  verify_pool_ =
      std::make_unique<TaskPool>(options_.verify_threads > 0 ? options_.verify_threads : 1);
  std::promise<Status> started;
  auto started_future = started.get_future();
  thread_ = std::thread([this, &started] {
    thread_id_ = std::this_thread::get_id();
    ucp_worker_params_t wp{};
    wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
    wp.thread_mode = UCS_THREAD_MODE_SINGLE;
    ucs_status_t st = ucp_worker_create(handle_->get(), &wp, &worker_);
    if (st == UCS_OK) st = ucp_worker_get_efd(worker_, &efd_);
    if (st == UCS_OK) {
      ucp_worker_attr_t attr{};
      attr.field_mask = UCP_WORKER_ATTR_FIELD_ADDRESS;
      st = ucp_worker_query(worker_, &attr);
      if (st == UCS_OK) {
        worker_address_.assign(reinterpret_cast<const char*>(attr.address), attr.address_length);
        ucp_worker_release_address(worker_, attr.address);
      }
    }
    if (st == UCS_OK) {
      ucp_am_handler_param_t hp{};
      hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                      UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
      hp.id = kAmId;
      hp.flags = UCP_AM_FLAG_WHOLE_MSG;
      hp.cb = &UcxContext::AmCallback;
      hp.arg = this;
      st = ucp_worker_set_am_recv_handler(worker_, &hp);
    }
    started.set_value(st == UCS_OK ? Status::OK()
                                   : Status::Unavailable(FromUcs(st, "UCP worker").message()));
    if (st == UCS_OK) Loop();
    if (worker_ != nullptr) ucp_worker_destroy(worker_);
    worker_ = nullptr;
  });
  Status st = started_future.get();
  if (!st.ok()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    thread_.join();
  }
  return st;
}

UcxContext::~UcxContext() {
  if (verify_pool_) verify_pool_->Shutdown();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (worker_ != nullptr) ucp_worker_signal(worker_);
  }
  if (thread_.joinable()) thread_.join();
}

// --- Posting and timers -------------------------------------------------------------------------

Status UcxContext::Post(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return Status::Cancelled("UCX context is shutting down");
  posted_.push_back(std::move(fn));
  has_posted_.store(true, std::memory_order_seq_cst);
  // Signal only a sleeping thread (a busy one finds the closure on its next turn); pairs with
  // the store-then-load in Sleep.
  if (sleeping_.load(std::memory_order_seq_cst)) ucp_worker_signal(worker_);
  return Status::OK();
}

void UcxContext::Wake() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stopping_ && worker_ != nullptr) ucp_worker_signal(worker_);
}

uint64_t UcxContext::AddTimer(std::chrono::milliseconds period, std::function<void()> fn) {
  const uint64_t id = next_timer_id_.fetch_add(1);
  auto add = [this, id, period, fn = std::move(fn)]() mutable {
    timers_.push_back(Timer{id, period, Clock::now() + period, std::move(fn)});
  };
  if (OnProgressThread()) {
    add();
  } else {
    Post(std::move(add)).IgnoreError();  // after shutdown timers no longer matter
  }
  return id;
}

void UcxContext::RemoveTimer(uint64_t id) {
  auto remove = [this, id] { std::erase_if(timers_, [id](const Timer& t) { return t.id == id; }); };
  if (OnProgressThread()) {
    remove();
  } else {
    Post(remove).IgnoreError();
  }
}

bool UcxContext::RunPosted() {
  if (!has_posted_.load(std::memory_order_acquire)) return false;
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    batch.swap(posted_);
    has_posted_.store(false, std::memory_order_relaxed);
  }
  for (auto& fn : batch) fn();
  return !batch.empty();
}

bool UcxContext::RunTimers(Clock::time_point now, int* sleep_ms) {
  bool ran = false;
  auto next = now + std::chrono::milliseconds(100);
  for (size_t i = 0; i < timers_.size(); ++i) {
    if (timers_[i].next <= now) {
      timers_[i].next = now + timers_[i].period;
      auto fn = timers_[i].fn;  // the callback may add or remove timers
      fn();
      ran = true;
    }
    if (i < timers_.size() && timers_[i].next < next) next = timers_[i].next;
  }
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
  *sleep_ms = static_cast<int>(std::max<int64_t>(0, ms));
  return ran;
}

// --- Progress loop ------------------------------------------------------------------------------

void UcxContext::Sleep(int timeout_ms) {
  sleeping_.store(true, std::memory_order_seq_cst);
  const ucs_status_t st = ucp_worker_arm(worker_);
  // A closure posted before `sleeping_` was set raised no signal, and one posted before the arm
  // may have had its signal drained by it: look for both before sleeping.
  if (st != UCS_ERR_BUSY && !has_posted_.load(std::memory_order_seq_cst)) {
    PollFds(st == UCS_OK ? timeout_ms : std::min(timeout_ms, 1), /*with_worker=*/true);
  }
  sleeping_.store(false, std::memory_order_relaxed);
}

void UcxContext::PollFds(int timeout_ms, bool with_worker) {
  std::vector<pollfd> fds;
  if (with_worker) fds.push_back(pollfd{efd_, POLLIN, 0});
  for (const auto& [fd, fn] : watched_) fds.push_back(pollfd{fd, POLLIN, 0});
  if (fds.empty()) return;
  if (::poll(fds.data(), fds.size(), timeout_ms) <= 0) return;
  for (const pollfd& p : fds) {
    if (p.revents == 0 || (with_worker && p.fd == efd_)) continue;
    auto it = watched_.find(p.fd);  // an earlier callback may have unwatched it
    if (it == watched_.end()) continue;
    auto fn = it->second;
    fn(p.revents);
  }
}

void UcxContext::Loop() {
  auto last_event = Clock::now();
  auto last_fd_check = last_event;
  for (;;) {
    bool active = RunPosted();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ && posted_.empty()) break;
    }
    for (int i = 0; i < 256; ++i) {
      if (ucp_worker_progress(worker_) == 0) break;
      active = true;
    }
    const auto now = Clock::now();
    int sleep_ms = 0;
    active |= RunTimers(now, &sleep_ms);
    if (active || now - last_event < options_.busy_poll) {
      if (active) last_event = now;
      if (!active) sched_yield();  // spin politely: runnable threads (hashing) go first
      if (!watched_.empty() && now - last_fd_check > std::chrono::milliseconds(1)) {
        PollFds(0, /*with_worker=*/false);
        last_fd_check = now;
      }
      continue;
    }
    Sleep(sleep_ms);
    last_event = last_fd_check = Clock::now();
  }
  ShutdownEndpoints();
}

void UcxContext::ShutdownEndpoints() {
  auto sinks = sinks_;
  for (auto& [ep, sink] : sinks) sink->OnContextShutdown();
  sinks.clear();
  const auto deadline = Clock::now() + std::chrono::seconds(1);
  while ((closing_ > 0 || has_posted_.load()) && Clock::now() < deadline) {
    RunPosted();
    ucp_worker_progress(worker_);
  }
  timers_.clear();
  hellos_.clear();
  watched_.clear();
  sinks_.clear();
  attached_count_ = 0;
}

// --- Endpoints ----------------------------------------------------------------------------------

void UcxContext::Attach(ucp_ep_h ep, std::shared_ptr<FrameSink> sink) {
  sinks_[ep] = std::move(sink);
  attached_count_ = sinks_.size();
}

void UcxContext::Detach(ucp_ep_h ep) {
  sinks_.erase(ep);
  attached_count_ = sinks_.size();
}

void UcxContext::CloseEndpoint(ucp_ep_h ep, bool force, std::function<void()> done) {
  struct Closing {
    UcxContext* ctx;
    std::function<void()> done;
  };
  auto* c = new Closing{this, std::move(done)};
  ucp_request_param_t p{};
  p.op_attr_mask =
      UCP_OP_ATTR_FIELD_FLAGS | UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
  p.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  p.cb.send = [](void* request, ucs_status_t, void* user_data) {
    auto* c = static_cast<Closing*>(user_data);
    --c->ctx->closing_;
    ucp_request_free(request);
    if (c->done) c->done();
    delete c;
  };
  p.user_data = c;
  void* req = ucp_ep_close_nbx(ep, &p);
  if (req != nullptr && !UCS_PTR_IS_ERR(req)) {
    ++closing_;
    return;
  }
  if (c->done) c->done();
  delete c;
}

void UcxContext::WatchFd(int fd, std::function<void(short)> on_event) {
  watched_[fd] = std::move(on_event);
}

void UcxContext::UnwatchFd(int fd) { watched_.erase(fd); }

void UcxContext::ExpectHello(uint64_t token, HelloClaim claim) {
  hellos_[token] = std::move(claim);
}

void UcxContext::ForgetHello(uint64_t token) { hellos_.erase(token); }

std::shared_ptr<FrameSink> UcxContext::ClaimHello(ucp_ep_h ep, const void* header,
                                                  size_t header_len) {
  Result<FrameHeader> h = ParseFrameHeader(header, header_len);
  if (!h.ok() || h->type != FrameType::kHello) return nullptr;
  auto it = hellos_.find(h->token);
  if (it == hellos_.end()) return nullptr;
  HelloClaim claim = std::move(it->second);
  hellos_.erase(it);
  return claim(ep);
}

ucp_err_handler_t UcxContext::ErrorHandler() {
  ucp_err_handler_t h{};
  h.cb = &UcxContext::ErrorCallback;
  h.arg = this;
  return h;
}

std::string UcxContext::DescribeEndpoint(ucp_ep_h ep) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  if (f == nullptr) return "";
  ucp_ep_print_info(ep, f);
  std::fclose(f);
  std::string out(buf, len);
  std::free(buf);
  return out;
}

ucs_status_t UcxContext::AmCallback(void* arg, const void* header, size_t header_len, void* data,
                                    size_t len, const ucp_am_recv_param_t* param) {
  auto* self = static_cast<UcxContext*>(arg);
  const bool has_ep = (param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) != 0;
  auto it = has_ep ? self->sinks_.find(param->reply_ep) : self->sinks_.end();
  std::shared_ptr<FrameSink> sink;  // a reference: the sink may detach itself
  if (it != self->sinks_.end()) {
    sink = it->second;
  } else if (has_ep) {
    sink = self->ClaimHello(param->reply_ep, header, header_len);  // a new connection's hello
  }
  if (sink == nullptr) {
    // A frame from an endpoint that is closing or was never attached: drop it.
    return (param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) ? UCS_ERR_NOT_CONNECTED : UCS_OK;
  }
  return sink->OnFrame(header, header_len, data, len, param);
}

void UcxContext::ErrorCallback(void* arg, ucp_ep_h ep, ucs_status_t status) {
  auto* self = static_cast<UcxContext*>(arg);
  auto it = self->sinks_.find(ep);
  if (it == self->sinks_.end()) return;
  std::shared_ptr<FrameSink> sink = it->second;
  sink->OnEndpointError(status);
}

}  // namespace kvc::transport
