// UcxContext: one UCP context, one UCP worker and the thread that progresses it.
//
// Features: UCP_FEATURE_AM (all traffic is active messages; large ones move by rendezvous,
// zero copy between registered buffers, see wire.h for why not tagged sends) and
// UCP_FEATURE_WAKEUP (the progress thread sleeps on the worker's event fd when idle). TAG and
// RMA are not requested: the protocol uses neither directly (UCX's rendezvous uses RMA
// internally without the feature). The transports come from UCX itself: UCX_TLS and the other
// UCX_* variables are read from the environment when the context is created; UCX selects
// shared memory on one host, TCP across hosts, RDMA where present.
//
// Threading: the worker is created UCS_THREAD_MODE_SINGLE, on the progress thread, and is touched
// only by it. Every other thread talks to it by posting a closure (Post), which wakes the thread
// through ucp_worker_signal when it sleeps; an event loop that wants to nudge the thread calls
// Wake(). The UCP context is created with mt_workers_shared so memory registration
// (UcpContextHandle::Map) is safe from any thread. Progress loop: drain posted closures,
// ucp_worker_progress until it returns 0, run due timers; after `busy_poll` without events,
// ucp_worker_arm and poll() the event fd together with the watched sockets (bounded by the next
// timer). While busy, watched sockets are checked about every millisecond.
//
// Shutdown (destructor): stops the verification pool, then the progress thread closes every
// endpoint still attached (force mode, waiting up to one second for the closes), the thread is
// joined and the worker destroyed. The UCP context itself lives on (in UcpContextHandle) while
// registered staging buffers still refer to it.
#pragma once

#include <ucp/api/ucp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "services/transport/task_pool.h"

namespace kvc::transport {

// Owns the ucp_context_h; shared by the UcxContext and every registered buffer, so the context is
// cleaned up only after the last registration is released.
// Thread safety: Map/Unmap may be called from any thread.
class UcpContextHandle {
 public:
  // Reads the UCX configuration from the environment. Unavailable if UCX cannot start.
  static Result<std::shared_ptr<UcpContextHandle>> Create(const std::string& name);
  ~UcpContextHandle();
  UcpContextHandle(const UcpContextHandle&) = delete;
  UcpContextHandle& operator=(const UcpContextHandle&) = delete;

  ucp_context_h get() const { return context_; }
  // Registers [addr, addr + len) with every memory domain. REQUIRES: len > 0.
  Result<ucp_mem_h> Map(void* addr, size_t len);
  // REQUIRES: memh came from Map on this handle and no operation uses it any more.
  void Unmap(ucp_mem_h memh);

 private:
  explicit UcpContextHandle(ucp_context_h c) : context_(c) {}
  ucp_context_h context_;
};

// Receives the frames and errors of one endpoint. Implemented by the transport's Peer.
// All methods run on the progress thread.
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  // An active message with id kAmId arrived on this endpoint (arguments as in
  // ucp_am_recv_callback_t).
  virtual ucs_status_t OnFrame(const void* header, size_t header_len, void* data, size_t len,
                               const ucp_am_recv_param_t* param) = 0;
  // UCX reported the endpoint failed (peer gone, connection reset, ...).
  virtual void OnEndpointError(ucs_status_t status) = 0;
  // The context is shutting down: fail everything pending and close the endpoint.
  virtual void OnContextShutdown() = 0;
};

struct UcxContextOptions {
  // Name given to the UCP context (shows in UCX logs). Default: "kvcompact".
  std::string name = "kvcompact";
  // How long the progress thread keeps polling after the last event before it sleeps on the
  // event fd. Longer cuts wake-up latency on busy links at the cost of a spinning core.
  // Default: 200 us.
  std::chrono::microseconds busy_poll{200};
  // Threads that verify checksums of received tensors. Default: 1.
  int verify_threads = 1;
};

class UcxContext {
 public:
  // Creates the context and worker and starts the progress thread. Unavailable when UCX cannot
  // be initialised (no usable transport, bad UCX_* environment).
  static Result<std::shared_ptr<UcxContext>> Create(const UcxContextOptions& options = {});
  // REQUIRES: not called on the progress thread or a verification thread.
  ~UcxContext();
  UcxContext(const UcxContext&) = delete;
  UcxContext& operator=(const UcxContext&) = delete;

