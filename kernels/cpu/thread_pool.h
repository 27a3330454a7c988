// A small fixed-size thread pool for the CPU kernels: ParallelFor over independent tasks such as
// (layer, head) pairs.
//
// Determinism: tasks are independent and each writes only its own outputs, so results do not
// depend on the number of threads or on which thread runs a task. When several tasks fail, the
// status of the lowest failing index is returned, whatever the interleaving.
//
// Thread safety: one ParallelFor at a time per pool (calls from several threads are serialised).
// `fn` runs concurrently on up to threads() threads (the calling thread included) and must be
// safe to run so. Exceptions thrown by `fn` are caught and reported as Internal (std::bad_alloc
// as ResourceExhausted); they never cross the pool.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/status.h"

namespace kvc::cpu {

class ThreadPool {
 public:
  // threads <= 0 means std::thread::hardware_concurrency(). The calling thread counts as one:
  // a pool of 1 runs everything inline and starts no thread.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(i, worker) for every i in [0, n) and waits for all of them; `worker` in
  // [0, threads()) names the thread running the task (for per-thread scratch space; no two tasks
  // run with the same worker at once). Returns OK or the status of the lowest failing index.
  // Every task runs even when an earlier one failed.
  Status ParallelFor(int64_t n, const std::function<Status(int64_t, int)>& fn);
  // The same without the worker index.
  Status ParallelFor(int64_t n, const std::function<Status(int64_t)>& fn);

 private:
  void WorkerLoop(int worker);
  void RunTasks(int worker);

  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // serialises ParallelFor calls
  std::mutex mu_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<Status(int64_t, int)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t next_ = 0;
  int busy_ = 0;             // workers inside the current batch
  uint64_t generation_ = 0;  // bumped per batch
  bool stop_ = false;
  std::vector<Status> errors_;  // per index, filled only on failure
};

}  // namespace kvc::cpu
