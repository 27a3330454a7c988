// The worker's event loop: signals, timers and the shutdown sequence.
#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <csignal>

#include "services/worker/worker.h"

namespace kvc::worker {

void Worker::ArmSignals() {
  signals_.add(SIGINT);
  signals_.add(SIGTERM);
  WaitSignal();
}

void Worker::WaitSignal() {
  signals_.async_wait([this](const boost::system::error_code& ec, int signo) {
    if (ec) return;  // cancelled at shutdown
    BeginShutdown(signo == SIGINT ? "SIGINT" : "SIGTERM");
    WaitSignal();  // a second signal is logged, not fatal
  });
}

void Worker::ArmMaintenance() {
  maintenance_timer_.expires_after(std::chrono::milliseconds(options_.maintenance_ms));
  maintenance_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || shutting_down_) return;
    // Store passes may take a while: run them off the event loop, one at a time.
    if (!maintenance_running_.exchange(true)) {
      boost::asio::post(background_, [this] {
        Status st = store_->RunMaintenance();
        if (!st.ok()) spdlog::warn("worker: store maintenance: {}", st.ToString());
        engine_->RunMaintenance();
        maintenance_running_ = false;
      });
    }
    ArmMaintenance();
  });
}

void Worker::ArmStats() {
  if (options_.stats_ms <= 0) return;
  stats_timer_.expires_after(std::chrono::milliseconds(options_.stats_ms));
  stats_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || shutting_down_) return;
    const engine::EngineStats s = engine_->Stats();
    spdlog::info(
        "stats: queue={}/{} running={} jobs ok={} failed={} cancelled={} rejected={} "
        "staged={} ({} bytes) store puts={} entries hot={} warm={} cold={}",
        s.queue_depth, s.queue_capacity, s.running_jobs, s.jobs_succeeded, s.jobs_failed,
        s.jobs_cancelled, s.jobs_rejected, s.staged_uploads, s.staged_bytes, s.store.puts,
        s.store.hot.entries, s.store.warm.entries, s.store.cold.entries);
    ArmStats();
  });
}

void Worker::RequestShutdown() {
  boost::asio::post(io_, [this] { BeginShutdown("requested"); });
}

void Worker::BeginShutdown(const std::string& why) {
  if (shutting_down_.exchange(true)) {
    spdlog::info("worker: {} while already shutting down; still draining", why);
    return;
  }
  spdlog::info("worker: shutting down ({})", why);
  maintenance_timer_.cancel();
  stats_timer_.cancel();
  // The blocking part (draining jobs, stopping servers) runs on its own thread so the event
  // loop keeps answering /healthz (503) meanwhile; it hands back to the loop to finish.
  shutdown_thread_ = std::thread([this] {
    StopServices();
    boost::asio::post(io_, [this] {
      if (http_) http_->Stop();
      signals_.cancel();
      io_.stop();
    });
  });
}

Status Worker::Run() {
  if (!started_) return Status::FailedPrecondition("worker: Run before a successful Start");
  try {
    io_.run();
  } catch (const std::exception& e) {
    spdlog::critical("worker: event loop failed: {}", e.what());
    StopServices();
    return Status::Internal(std::string("event loop: ") + e.what());
  }
  if (shutdown_thread_.joinable()) shutdown_thread_.join();
  background_.join();
  spdlog::info("worker: stopped");
  return Status::OK();
}

}  // namespace kvc::worker