  // Runs `fn` on the progress thread soon, in posting order. Thread-safe. Returns Cancelled (and
  // drops fn) once shutdown has begun.
  Status Post(std::function<void()> fn);
  // Wakes the progress thread if it sleeps. Thread-safe; for event loops.
  void Wake();
  bool OnProgressThread() const { return std::this_thread::get_id() == thread_id_; }

  // Calls `fn` every `period` on the progress thread until RemoveTimer(id). Thread-safe.
  uint64_t AddTimer(std::chrono::milliseconds period, std::function<void()> fn);
  void RemoveTimer(uint64_t id);

  // --- For the transport's own classes -----------------------------------------------------
  ucp_worker_h worker() const { return worker_; }
  const std::shared_ptr<UcpContextHandle>& handle() const { return handle_; }
  TaskPool& verify_pool() { return *verify_pool_; }
  // Progress thread only: routes frames and errors of `ep` to `sink` / stops routing them.
  void Attach(ucp_ep_h ep, std::shared_ptr<FrameSink> sink);
  void Detach(ucp_ep_h ep);
  // Progress thread only: closes `ep` (detach first); force skips flushing. The close completes
  // in the background (shutdown waits for it, up to a second); `done`, if given, runs on the
  // progress thread when it has.
  void CloseEndpoint(ucp_ep_h ep, bool force, std::function<void()> done = nullptr);
  // The error handler to put in ucp_ep_params_t for endpoints attached to this context.
  ucp_err_handler_t ErrorHandler();
  // Progress thread only: calls `on_event` with poll()'s revents when `fd` is readable or
  // failed / stops watching it. The context never closes watched descriptors.
  void WatchFd(int fd, std::function<void(short revents)> on_event);
  void UnwatchFd(int fd);
  // Progress thread only: a hello frame carrying `token` from an endpoint no sink owns yet is
  // offered to `claim`, which returns the sink it attached for that endpoint (or null to drop).
  using HelloClaim = std::function<std::shared_ptr<FrameSink>(ucp_ep_h ep)>;
  void ExpectHello(uint64_t token, HelloClaim claim);
  void ForgetHello(uint64_t token);
  // This worker's UCP address (what a peer needs to create an endpoint to it).
  const std::string& worker_address() const { return worker_address_; }
  // Progress thread only: UCX's description of the endpoint's lanes and transports.
  static std::string DescribeEndpoint(ucp_ep_h ep);
  // Number of endpoints attached now. Thread-safe (approximate while traffic runs).
  size_t attached() const { return attached_count_.load(); }

 private:
  UcxContext(std::shared_ptr<UcpContextHandle> handle, const UcxContextOptions& options);
  Status Start();
  void Loop();
  bool RunPosted();
  bool RunTimers(std::chrono::steady_clock::time_point now, int* sleep_ms);
  void Sleep(int timeout_ms);
  void PollFds(int timeout_ms, bool with_worker);
  std::shared_ptr<FrameSink> ClaimHello(ucp_ep_h ep, const void* header, size_t header_len);
  void ShutdownEndpoints();
  static ucs_status_t AmCallback(void* arg, const void* header, size_t header_len, void* data,
                                 size_t len, const ucp_am_recv_param_t* param);
  static void ErrorCallback(void* arg, ucp_ep_h ep, ucs_status_t status);

  struct Timer {
    uint64_t id;
    std::chrono::milliseconds period;
    std::chrono::steady_clock::time_point next;
    std::function<void()> fn;
  };

  const UcxContextOptions options_;
  std::shared_ptr<UcpContextHandle> handle_;
  ucp_worker_h worker_ = nullptr;
  int efd_ = -1;
  std::string worker_address_;
  std::unique_ptr<TaskPool> verify_pool_;

  std::mutex mu_;  // guards posted_ and stopping_
  std::vector<std::function<void()>> posted_;
  bool stopping_ = false;
  std::atomic<bool> has_posted_{false};
  std::atomic<bool> sleeping_{false};  // the progress thread is (about to be) in poll()

  std::thread thread_;
  std::thread::id thread_id_;
  std::atomic<uint64_t> next_timer_id_{1};
  std::vector<Timer> timers_;                                       // progress thread only
  std::unordered_map<ucp_ep_h, std::shared_ptr<FrameSink>> sinks_;  // progress thread only
  std::unordered_map<int, std::function<void(short)>> watched_;     // progress thread only
  std::unordered_map<uint64_t, HelloClaim> hellos_;                 // progress thread only
  std::atomic<size_t> attached_count_{0};
  int closing_ = 0;  // endpoint closes in flight (progress thread only)
};

}  // namespace kvc::transport
