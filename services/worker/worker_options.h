// Everything kvcompactd can be told, with its embedded defaults, and how it is told: an optional
// JSON config file (common/config.h; unknown keys are rejected) overridden by command-line flags.
//
// Defaults: data under ./var (warm tier ./var/warm, cold tier ./var/cold when enabled), the
// "auto" executor (GPUs when present, else CPU), listening on 0.0.0.0 with
//   Thrift  7400   (framed binary protocol; services/rpc)
//   UCX     7401   (data plane; services/transport)
//   HTTP    7402   (GET /metrics, GET /healthz)
// A port of 0 picks a free one; the ready line reports what was bound.
//
// Config file keys (all optional; durations in milliseconds unless the name says _s):
//   data_dir, log.level, log.file
//   listen.address, listen.advertise_host, ports.thrift, ports.ucx, ports.http
//   ucx.enabled, ucx.staging_bytes, ucx.handler_threads
//   engine.executor ("auto"), engine.queue_capacity, engine.executor_threads,
//   engine.compaction_threads, engine.staging_bytes, engine.default_deadline_ms,
//   engine.max_deadline_ms, engine.max_request_bytes, engine.max_tokens, engine.max_blocks,
//   engine.retry_after_ms, engine.staged_upload_ttl_ms, engine.job_retention_ms,
//   engine.max_finished_jobs, engine.store_failed_gate, engine.drain_timeout_ms
//   store.sync, store.hot_bytes, store.warm_capacity_bytes, store.warm_ttl_s,
//   store.warm_demote_after_s, store.cold, store.cold_capacity_bytes, store.cold_ttl_s
//   rpc.max_connections, rpc.max_frame_bytes, rpc.max_inline_fetch_bytes, rpc.idle_timeout_ms
//   timers.maintenance_ms, timers.stats_ms
//
// Thread safety: plain values and pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "services/engine/engine_types.h"
#include "storage/options.h"

namespace kvc::worker {

struct WorkerOptions {
  // Root of the worker's files: the warm tier in <data_dir>/warm, the cold one in
  // <data_dir>/cold. Created when missing. Default: "./var".
  std::string data_dir = "./var";
  // Minimum log level ("trace" .. "off") and an optional log file. Default: "info", none.
  std::string log_level = "info";
  std::string log_file;

  // Address every listener binds. Default: "0.0.0.0".
  std::string listen_address = "0.0.0.0";
  // Host name clients should use for this worker's UCX listener (reported by health() and UCX
  // fetches). Empty: the bound address, or this machine's host name when bound to 0.0.0.0.
  // Default: "".
  std::string advertise_host;
  uint16_t thrift_port = 7400;  // Default: 7400.
  uint16_t ucx_port = 7401;     // Default: 7401.
  uint16_t http_port = 7402;    // Default: 7402.

  // Run the UCX data plane. Without it only inline payloads are served. Default: true.
  bool ucx_enabled = true;
  // Bytes of UCX receive buffers for uploads in flight and staged. Default: 4 GiB.
  uint64_t ucx_staging_bytes = uint64_t{4} << 30;
  // Threads that run the UCX upload/fetch handlers. Default: 2.
  int ucx_handler_threads = 2;

  // Where compactions run (services/engine/executor.h): "auto" (the GPUs when a CUDA device
  // is usable, else the CPU), "cpu", or "gpu" (every local GPU; on a machine or build without
  // CUDA it logs a warning and runs on the CPU, reported as executor "cpu"). Default: "auto".
  std::string executor = "auto";
  // Queue, threads, budgets, deadlines: see services/engine/engine_types.h.
  engine::EngineOptions engine;

  // Store: see storage/options.h. WAL synced on every put (survives power loss). Default: true.
  bool store_sync = true;
  uint64_t hot_bytes = uint64_t{1} << 30;  // Default: 1 GiB.
  uint64_t warm_capacity_bytes = 0;        // Default: 0 (unbounded).
  int64_t warm_ttl_s = 0;                  // Default: 0 (no expiry).
  int64_t warm_demote_after_s = 0;         // Default: 0 (demote by capacity only).
  bool cold_enabled = false;               // Default: false.
  uint64_t cold_capacity_bytes = 0;        // Default: 0 (unbounded).
  int64_t cold_ttl_s = 0;                  // Default: 0 (no expiry).

  // Thrift server: see services/rpc/server.h and handler.h.
  int max_connections = 256;                             // Default: 256.
  uint32_t max_frame_bytes = 80u << 20;                  // Default: 80 MiB.
  uint64_t max_inline_fetch_bytes = uint64_t{64} << 20;  // Default: 64 MiB.
  int64_t idle_timeout_ms = 0;                           // Default: 0 (none).

  // Period of store maintenance and engine housekeeping (TTL sweeps, demotion, expired jobs and
  // uploads). Default: 10 s.
  int64_t maintenance_ms = 10'000;
  // Period of the one-line stats log; 0 disables it. Default: 60 s.
  int64_t stats_ms = 60'000;

  // InvalidArgument naming the first bad field (engine options included).
  Status Validate() const;
  // The store options these settings describe.
  storage::TieredStoreOptions StoreOptions() const;
};

// The dotted config keys listed above.
std::vector<std::string> ConfigKeys();
// Applies a config file's values over `options`. InvalidArgument for unknown keys (all listed)
// or values of the wrong type or range.
Status ApplyConfig(const Config& config, WorkerOptions* options);

// What ParseCommandLine decided.
struct CommandLine {
  WorkerOptions options;
  bool exit_now = false;  // --help or --version was answered
  int exit_code = 0;
};

// Parses kvcompactd's flags (--help lists them): embedded defaults, then the file named by
// --config, then the other flags. Help and version go to `out`; InvalidArgument for bad flags,
// an unreadable or invalid config file, or options that fail Validate.
Result<CommandLine> ParseCommandLine(int argc, const char* const* argv, std::ostream& out);

}  // namespace kvc::worker
