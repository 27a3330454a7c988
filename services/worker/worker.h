// Worker: kvcompactd assembled. Owns the store, the engine, the UCX data plane, the Thrift
// server, the HTTP endpoint and the Boost.Asio event loop that ties them together:
//
//   signals   SIGINT / SIGTERM -> graceful shutdown (below)
//   timers    maintenance (store TTL sweeps and demotion, engine housekeeping) every
//             maintenance_ms on a background thread; a one-line stats log every stats_ms
//   HTTP      GET /metrics (Prometheus text), GET /healthz (200 serving, 503 otherwise)
//   UCX       uploads land in the engine as staged caches keyed by their session id, which a
//             compact request names; fetches are served from the store by entry key
//             (services/engine/spec_hash.h EntryFetchKey)
//
// Shutdown (RequestShutdown or a signal): /healthz turns 503 and new compactions are refused
// at once; queued and running jobs drain (engine drain timeout) while reads still work; then
// the Thrift server stops (calls in flight finish), the UCX listener stops, the store is
// flushed and closed, and Run returns. Acknowledged entries are durable throughout (the store
// syncs every put unless --no-sync).
//
// Thread safety: Start and Run from the owning thread, in that order; RequestShutdown and the
// accessors from any thread.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <memory>
#include <string>
#include <thread>

#include "common/metrics.h"
#include "common/status.h"
#include "services/engine/engine.h"
#include "services/rpc/call_recorder.h"
#include "services/rpc/server.h"
#include "services/transport/listener.h"
#include "services/transport/ucx_context.h"
#include "services/worker/http_server.h"
#include "services/worker/worker_metrics.h"
#include "services/worker/worker_options.h"
#include "storage/tiered_store.h"

namespace kvc::worker {

inline constexpr char kWorkerVersion[] = "0.1.0";

class Worker {
 public:
  explicit Worker(WorkerOptions options);
  // Stops whatever is still running (as a shutdown would) if Run did not.
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Opens the store and starts everything; returns once every listener is bound. On error
  // everything already started is stopped again and the error names the part that failed
  // (store IOError/Corruption, Unavailable for a port in use or UCX that cannot start, the
  // GPU executor's errors for GPUs that exist but fail to initialise; executor "gpu" without a
  // device runs on the CPU, see engine::MakeExecutor).
  Status Start();
  // "kvcompactd ready thrift=HOST:PORT ucx=HOST:PORT http=HOST:PORT" (ucx=off without UCX).
  // REQUIRES: Start() returned OK.
  std::string ReadyLine() const;
  // Runs the event loop until shutdown completes. REQUIRES: Start() returned OK.
  Status Run();
  // Begins the graceful shutdown described above. Idempotent; returns at once.
  void RequestShutdown();

  uint16_t thrift_port() const;
  uint16_t http_port() const;
  uint16_t ucx_port() const;  // 0 without UCX
  engine::Engine& engine() { return *engine_; }
  MetricsRegistry& metrics() { return metrics_; }

 private:
  Status OpenStoreAndEngine();
  Status StartUcx();
  Status StartThrift();
  Status StartHttp();
  void ArmSignals();
  void WaitSignal();
  void ArmMaintenance();
  void ArmStats();
  void BeginShutdown(const std::string& why);
  void StopServices();
  HttpResponse Route(const std::string& method, const std::string& target);
  Status OnUpload(const transport::UploadInfo& info, KvCache cache);
  Result<CompactedCache> OnFetch(const transport::FetchRequest& request);
  std::string UcxAddress() const;

  const WorkerOptions options_;
  MetricsRegistry metrics_;
  rpc::CallRecorder recorder_{&metrics_};
  WorkerMetrics worker_metrics_{&metrics_};

  std::shared_ptr<storage::TieredStore> store_;
  std::unique_ptr<engine::Engine> engine_;
  std::shared_ptr<transport::UcxContext> ucx_;
  std::unique_ptr<transport::Listener> listener_;
  std::unique_ptr<rpc::ThriftServer> thrift_;

  boost::asio::io_context io_;
  std::unique_ptr<HttpServer> http_;
  boost::asio::signal_set signals_{io_};
  boost::asio::steady_timer maintenance_timer_{io_};
  boost::asio::steady_timer stats_timer_{io_};
  boost::asio::thread_pool background_{1};  // maintenance passes, off the event loop
  std::atomic<bool> maintenance_running_{false};

  std::atomic<bool> started_{false};
  std::atomic<bool> shutting_down_{false};
  std::thread shutdown_thread_;
};

}  // namespace kvc::worker
