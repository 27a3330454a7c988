// Engine: the worker's service logic (design §5), with no knowledge of RPC. The Thrift handler
// (services/rpc) and the UCX listener (services/transport, wired in services/worker) call it;
// tests call it directly.
//
//   Compact / CompactAsync -> admission (checks, staging budget, bounded queue)
//                          -> executor threads -> CompactionExecutor (CPU today)
//                          -> TieredStore::Put under (last block hash, SpecHash(spec))
//   StageUpload            <- the UCX listener: an uploaded KvCache waits for its compact request
//   Lookup / Fetch / Delete -> TieredStore
//
// Admission: a request is checked whole before anything is queued (request_checks.h); bad input
// is InvalidArgument / NotSupported / Corruption and changes nothing. A full queue or staging
// budget is ResourceExhausted, with retry_after() as the hint. The input cache's bytes stay
// reserved in the staging budget until its job finishes.
//
// Deadlines: each job has one (request deadline, or the default, cut to max_deadline). A job
// whose deadline passes while queued is never started; one that finishes after its deadline is
// DeadlineExceeded and its result is not stored. Cancellation: a queued job leaves the queue at
// once; a running compaction cannot be interrupted, so it runs to the end and its result is
// dropped (the job reports Cancelled). Once a job has begun writing its result to the store it
// can no longer be cancelled.
//
// Quality gate: a result that failed a requested gate is always reported (EntryFidelity); it is
// stored only with EngineOptions::store_failed_gate.
//
// Lifecycle: construct, Start(), ..., Stop(). Before Start and after Stop every operation
// returns Unavailable. Stop is graceful: it refuses new jobs, lets queued and running ones finish
// for up to drain_timeout, cancels what is still queued, waits for the running ones, drops
// staged uploads and flushes the store.
//
// Thread safety: every method may be called concurrently from any thread, except that Start
// and Stop must not race each other. The destructor calls Stop.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "services/engine/engine_metrics.h"
#include "services/engine/engine_types.h"
#include "services/engine/executor.h"
#include "services/engine/staging.h"
#include "storage/tiered_store.h"

namespace kvc::engine {

class Engine {
 public:
  // REQUIRES: store != null. `executor` null means the CPU executor. `metrics` may be null; if
  // set it must outlive the engine.
  Engine(EngineOptions options, std::shared_ptr<storage::TieredStore> store,
         std::shared_ptr<CompactionExecutor> executor = nullptr,
         MetricsRegistry* metrics = nullptr);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Starts the executor threads. InvalidArgument for bad options; FailedPrecondition when
  // called twice.
  Status Start();
  // Graceful stop (see above). Idempotent.
  void Stop();

  // Compacts and stores, waiting at most the request's deadline. Errors: admission errors as
  // above; the executor's errors (InvalidArgument, NotSupported); DeadlineExceeded (the job is
  // then cancelled); Unavailable (stopping); whatever the store's Put returned.
  Result<CompactOutcome> Compact(CompactRequest request);
  // Admits the request and returns its job id at once (ids start at 1). Errors as the admission
  // part of Compact.
  Result<uint64_t> CompactAsync(CompactRequest request);
  // NotFound for an id never issued or already forgotten (job_retention, max_finished_jobs).
  Result<JobInfo> GetJob(uint64_t id) const;
  // true if the job was queued or running and is now cancelled; false if it had already
  // finished or is writing its result. NotFound as GetJob.
  Result<bool> Cancel(uint64_t id);

  // Files an upload for a later compact request naming `session`. Validates the cache (shapes,
  // NaN/Inf, limits) and reserves its bytes. InvalidArgument (bad cache, session already
  // staged), ResourceExhausted (budget), Unavailable (not serving).
  Status StageUpload(uint64_t session, KvCache cache);

  // The longest prefix of `chain` with an entry under `spec_hash`: the deepest i such that
  // (chain[i], spec_hash) is stored (matched_blocks = i + 1) with that entry's manifest; a miss
  // is matched_blocks 0 (not an error). InvalidArgument for a bad chain or spec hash.
  Result<LookupOutcome> Lookup(std::span<const std::string> chain, std::string_view spec_hash);
  // The entry (block_hash, spec_hash), verified. NotFound when absent; Corruption when it failed
  // its checksums (the store has removed it); InvalidArgument for a bad key.
  Result<FetchOutcome> Fetch(std::string_view block_hash, std::string_view spec_hash);
  // What is known of the entry (block_hash, spec_hash) from its verified manifest, without
  // reading tensors. Errors as Fetch.
  Result<EntryInfo> Describe(std::string_view block_hash, std::string_view spec_hash);
  // Removes the entry. NotFound when there was none.
  Status Delete(std::string_view block_hash, std::string_view spec_hash);

  EngineStats Stats() const;
  EngineHealth Health() const;
  // Periodic housekeeping (the worker's timer): expires queued jobs past their deadline, drops
  // unclaimed staged uploads, forgets old finished jobs. The store runs its own maintenance.
  void RunMaintenance();

  const EngineOptions& options() const { return options_; }
  std::chrono::milliseconds retry_after() const { return options_.retry_after; }
  storage::TieredStore& store() { return *store_; }

 private:
  struct Job;
  using Clock = std::chrono::steady_clock;
  enum class State : uint8_t { kNew, kServing, kDraining, kStopped };

  Result<std::shared_ptr<Job>> Admit(CompactRequest request, bool sync);
  Result<std::shared_ptr<Job>> MakeJob(CompactRequest request);
  void WorkerLoop();
  void RunJob(const std::shared_ptr<Job>& job);
  void CommitJob(const std::shared_ptr<Job>& job, CompactionResult result, double compute_ms);
  // REQUIRES: mu_ held. Records the end of `job` and wakes waiters.
  void FinishLocked(Job& job, JobState state, Status error, const char* outcome);
  void ForgetOldJobsLocked(Clock::time_point now);
  void PublishGaugesLocked();
  Status CheckServing() const;    // REQUIRES: mu_ held
  Status CheckStoreOpen() const;  // takes mu_
  Result<CompactOutcome> Await(const std::shared_ptr<Job>& job);

  const EngineOptions options_;
  const std::shared_ptr<storage::TieredStore> store_;
  const std::shared_ptr<CompactionExecutor> executor_;
  EngineMetrics metrics_;
  ByteBudget budget_;
  StagedUploads staged_;
  const Clock::time_point created_ = Clock::now();

  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // executor threads wait for jobs or stop
  std::condition_variable done_cv_;  // waiters for job completion and drain
  State state_ = State::kNew;
  bool stop_workers_ = false;
  uint64_t next_job_id_ = 1;
  std::deque<std::shared_ptr<Job>> queue_;
  std::map<uint64_t, std::shared_ptr<Job>> jobs_;
  std::deque<uint64_t> finished_order_;
  size_t running_ = 0;
  EngineStats counters_;  // the job counters only
  std::vector<std::thread> threads_;
};

}  // namespace kvc::engine
