// The end of a job: writing its result to the store, recording how it ended, forgetting old
// jobs, and the engine's periodic housekeeping.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "services/engine/engine.h"
#include "services/engine/engine_job.h"
#include "services/engine/entry_info.h"

namespace kvc::engine {
namespace {

// T * layers * KV heads / kept entries: how many source entries each kept one stands for.
double AchievedRatio(const CompactedCache& cache) {
  const int64_t entries = cache.total_entries();
  if (entries <= 0) return 0.0;
  const double source =
      static_cast<double>(cache.layout.tokens) * cache.layout.n_layers * cache.layout.n_kv_heads;
  return source / static_cast<double>(entries);
}

}  // namespace

void Engine::CommitJob(const std::shared_ptr<Job>& job, CompactionResult result,
                       double compute_ms) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (job->cancel_requested) {
      FinishLocked(*job, JobState::kCancelled,
                   Status::Cancelled("cancelled by the caller; the result was dropped"),
                   "cancelled");
      return;
    }
    if (Clock::now() >= job->deadline) {
      ++counters_.jobs_expired;
      FinishLocked(*job, JobState::kFailed,
                   Status::DeadlineExceeded("the compaction finished after its deadline of " +
                                            std::to_string(job->budget.count()) +
                                            " ms; the result was not stored"),
                   "expired");
      return;
    }
    job->committing = true;
  }
  const auto attributes = EntryAttributes(job->origin, result);
  CompactOutcome outcome;
  outcome.request_id = job->origin.request_id;
  outcome.entry =
      EntryInfoFromResult(job->block_hash, job->spec_hash, result, attributes, NowEpochMs());
  outcome.achieved_ratio = AchievedRatio(result.cache);
  outcome.queue_ms = MillisBetween(job->submitted, job->started);
  outcome.compute_ms = compute_ms;
  outcome.timings_json = result.timings.ToJson();
  const EntryFidelity& f = outcome.entry.fidelity;
  metrics_.Quality(outcome.entry.method, outcome.achieved_ratio, f.measured, f.mean_cosine,
                   f.mean_rel_l2, f.gate_requested, f.gate_passed);

  Status stored = Status::OK();
  if (f.gate_passed || options_.store_failed_gate) {
    storage::EntryExtras extras;
    extras.attributes = attributes;
    stored = store_->Put(storage::StoreKey{job->block_hash, job->spec_hash}, result.cache, extras);
    outcome.stored = stored.ok();
  } else {
    spdlog::warn("engine: job {} failed its quality gate (mean cosine {} < {}); not stored",
                 job->id, f.mean_cosine, job->spec.gate.min_cosine);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!stored.ok()) {
    spdlog::error("engine: job {}: store put failed: {}", job->id, stored.ToString());
    FinishLocked(*job, JobState::kFailed, stored.WithContext("storing the result"), "failed");
    return;
  }
  job->outcome = std::move(outcome);
  FinishLocked(*job, JobState::kSucceeded, Status::OK(), "succeeded");
}

void Engine::FinishLocked(Job& job, JobState state, Status error, const char* outcome) {
  job.state = state;
  job.error = std::move(error);
  job.finished = Clock::now();
  job.input = KvCache{};
  job.reservation.Release();
  switch (state) {
    case JobState::kSucceeded:
      ++counters_.jobs_succeeded;
      break;
    case JobState::kCancelled:
      ++counters_.jobs_cancelled;
      break;
    default:
      ++counters_.jobs_failed;
      break;
  }
  metrics_.JobDone(outcome);
  if (job.sync) {
    if (job.abandoned) jobs_.erase(job.id);
  } else {
    finished_order_.push_back(job.id);
    ForgetOldJobsLocked(job.finished);
  }
  PublishGaugesLocked();
  done_cv_.notify_all();
}

void Engine::ForgetOldJobsLocked(Clock::time_point now) {
  while (!finished_order_.empty()) {
    auto it = jobs_.find(finished_order_.front());
    const bool too_many = finished_order_.size() > options_.max_finished_jobs;
    if (it != jobs_.end() && !too_many && now - it->second->finished < options_.job_retention) {
      break;
    }
    if (it != jobs_.end()) jobs_.erase(it);
    finished_order_.pop_front();
  }
}

void Engine::PublishGaugesLocked() {
  metrics_.QueueDepth(queue_.size(), running_);
  metrics_.Staging(budget_.used(), staged_.size());
}

void Engine::RunMaintenance() {
  const Clock::time_point now = Clock::now();
  const size_t dropped = staged_.Sweep(now, options_.staged_upload_ttl);
  if (dropped > 0) {
    spdlog::info("engine: dropped {} staged upload(s) unclaimed for {} ms", dropped,
                 options_.staged_upload_ttl.count());
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = queue_.begin(); it != queue_.end();) {
    std::shared_ptr<Job> job = *it;
    if (now < job->deadline) {
      ++it;
      continue;
    }
    it = queue_.erase(it);
    ++counters_.jobs_expired;
    FinishLocked(
        *job, JobState::kFailed,
        Status::DeadlineExceeded("the job waited in the queue past its deadline of " +
                                 std::to_string(job->budget.count()) + " ms and was not started"),
        "expired");
  }
  ForgetOldJobsLocked(now);
  PublishGaugesLocked();
}

}  // namespace kvc::engine
