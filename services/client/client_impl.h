// Client::Impl: the client's state and its retry loop (internal to services/client; the
// contract is in client.h).
//
// Thread safety: every method is thread-safe; the worker list is fixed at construction.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "services/client/backoff.h"
#include "services/client/client.h"
#include "services/client/worker_channel.h"
#include "services/transport/ucx_context.h"

namespace kvc::client {

// One attempt of an operation on one worker.
struct Attempt {
  WorkerChannel* worker = nullptr;
  Clock::time_point deadline;  // this attempt's share of the operation's budget
  int index = 0;               // 0-based attempt number
  int64_t retry_after_ms = 0;  // set by the attempt when the worker answered Busy
};

// Errors another worker would not necessarily repeat: the operation moves on.
bool Retryable(Code code);

class Client::Impl {
 public:
  explicit Impl(ClientOptions options);
  ~Impl();

  const ClientOptions& options() const { return options_; }
  const std::vector<std::string>& ids() const { return ids_; }
  WorkerChannel& worker(size_t i) { return *workers_[i]; }
  size_t size() const { return workers_.size(); }
  // Index of the worker with this id, or -1.
  int IndexOf(const std::string& id) const;

  // The deadline of an operation starting now: call.timeout, or `fallback` when that is 0.
  static Clock::time_point Deadline(const CallOptions& call, std::chrono::milliseconds fallback);

  // Rendezvous order of `route_hash`, with workers suspected now moved (stably) to the back.
  std::vector<size_t> Order(const std::string& route_hash) const;
  // `first` (when >= 0) followed by Order(route_hash) without it.
  std::vector<size_t> OrderWithFirst(int first, const std::string& route_hash) const;

  // Runs `fn(Attempt&) -> Result<T>` over `order` (cycling) for up to max_attempts attempts
  // within `deadline`, as client.h describes. *attempts (optional) receives the attempts made.
  template <typename T, typename Fn>
  Result<T> Run(const char* op, const std::vector<size_t>& order, Clock::time_point deadline,
                Fn&& fn, int* attempts = nullptr);

  // Before attempt `a.index` > 0: backoff and the worker's Busy window. False (with a note in
  // *failures) when the wait does not fit in the budget.
  bool WaitBeforeAttempt(const Attempt& a, Clock::time_point deadline, std::string* failures);
  // Records a retryable failure: health marks, and "<worker>: <status>" in *failures.
  void NoteFailure(WorkerChannel& w, const Status& status, int64_t retry_after_ms,
                   std::string* failures);
  // The status when every attempt failed: Unavailable "recompute: no worker could serve ...".
  static Status Exhausted(const char* op, const std::string& failures);

  // The process's UCX context, created on first use. Unavailable (every later call too) when UCX
  // cannot start here.
  Result<std::shared_ptr<transport::UcxContext>> Ucx();

 private:
  const ClientOptions options_;
  Jitter jitter_;
  std::mutex ucx_mu_;
  bool ucx_tried_ = false;
  Status ucx_error_;
  std::shared_ptr<transport::UcxContext> ucx_;  // declared before workers_: outlives endpoints
  std::vector<std::unique_ptr<WorkerChannel>> workers_;
  std::vector<std::string> ids_;
};

template <typename T, typename Fn>
Result<T> Client::Impl::Run(const char* op, const std::vector<size_t>& order,
                            Clock::time_point deadline, Fn&& fn, int* attempts) {
  std::string failures;
  const int n = options_.max_attempts;
  for (int i = 0; i < n && !order.empty(); ++i) {
    Attempt a;
    a.worker = workers_[order[static_cast<size_t>(i) % order.size()]].get();
    a.index = i;
    if (i > 0 && !WaitBeforeAttempt(a, deadline, &failures)) continue;
    const auto left = Remaining(deadline);
    if (left.count() <= 0) break;
    a.deadline = Clock::now() + left / (n - i);
    if (attempts != nullptr) *attempts = i + 1;
    Result<T> r = fn(a);
    if (r.ok()) {
      a.worker->MarkHealthy();
      return r;
    }
    if (!Retryable(r.status().code())) {
      return r.status().WithContext("worker " + a.worker->id());
    }
    NoteFailure(*a.worker, r.status(), a.retry_after_ms, &failures);
  }
  return Exhausted(op, failures.empty() ? "the time budget ran out" : failures);
}

}  // namespace kvc::client
