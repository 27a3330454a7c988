// One compaction job of the Engine. Internal to services/engine (engine.cc, engine_store.cc).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/kv_cache.h"
#include "common/status.h"
#include "kernels/spec.h"
#include "services/engine/engine.h"
#include "services/engine/entry_info.h"
#include "services/engine/staging.h"

namespace kvc::engine {

struct Engine::Job {
  // Set at admission, then read-only.
  uint64_t id = 0;
  bool sync = false;  // a Compact() call waits for it; it is never listed for GetJob callers
  EntryOrigin origin;
  std::string block_hash;  // the chain's last block: the entry's key
  std::string spec_hash;
  CompactionSpec spec;
  std::optional<uint64_t> upload_session;  // the staged upload it consumed, if any
  Clock::time_point submitted;
  Clock::time_point deadline;
  std::chrono::milliseconds budget{0};  // deadline - submitted, for messages
  int64_t submitted_ms = 0;             // Unix epoch ms

  // Owned by the job until it finishes (then dropped, which returns the bytes to the budget).
  // The executor thread reads `input` while the job runs, without the engine's mutex.
  KvCache input;
  Reservation reservation;

  // Guarded by Engine::mu_.
  JobState state = JobState::kQueued;
  Clock::time_point started;
  bool cancel_requested = false;
  bool committing = false;  // writing its result: too late to cancel
  bool abandoned = false;   // a sync job whose waiter gave up: erase it when it finishes
  Status error;
  std::optional<CompactOutcome> outcome;
  Clock::time_point finished;
};

inline bool IsFinished(JobState s) {
  return s == JobState::kSucceeded || s == JobState::kFailed || s == JobState::kCancelled;
}

// Milliseconds since the Unix epoch.
int64_t NowEpochMs();

inline double MillisBetween(std::chrono::steady_clock::time_point a,
                            std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace kvc::engine
