// Plain value types of the Engine's interface: requests, results, job states, statistics, and
// the engine's options. No Thrift, no RocksDB: the RPC layer translates these to and from the
// wire types, tests build them directly.
//
// Thread safety: values.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "kernels/spec.h"
#include "storage/stats.h"

namespace kvc::engine {

struct EngineOptions {
  // Jobs waiting to run. A submission that finds the queue full is refused with
  // ResourceExhausted and the retry_after hint. Default: 64.
  size_t queue_capacity = 64;
  // Compactions that run at once (executor threads). Each compaction parallelises over
  // (layer, head) itself, so one is right for a CPU-only worker. Default: 1.
  int executor_threads = 1;
  // Threads one compaction may use when its spec leaves `threads` at 0; 0 means one per core.
  // Default: 0.
  int compaction_threads = 0;
  // Bytes of KV caches the engine holds at once: uploads staged for a later compact request
  // plus the inputs of queued and running jobs. A request or upload that would exceed it is
  // refused with ResourceExhausted. Default: 8 GiB.
  uint64_t staging_bytes = uint64_t{8} << 30;
  // Time budget of a request that names none. Default: 10 min.
  std::chrono::milliseconds default_deadline{600'000};
  // Longest time budget a request may ask for; longer ones are cut to it. Default: 1 h.
  std::chrono::milliseconds max_deadline{3'600'000};
  // Largest request: inline payload bytes, or tensor bytes of an uploaded cache. Larger ones are
  // InvalidArgument. Default: 4 GiB.
  uint64_t max_request_bytes = uint64_t{4} << 30;
  // Longest source context (tokens) accepted. Default: 1 << 20.
  int64_t max_tokens = int64_t{1} << 20;
  // Longest prefix hash chain accepted by compact and lookup. Default: 65536 blocks.
  size_t max_blocks = 65536;
  // The retry-after hint sent with ResourceExhausted. Default: 1 s.
  std::chrono::milliseconds retry_after{1000};
  // A staged upload no compact request has claimed after this long is dropped (its bytes return
  // to the budget). Default: 5 min.
  std::chrono::milliseconds staged_upload_ttl{300'000};
  // Finished jobs stay visible to JobStatus for this long ... Default: 10 min.
  std::chrono::milliseconds job_retention{600'000};
  // ... and at most this many of them (the oldest are forgotten first). Default: 10000.
  size_t max_finished_jobs = 10000;
  // Store results that failed the quality gate. Such an entry's manifest says
  // gate_passed = false, so every lookup and fetch reports it. With false (the default) the
  // result is returned to the caller (stored = false, the fidelity says why) but not stored.
  // Default: false.
  bool store_failed_gate = false;
  // Stop() lets queued and running jobs finish for up to this long, then cancels the jobs still
  // queued (running compactions cannot be interrupted; Stop waits for them). Default: 30 s.
  std::chrono::milliseconds drain_timeout{30'000};

  // InvalidArgument naming the first field out of range.
  Status Validate() const;
};

// A compaction request. Exactly one of upload_session and inline_payload must be set.
struct CompactRequest {
  std::string request_id;                 // echoed in results and logs; may be empty
  std::string tenant;                     // recorded with the entry
  std::string model;                      // recorded with the entry
  std::vector<std::string> block_hashes;  // the prefix hash chain; stored under the last one
  CompactionSpec spec;
  std::optional<uint64_t> upload_session;     // a staged upload (consumed by the request)
  std::optional<std::string> inline_payload;  // a safetensors KV dump (common/kv_io.h)
  // Time budget from submission; 0 means EngineOptions::default_deadline.
  std::chrono::milliseconds deadline{0};
};

struct EntryFidelity {
  bool measured = false;  // false when the cache had no held-out queries
  double mean_cosine = 0;
  double min_cosine = 0;
  double p10_cosine = 0;
  double mean_rel_l2 = 0;
  double mass_error = 0;  // mean over heads
  bool gate_requested = false;
  bool gate_passed = true;
  int gate_rounds = 0;
  std::string report_json;  // FidelityReport::ToJson, empty when not measured
};

// What the engine knows of one stored (or just computed) compacted cache.
struct EntryInfo {
  std::string block_hash;
  std::string spec_hash;
  KvLayout layout;
  int64_t entries = 0;  // kept keys summed over layers and KV heads
  std::string method;
  int64_t created_ms = 0;  // Unix epoch ms
  EntryFidelity fidelity;
  uint64_t payload_bytes = 0;
  std::map<std::string, std::string> attributes;  // tenant, model, request_id, blocks
};

struct CompactOutcome {
  std::string request_id;
  EntryInfo entry;
  bool stored = false;        // false only for a failed gate with store_failed_gate off
  double achieved_ratio = 0;  // T * n_layers * n_kv_heads / entries
  double queue_ms = 0;
  double compute_ms = 0;
  std::string timings_json;
};

enum class JobState : uint8_t { kQueued, kRunning, kSucceeded, kFailed, kCancelled };
const char* JobStateName(JobState state);

struct JobInfo {
  uint64_t id = 0;
  JobState state = JobState::kQueued;
  std::string request_id;
  std::optional<CompactOutcome> outcome;  // kSucceeded only
  Status error;                           // kFailed / kCancelled
  int64_t submitted_ms = 0;               // Unix epoch ms
};

struct LookupOutcome {
  size_t matched_blocks = 0;       // 0: no prefix of the chain is stored
  std::optional<EntryInfo> entry;  // the entry under block_hashes[matched_blocks - 1]
};

struct FetchOutcome {
  EntryInfo entry;
  CompactedCache cache;  // read-only: may share memory with the store's hot tier
};

struct EngineStats {
  int64_t uptime_ms = 0;
  size_t queue_depth = 0;
  size_t queue_capacity = 0;
  size_t running_jobs = 0;
  uint64_t jobs_submitted = 0;
  uint64_t jobs_succeeded = 0;
  uint64_t jobs_failed = 0;  // expired jobs included
  uint64_t jobs_cancelled = 0;
  uint64_t jobs_rejected = 0;  // refused at admission: queue full or staging budget
  uint64_t jobs_expired = 0;   // deadline passed before or during the run
  size_t staged_uploads = 0;
  uint64_t staged_bytes = 0;  // staged uploads and job inputs
  uint64_t staging_budget_bytes = 0;
  std::string executor;
  storage::StoreStats store;
};

struct EngineHealth {
  bool serving = false;  // started and not stopping
  size_t queue_depth = 0;
  size_t running_jobs = 0;
  int64_t uptime_ms = 0;
  std::string executor;
};

}  // namespace kvc::engine
