// Engine lifecycle, admission, the job queue and the executor threads. Store operations,
// staging and statistics are in engine_store.cc.
#include "services/engine/engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <new>
#include <utility>

#include "services/engine/engine_job.h"
#include "services/engine/request_checks.h"
#include "services/engine/spec_hash.h"

namespace kvc::engine {

const char* JobStateName(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return "queued";
    case JobState::kRunning:
      return "running";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

Status EngineOptions::Validate() const {
  const auto bad = [](const char* field, const char* why) {
    return Status::InvalidArgument(std::string("engine options: ") + field + " " + why);
  };
  if (queue_capacity == 0) return bad("queue_capacity", "must be at least 1");
  if (executor_threads < 1 || executor_threads > 256) {
    return bad("executor_threads", "must be in [1, 256]");
  }
  if (compaction_threads < 0) return bad("compaction_threads", "must be >= 0");
  if (staging_bytes == 0) return bad("staging_bytes", "must be positive");
  if (default_deadline.count() <= 0) return bad("default_deadline", "must be positive");
  if (max_deadline < default_deadline) return bad("max_deadline", "must be >= default_deadline");
  if (max_request_bytes == 0) return bad("max_request_bytes", "must be positive");
  if (max_tokens <= 0) return bad("max_tokens", "must be positive");
  if (max_blocks == 0) return bad("max_blocks", "must be at least 1");
  if (retry_after.count() < 0) return bad("retry_after", "must be >= 0");
  if (staged_upload_ttl.count() <= 0) return bad("staged_upload_ttl", "must be positive");
  if (drain_timeout.count() < 0) return bad("drain_timeout", "must be >= 0");
  return Status::OK();
}

int64_t NowEpochMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Engine::Engine(EngineOptions options, std::shared_ptr<storage::TieredStore> store,
               std::shared_ptr<CompactionExecutor> executor, MetricsRegistry* metrics)
    : options_(std::move(options)),
      store_(std::move(store)),
      executor_(executor ? std::move(executor) : MakeCpuExecutor()),
      metrics_(metrics),
      budget_(options_.staging_bytes) {}

Engine::~Engine() { Stop(); }

Status Engine::Start() {
  KVC_RETURN_IF_ERROR(options_.Validate());
  if (store_ == nullptr) return Status::InvalidArgument("engine: no store");
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kNew) return Status::FailedPrecondition("engine: already started");
  state_ = State::kServing;
  for (int i = 0; i < options_.executor_threads; ++i) {
    threads_.emplace_back([this] { WorkerLoop(); });
  }
  PublishGaugesLocked();
  spdlog::info("engine: serving with {} {} executor thread(s), queue {}, staging {} bytes",
               options_.executor_threads, executor_->name(), options_.queue_capacity,
               options_.staging_bytes);
  return Status::OK();
}

void Engine::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == State::kNew) state_ = State::kStopped;
    if (state_ != State::kServing) return;
    state_ = State::kDraining;
  }
  spdlog::info("engine: draining (up to {} ms)", options_.drain_timeout.count());
  {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait_for(lock, options_.drain_timeout,
                      [&] { return queue_.empty() && running_ == 0; });
    if (!queue_.empty()) spdlog::warn("engine: cancelling {} queued job(s)", queue_.size());
    while (!queue_.empty()) {
      std::shared_ptr<Job> job = std::move(queue_.front());
      queue_.pop_front();
      FinishLocked(*job, JobState::kCancelled,
                   Status::Cancelled("the worker is shutting down; retry on another worker"),
                   "cancelled");
    }
    stop_workers_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  const size_t dropped = staged_.Clear();
  if (dropped > 0) spdlog::info("engine: dropped {} unclaimed staged upload(s)", dropped);
  Status flushed = store_->Flush();
  if (!flushed.ok()) spdlog::error("engine: store flush failed: {}", flushed.ToString());
  std::lock_guard<std::mutex> lock(mu_);
  state_ = State::kStopped;
  PublishGaugesLocked();
  spdlog::info("engine: stopped");
}

