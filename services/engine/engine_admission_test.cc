// Admission control, deadlines, cancellation and graceful shutdown, with a gated executor that
// holds compactions until the test releases them.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>

#include "services/engine/engine.h"
#include "services/engine/engine_testing.h"
#include "services/engine/spec_hash.h"
#include "storage/testing.h"

namespace kvc::engine {
namespace {

using namespace std::chrono_literals;

class EngineAdmissionTest : public ::testing::Test {
 protected:
  void Open(EngineOptions options) {
    auto store = storage::TieredStore::Open(testing::StoreOptions(dir_.path().string()));
    ASSERT_TRUE(store.ok());
    engine_ = std::make_unique<Engine>(
        options, std::shared_ptr<storage::TieredStore>(std::move(store).value()), gate_);
    ASSERT_TRUE(engine_->Start().ok());
  }
  void TearDown() override {
    if (gate_) gate_->Release(1000);
    if (engine_) engine_->Stop();
  }
  CompactRequest Request(uint64_t chain_seed, int64_t deadline_ms = 0) {
    CompactRequest r = testing::InlineRequest(cache_, testing::Chain(chain_seed, 1));
    r.deadline = std::chrono::milliseconds(deadline_ms);
    return r;
  }
  JobState WaitFinished(uint64_t id) {
    for (int i = 0; i < 2000; ++i) {
      Result<JobInfo> j = engine_->GetJob(id);
      if (!j.ok()) return JobState::kQueued;
      if (j->state != JobState::kQueued && j->state != JobState::kRunning) return j->state;
      std::this_thread::sleep_for(5ms);
    }
    return JobState::kRunning;
  }
  bool Stored(uint64_t chain_seed) {
    return engine_->Fetch(testing::Chain(chain_seed, 1)[0], SpecHash(testing::FastSpec())).ok();
  }

