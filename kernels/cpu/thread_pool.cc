#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <exception>
#include <new>

namespace kvc::cpu {
namespace {

Status RunGuarded(const std::function<Status(int64_t, int)>& fn, int64_t i, int worker) {
  try {
    return fn(i, worker);
  } catch (const std::bad_alloc&) {
    return Status::ResourceExhausted("out of memory in task " + std::to_string(i));
  } catch (const std::exception& e) {
    return Status::Internal("task " + std::to_string(i) + " threw: " + e.what());
  } catch (...) {
    return Status::Internal("task " + std::to_string(i) + " threw an unknown exception");
  }
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunTasks(int worker) {
  for (;;) {
    int64_t i;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (next_ >= n_) return;
      i = next_++;
    }
    Status st = RunGuarded(*fn_, i, worker);
    if (!st.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      errors_[static_cast<size_t>(i)] = std::move(st);
    }
  }
}

void ThreadPool::WorkerLoop(int worker) {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      ++busy_;
    }
    RunTasks(worker);
    {
      std::lock_guard<std::mutex> lock(mu_);
      --busy_;
    }
    done_.notify_all();
  }
}

Status ThreadPool::ParallelFor(int64_t n, const std::function<Status(int64_t)>& fn) {
  return ParallelFor(n, [&fn](int64_t i, int) { return fn(i); });
}

Status ThreadPool::ParallelFor(int64_t n, const std::function<Status(int64_t, int)>& fn) {
  if (n <= 0) return Status::OK();
  std::lock_guard<std::mutex> run_lock(run_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    next_ = 0;
    errors_.assign(static_cast<size_t>(n), Status::OK());
    ++generation_;
  }
  wake_.notify_all();
  RunTasks(0);
  {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return busy_ == 0 && next_ >= n_; });
    fn_ = nullptr;
  }
  for (const Status& st : errors_) {
    if (!st.ok()) return st;
  }
  return Status::OK();
}

}  // namespace kvc::cpu