Status Engine::CheckServing() const {
  switch (state_) {
    case State::kServing:
      return Status::OK();
    case State::kNew:
      return Status::Unavailable("the engine has not started yet; retry shortly");
    case State::kDraining:
    case State::kStopped:
      break;
  }
  return Status::Unavailable("the worker is shutting down; retry on another worker");
}

Result<std::shared_ptr<Engine::Job>> Engine::MakeJob(CompactRequest request) {
  auto job = std::make_shared<Job>();
  job->origin =
      EntryOrigin{request.tenant, request.model, request.request_id, request.block_hashes.size()};
  job->block_hash = request.block_hashes.back();
  job->spec_hash = SpecHash(request.spec);
  job->spec = std::move(request.spec);
  job->submitted = Clock::now();
  job->submitted_ms = NowEpochMs();
  job->budget = request.deadline.count() == 0 ? options_.default_deadline
                                              : std::min(request.deadline, options_.max_deadline);
  job->deadline = job->submitted + job->budget;
  if (request.inline_payload.has_value()) {
    KVC_ASSIGN_OR_RETURN(job->reservation,
                         budget_.Reserve(request.inline_payload->size(), "inline_payload"));
    KVC_ASSIGN_OR_RETURN(job->input, DecodeInlinePayload(std::move(*request.inline_payload)));
    KVC_RETURN_IF_ERROR(CheckCacheLimits(job->input, options_));
  } else {
    KVC_ASSIGN_OR_RETURN(StagedUploads::Taken taken, staged_.Take(*request.upload_session));
    job->input = std::move(taken.cache);
    job->reservation = std::move(taken.reservation);
    job->upload_session = request.upload_session;
  }
  return job;
}

Result<std::shared_ptr<Engine::Job>> Engine::Admit(CompactRequest request, bool sync) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    KVC_RETURN_IF_ERROR(CheckServing());
  }
  KVC_RETURN_IF_ERROR(CheckRequest(request, options_));
  Result<std::shared_ptr<Job>> made = MakeJob(std::move(request));
  std::lock_guard<std::mutex> lock(mu_);
  if (!made.ok()) {
    if (made.status().code() == Code::kResourceExhausted) {
      ++counters_.jobs_rejected;
      metrics_.JobDone("rejected");
    }
    return made.status();
  }
  std::shared_ptr<Job> job = std::move(*made);
  Status admitted = CheckServing();
  if (admitted.ok() && queue_.size() >= options_.queue_capacity) {
    ++counters_.jobs_rejected;
    metrics_.JobDone("rejected");
    admitted = Status::ResourceExhausted(
        "the job queue is full (" + std::to_string(options_.queue_capacity) +
        " jobs waiting); retry in " + std::to_string(options_.retry_after.count()) +
        " ms or on another worker");
  }
  if (!admitted.ok()) {
    if (job->upload_session) {  // give the upload back so the caller can retry with it
      staged_
          .Put(*job->upload_session, std::move(job->input), std::move(job->reservation),
               Clock::now())
          .IgnoreError();
    }
    return admitted;
  }
  job->id = next_job_id_++;
  job->sync = sync;
  queue_.push_back(job);
  jobs_[job->id] = job;
  ++counters_.jobs_submitted;
  PublishGaugesLocked();
  work_cv_.notify_one();
  return job;
}

Result<uint64_t> Engine::CompactAsync(CompactRequest request) {
  KVC_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, Admit(std::move(request), /*sync=*/false));
  spdlog::debug("engine: job {} queued (request '{}')", job->id, job->origin.request_id);
  return job->id;
}

Result<CompactOutcome> Engine::Compact(CompactRequest request) {
  KVC_ASSIGN_OR_RETURN(std::shared_ptr<Job> job, Admit(std::move(request), /*sync=*/true));
  return Await(job);
}