  storage::testing::TempDir dir_{"kvc-engine-admission"};
  std::shared_ptr<testing::GatedExecutor> gate_ = std::make_shared<testing::GatedExecutor>();
  std::unique_ptr<Engine> engine_;
  KvCache cache_ = testing::TinyCache(21);
};

TEST_F(EngineAdmissionTest, FullQueueIsResourceExhaustedWithHint) {
  EngineOptions o;
  o.queue_capacity = 2;
  o.retry_after = 1234ms;
  Open(o);
  const uint64_t running = *engine_->CompactAsync(Request(1));
  ASSERT_TRUE(gate_->WaitEntered(1));  // the first job holds the only executor thread
  const uint64_t q1 = *engine_->CompactAsync(Request(2));
  const uint64_t q2 = *engine_->CompactAsync(Request(3));
  Result<uint64_t> refused = engine_->CompactAsync(Request(4));
  ASSERT_EQ(refused.status().code(), Code::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("1234 ms"), std::string::npos);
  EXPECT_EQ(engine_->retry_after(), 1234ms);
  EngineStats s = engine_->Stats();
  EXPECT_EQ(s.queue_depth, 2u);
  EXPECT_EQ(s.running_jobs, 1u);
  EXPECT_EQ(s.jobs_rejected, 1u);

  gate_->Release(3);
  EXPECT_EQ(WaitFinished(running), JobState::kSucceeded);
  EXPECT_EQ(WaitFinished(q1), JobState::kSucceeded);
  EXPECT_EQ(WaitFinished(q2), JobState::kSucceeded);
  EXPECT_FALSE(Stored(4));
  EXPECT_TRUE(engine_->CompactAsync(Request(4)).ok());  // room again
}

TEST_F(EngineAdmissionTest, StagingBudgetIsResourceExhausted) {
  EngineOptions o;
  o.staging_bytes = testing::PayloadOf(cache_).size() + 100;  // room for one request
  Open(o);
  const uint64_t first = *engine_->CompactAsync(Request(1));
  ASSERT_TRUE(gate_->WaitEntered(1));
  EXPECT_EQ(engine_->CompactAsync(Request(2)).status().code(), Code::kResourceExhausted);
  EXPECT_EQ(engine_->StageUpload(9, cache_).code(), Code::kResourceExhausted);
  EXPECT_EQ(engine_->Stats().staged_uploads, 0u);
  gate_->Release();
  EXPECT_EQ(WaitFinished(first), JobState::kSucceeded);
  EXPECT_EQ(engine_->Stats().staged_bytes, 0u);  // the finished job gave its bytes back
  EXPECT_TRUE(engine_->StageUpload(9, cache_).ok());
}

TEST_F(EngineAdmissionTest, FullQueueGivesTheUploadBack) {
  EngineOptions o;
  o.queue_capacity = 1;
  Open(o);
  ASSERT_TRUE(engine_->CompactAsync(Request(1)).ok());
  ASSERT_TRUE(gate_->WaitEntered(1));
  ASSERT_TRUE(engine_->CompactAsync(Request(2)).ok());
  ASSERT_TRUE(engine_->StageUpload(77, cache_).ok());
  CompactRequest r = Request(3);
  r.inline_payload.reset();
  r.upload_session = 77;
  EXPECT_EQ(engine_->CompactAsync(r).status().code(), Code::kResourceExhausted);
  EXPECT_EQ(engine_->Stats().staged_uploads, 1u);  // still there for a retry
  gate_->Release(3);
  Result<uint64_t> retried = Status::Unavailable("not tried");
  for (int i = 0; i < 200; ++i) {
    retried = engine_->CompactAsync(r);
    if (retried.ok()) break;
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(retried.ok()) << retried.status().ToString();
  EXPECT_EQ(WaitFinished(*retried), JobState::kSucceeded);
}

TEST_F(EngineAdmissionTest, QueuedJobPastItsDeadlineIsNeverStarted) {
  Open(EngineOptions{});
  const uint64_t blocker = *engine_->CompactAsync(Request(1));
  ASSERT_TRUE(gate_->WaitEntered(1));
  const uint64_t late = *engine_->CompactAsync(Request(2, /*deadline_ms=*/30));
  std::this_thread::sleep_for(60ms);
  engine_->RunMaintenance();
  Result<JobInfo> info = engine_->GetJob(late);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state, JobState::kFailed);
  EXPECT_EQ(info->error.code(), Code::kDeadlineExceeded);
  gate_->Release(2);
  EXPECT_EQ(WaitFinished(blocker), JobState::kSucceeded);
  EXPECT_EQ(gate_->entered(), 1);  // the late job never reached the executor
  EXPECT_FALSE(Stored(2));
  EXPECT_EQ(engine_->Stats().jobs_expired, 1u);
}

TEST_F(EngineAdmissionTest, ExpiredJobIsSkippedByTheExecutorThread) {
  Open(EngineOptions{});
  const uint64_t blocker = *engine_->CompactAsync(Request(1));
  ASSERT_TRUE(gate_->WaitEntered(1));
  const uint64_t late = *engine_->CompactAsync(Request(2, 20));
  std::this_thread::sleep_for(50ms);
  gate_->Release(2);  // no maintenance: the executor thread finds it expired
  EXPECT_EQ(WaitFinished(blocker), JobState::kSucceeded);
  EXPECT_EQ(WaitFinished(late), JobState::kFailed);
  EXPECT_EQ(engine_->GetJob(late)->error.code(), Code::kDeadlineExceeded);
  EXPECT_EQ(gate_->entered(), 1);
}

TEST_F(EngineAdmissionTest, ResultPastItsDeadlineIsNotStored) {
  Open(EngineOptions{});
  const uint64_t id = *engine_->CompactAsync(Request(1, 50));
  ASSERT_TRUE(gate_->WaitEntered(1));
  std::this_thread::sleep_for(80ms);
  gate_->Release();
  EXPECT_EQ(WaitFinished(id), JobState::kFailed);
  EXPECT_EQ(engine_->GetJob(id)->error.code(), Code::kDeadlineExceeded);
  EXPECT_FALSE(Stored(1));
}

TEST_F(EngineAdmissionTest, SyncCompactTimesOut) {
  Open(EngineOptions{});
  auto waiter = std::async(std::launch::async, [&] { return engine_->Compact(Request(1, 50)); });
  ASSERT_TRUE(gate_->WaitEntered(1));
  Result<CompactOutcome> out = waiter.get();  // returns at its deadline, gate still closed
  EXPECT_EQ(out.status().code(), Code::kDeadlineExceeded);
  gate_->Release();
  for (int i = 0; i < 200 && engine_->Stats().running_jobs > 0; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(engine_->Stats().running_jobs, 0u);
  EXPECT_FALSE(Stored(1));
  EXPECT_EQ(engine_->Stats().staged_bytes, 0u);
}

TEST_F(EngineAdmissionTest, CancelQueuedAndRunningJobs) {
  Open(EngineOptions{});
  const uint64_t running = *engine_->CompactAsync(Request(1));
  ASSERT_TRUE(gate_->WaitEntered(1));
  const uint64_t queued = *engine_->CompactAsync(Request(2));
  EXPECT_TRUE(*engine_->Cancel(queued));
  EXPECT_EQ(engine_->GetJob(queued)->state, JobState::kCancelled);
  EXPECT_TRUE(*engine_->Cancel(running));
  EXPECT_FALSE(*engine_->Cancel(running));  // already asked
  EXPECT_EQ(engine_->GetJob(running)->state, JobState::kRunning);
  gate_->Release();
  EXPECT_EQ(WaitFinished(running), JobState::kCancelled);
  EXPECT_EQ(engine_->GetJob(running)->error.code(), Code::kCancelled);
  EXPECT_EQ(gate_->entered(), 1);
  EXPECT_FALSE(Stored(1));
  EXPECT_FALSE(Stored(2));
  EXPECT_TRUE(engine_->Cancel(12345).status().IsNotFound());
  EXPECT_EQ(engine_->Stats().jobs_cancelled, 2u);
  EXPECT_EQ(engine_->Stats().staged_bytes, 0u);
}

TEST_F(EngineAdmissionTest, StopDrainsQueuedJobs) {
  Open(EngineOptions{});
  const uint64_t a = *engine_->CompactAsync(Request(1));
  ASSERT_TRUE(gate_->WaitEntered(1));
  ASSERT_TRUE(engine_->CompactAsync(Request(2)).ok());
  auto stopper = std::async(std::launch::async, [&] { engine_->Stop(); });
  for (int i = 0; i < 200 && engine_->Health().serving; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_FALSE(engine_->Health().serving);
  EXPECT_EQ(engine_->CompactAsync(Request(3)).status().code(), Code::kUnavailable);
  gate_->Release(2);
  stopper.get();
  EXPECT_EQ(engine_->GetJob(a)->state, JobState::kSucceeded);
  EXPECT_EQ(gate_->entered(), 2);  // the queued job ran during the drain
  EXPECT_EQ(engine_->Stats().jobs_succeeded, 2u);
}

TEST_F(EngineAdmissionTest, StopCancelsWhatTheDrainTimeoutLeaves) {
  EngineOptions o;
  o.drain_timeout = 20ms;
  Open(o);
  const uint64_t running = *engine_->CompactAsync(Request(1));
  ASSERT_TRUE(gate_->WaitEntered(1));
  const uint64_t queued = *engine_->CompactAsync(Request(2));
  auto sync = std::async(std::launch::async, [&] { return engine_->Compact(Request(3)); });
  for (int i = 0; i < 200 && engine_->Stats().queue_depth < 2; ++i) {
    std::this_thread::sleep_for(1ms);
  }
  auto stopper = std::async(std::launch::async, [&] { engine_->Stop(); });
  EXPECT_EQ(sync.get().status().code(), Code::kCancelled);  // woken by the shutdown
  gate_->Release();  // the running compaction cannot be interrupted; Stop waits for it
  stopper.get();
  EXPECT_EQ(engine_->GetJob(queued)->state, JobState::kCancelled);
  EXPECT_EQ(engine_->GetJob(running)->state, JobState::kSucceeded);
  EXPECT_EQ(gate_->entered(), 1);
}

TEST_F(EngineAdmissionTest, ConcurrentSubmittersNeverOverfillTheQueue) {
  EngineOptions o;
  o.queue_capacity = 3;
  o.executor_threads = 2;
  Open(o);
  // Two compactions run at once here. StreamingLLM on a cache without queries makes no BLAS
  // calls: OpenBLAS's own threads are invisible to ThreadSanitizer, and kvc::Compact's
  // process-wide BLAS thread setting is not meant for concurrent callers.
  for (LayerKv& l : cache_.layers) {
    l.q_ref.reset();
    l.q_window.reset();
  }
  CompactionSpec spec = testing::FastSpec();
  spec.method = Method::kStreamingLlm;
  const auto request = [&](uint64_t seed) {
    return testing::InlineRequest(cache_, testing::Chain(seed, 1), spec);
  };
  std::atomic<int> admitted{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        Result<uint64_t> id = engine_->CompactAsync(request(100 + t * 10 + i));
        if (id.ok()) {
          ++admitted;
        } else {
          ++refused;
          EXPECT_EQ(id.status().code(), Code::kResourceExhausted);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted + refused, 20);
  EXPECT_LE(admitted.load(), 5);  // 2 running + 3 queued
  EXPECT_LE(engine_->Stats().queue_depth, 3u);
  gate_->Release(admitted.load());
  for (int i = 0; i < 2000 && engine_->Stats().jobs_succeeded < uint64_t(admitted.load()); ++i) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(engine_->Stats().jobs_succeeded, uint64_t(admitted.load()));
}

}  // namespace
}  // namespace kvc::engine
