// A small fixed pool of threads running queued tasks in FIFO order: the transport uses one to
// verify checksums of received tensors and one per Listener to run user handlers, so neither
// blocks the UCX progress thread.
//
// Thread safety: Submit may be called from any thread, including a task.
// Shutdown (or the destructor) stops accepting tasks, lets running tasks finish, drops queued
// ones (their captures are destroyed on the calling thread) and joins the threads.
// REQUIRES: Shutdown is not called from one of the pool's own threads.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kvc::transport {

class TaskPool {
 public:
  // REQUIRES: threads >= 1.
  explicit TaskPool(int threads);
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  // Queues `task`; false (task dropped) after Shutdown.
  bool Submit(std::function<void()> task);
  void Shutdown();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace kvc::transport