Result<CompactOutcome> Engine::Await(const std::shared_ptr<Job>& job) {
  std::unique_lock<std::mutex> lock(mu_);
  const bool done =
      done_cv_.wait_until(lock, job->deadline, [&] { return IsFinished(job->state); });
  if (!done) {
    if (job->state == JobState::kQueued) {
      queue_.erase(std::find(queue_.begin(), queue_.end(), job));
      ++counters_.jobs_expired;
      FinishLocked(*job, JobState::kFailed,
                   Status::DeadlineExceeded("the job waited in the queue past its deadline of " +
                                            std::to_string(job->budget.count()) + " ms"),
                   "expired");
    } else if (job->committing) {
      done_cv_.wait(lock, [&] { return IsFinished(job->state); });
    } else {
      // Running: the result will arrive past the deadline and be dropped by CommitJob.
      job->abandoned = true;
      return Status::DeadlineExceeded("the compaction did not finish within its deadline of " +
                                      std::to_string(job->budget.count()) +
                                      " ms; nothing was stored");
    }
  }
  jobs_.erase(job->id);
  if (job->state == JobState::kSucceeded) return *job->outcome;
  return job->error;
}

Result<JobInfo> Engine::GetJob(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end() || it->second->sync) {
    return Status::NotFound("no job " + std::to_string(id) +
                            " on this worker (never submitted here, or finished and forgotten)");
  }
  const Job& job = *it->second;
  JobInfo info;
  info.id = job.id;
  info.state = job.state;
  info.request_id = job.origin.request_id;
  info.outcome = job.outcome;
  info.error = job.error;
  info.submitted_ms = job.submitted_ms;
  return info;
}

Result<bool> Engine::Cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(id);
  if (it == jobs_.end() || it->second->sync) {
    return Status::NotFound("no job " + std::to_string(id) + " on this worker");
  }
  std::shared_ptr<Job> job = it->second;
  if (IsFinished(job->state) || job->committing || job->cancel_requested) return false;
  if (job->state == JobState::kQueued) {
    queue_.erase(std::find(queue_.begin(), queue_.end(), job));
    FinishLocked(*job, JobState::kCancelled, Status::Cancelled("cancelled by the caller"),
                 "cancelled");
  } else {
    job->cancel_requested = true;  // the running compaction's result will be dropped
  }
  return true;
}

void Engine::WorkerLoop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return !queue_.empty() || stop_workers_; });
      if (queue_.empty()) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      const Clock::time_point now = Clock::now();
      if (now >= job->deadline) {
        ++counters_.jobs_expired;
        FinishLocked(*job, JobState::kFailed,
                     Status::DeadlineExceeded("the job waited in the queue past its deadline of " +
                                              std::to_string(job->budget.count()) +
                                              " ms and was not started"),
                     "expired");
        continue;
      }
      job->state = JobState::kRunning;
      job->started = now;
      ++running_;
      PublishGaugesLocked();
    }
    metrics_.Started(MillisBetween(job->submitted, job->started) / 1000.0);
    RunJob(job);
    std::lock_guard<std::mutex> lock(mu_);
    --running_;
    PublishGaugesLocked();
    done_cv_.notify_all();
  }
}

void Engine::RunJob(const std::shared_ptr<Job>& job) {
  CompactionSpec spec = job->spec;
  if (spec.threads == 0) spec.threads = options_.compaction_threads;
  const Clock::time_point t0 = Clock::now();
  Result<CompactionResult> result = Status::Internal("executor did not run");
  try {
    result = executor_->Run(job->input, spec);
  } catch (const std::bad_alloc&) {
    result = Status::ResourceExhausted(
        "out of memory while compacting; retry later or with a "
        "smaller cache");
  } catch (const std::exception& e) {
    result = Status::Internal(std::string("executor threw: ") + e.what());
  }
  const double compute_ms = MillisBetween(t0, Clock::now());
  metrics_.Computed(MethodName(job->spec.method), executor_->name(), compute_ms / 1000.0);
  if (result.ok()) return CommitJob(job, std::move(*result), compute_ms);
  std::lock_guard<std::mutex> lock(mu_);
  if (job->cancel_requested) {
    FinishLocked(*job, JobState::kCancelled, Status::Cancelled("cancelled by the caller"),
                 "cancelled");
  } else {
    spdlog::info("engine: job {} failed: {}", job->id, result.status().ToString());
    FinishLocked(*job, JobState::kFailed, result.status(), "failed");
  }
}

}  // namespace kvc::engine
