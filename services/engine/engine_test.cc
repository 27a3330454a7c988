// The engine against a real TieredStore in a temporary directory: compaction round trips
// (inline and staged uploads, sync and async), lookup of the longest stored prefix, fetch,
// delete, the quality gate, restarts and metrics.
#include "services/engine/engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "kernels/compactor.h"
#include "services/engine/engine_testing.h"
#include "services/engine/spec_hash.h"
#include "storage/testing.h"

namespace kvc::engine {
namespace {

using namespace std::chrono_literals;

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(EngineOptions{}); }
  void TearDown() override { Close(); }

  void Open(EngineOptions options) {
    auto store = storage::TieredStore::Open(testing::StoreOptions(dir_.path().string()));
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    engine_ = std::make_unique<Engine>(
        options, std::shared_ptr<storage::TieredStore>(std::move(store).value()), nullptr,
        &metrics_);
    ASSERT_TRUE(engine_->Start().ok());
  }
  void Close() {
    if (engine_) engine_->Stop();
    engine_.reset();
  }
  JobInfo WaitJob(uint64_t id) {
    for (int i = 0; i < 2000; ++i) {
      Result<JobInfo> job = engine_->GetJob(id);
      EXPECT_TRUE(job.ok()) << job.status().ToString();
      if (!job.ok() || (job->state != JobState::kQueued && job->state != JobState::kRunning)) {
        return job.ok() ? *job : JobInfo{};
      }
      std::this_thread::sleep_for(5ms);
    }
    ADD_FAILURE() << "job " << id << " did not finish";
    return {};
  }

  storage::testing::TempDir dir_{"kvc-engine"};
  MetricsRegistry metrics_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, CompactStoresUnderLastBlockAndFetchReturnsIt) {
  const KvCache cache = testing::TinyCache(11);
  const auto chain = testing::Chain(1, 4);
  Result<CompactOutcome> out = engine_->Compact(testing::InlineRequest(cache, chain));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_TRUE(out->stored);
  EXPECT_EQ(out->request_id, "test");
  EXPECT_EQ(out->entry.block_hash, chain.back());
  EXPECT_EQ(out->entry.spec_hash, SpecHash(testing::FastSpec()));
  EXPECT_EQ(out->entry.method, "am");
  EXPECT_EQ(out->entry.layout, cache.layout);
  // Ratio 8 over 256 tokens: 32 keys per (layer, head).
  EXPECT_EQ(out->entry.entries, 2 * 2 * 32);
  EXPECT_DOUBLE_EQ(out->achieved_ratio, 8.0);
  EXPECT_TRUE(out->entry.fidelity.measured);
  EXPECT_GT(out->entry.fidelity.mean_cosine, 0.5);
  EXPECT_LE(out->entry.fidelity.mean_cosine, 1.0);
  EXPECT_FALSE(out->entry.fidelity.report_json.empty());
  EXPECT_EQ(out->entry.attributes.at("tenant"), "tenant-a");
  EXPECT_EQ(out->entry.attributes.at("blocks"), "4");

  // The stored cache is what the compactor computes for this input and spec.
  Result<CompactionResult> direct = Compact(cache, testing::FastSpec());
  ASSERT_TRUE(direct.ok());
  Result<FetchOutcome> fetched = engine_->Fetch(chain.back(), out->entry.spec_hash);
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  std::string why;
  EXPECT_TRUE(storage::testing::SameCache(direct->cache, fetched->cache, &why)) << why;
  EXPECT_EQ(fetched->entry.entries, out->entry.entries);
  EXPECT_EQ(fetched->entry.payload_bytes, out->entry.payload_bytes);
  EXPECT_DOUBLE_EQ(fetched->entry.fidelity.mean_cosine, out->entry.fidelity.mean_cosine);
  EXPECT_EQ(fetched->entry.attributes, out->entry.attributes);

  // Only the last block holds an entry.
  EXPECT_TRUE(engine_->Fetch(chain[2], out->entry.spec_hash).status().IsNotFound());
}

TEST_F(EngineTest, LookupFindsTheDeepestStoredPrefix) {
  const auto spec_hash = SpecHash(testing::FastSpec());
  const auto long_chain = testing::Chain(2, 8);
  const std::vector<std::string> prefix(long_chain.begin(), long_chain.begin() + 3);
  ASSERT_TRUE(engine_->Compact(testing::InlineRequest(testing::TinyCache(1), prefix)).ok());

  Result<LookupOutcome> hit = engine_->Lookup(long_chain, spec_hash);
  ASSERT_TRUE(hit.ok()) << hit.status().ToString();
  EXPECT_EQ(hit->matched_blocks, 3u);
  ASSERT_TRUE(hit->entry.has_value());
  EXPECT_EQ(hit->entry->block_hash, long_chain[2]);

  // A longer prefix of the same chain, stored later, wins.
  const std::vector<std::string> longer(long_chain.begin(), long_chain.begin() + 6);
  ASSERT_TRUE(engine_->Compact(testing::InlineRequest(testing::TinyCache(2), longer)).ok());
  EXPECT_EQ(engine_->Lookup(long_chain, spec_hash)->matched_blocks, 6u);
  // A chain that stops before any stored block, another spec, another chain: misses.
  EXPECT_EQ(engine_->Lookup(std::span(long_chain).first(2), spec_hash)->matched_blocks, 0u);
  CompactionSpec other = testing::FastSpec();
  other.ratio = 4;
  Result<LookupOutcome> miss = engine_->Lookup(long_chain, SpecHash(other));
  ASSERT_TRUE(miss.ok());
  EXPECT_EQ(miss->matched_blocks, 0u);
  EXPECT_FALSE(miss->entry.has_value());
  EXPECT_EQ(engine_->Lookup(testing::Chain(3, 8), spec_hash)->matched_blocks, 0u);
}

TEST_F(EngineTest, DeleteRemovesTheEntry) {
  const auto chain = testing::Chain(4, 2);
  const auto spec_hash = SpecHash(testing::FastSpec());
  ASSERT_TRUE(engine_->Compact(testing::InlineRequest(testing::TinyCache(4), chain)).ok());
  ASSERT_TRUE(engine_->Delete(chain.back(), spec_hash).ok());
  EXPECT_TRUE(engine_->Fetch(chain.back(), spec_hash).status().IsNotFound());
  EXPECT_EQ(engine_->Lookup(chain, spec_hash)->matched_blocks, 0u);
  EXPECT_TRUE(engine_->Delete(chain.back(), spec_hash).IsNotFound());
}

TEST_F(EngineTest, AsyncJobReportsItsResult) {
  const auto chain = testing::Chain(5, 1);
  Result<uint64_t> id = engine_->CompactAsync(testing::InlineRequest(testing::TinyCache(5), chain));
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_GE(*id, 1u);
  const JobInfo job = WaitJob(*id);
  ASSERT_EQ(job.state, JobState::kSucceeded) << job.error.ToString();
  ASSERT_TRUE(job.outcome.has_value());
  EXPECT_TRUE(job.outcome->stored);
  EXPECT_EQ(job.request_id, "test");
  EXPECT_GT(job.submitted_ms, 0);
  EXPECT_TRUE(engine_->Fetch(chain.back(), job.outcome->entry.spec_hash).ok());
  EXPECT_FALSE(*engine_->Cancel(*id));  // already finished
  EXPECT_TRUE(engine_->GetJob(*id + 1000).status().IsNotFound());
}

TEST_F(EngineTest, StagedUploadIsConsumedByItsCompactRequest) {
  const KvCache cache = testing::TinyCache(6);
  ASSERT_TRUE(engine_->StageUpload(42, cache).ok());
  EXPECT_TRUE(engine_->StageUpload(42, cache).IsInvalidArgument());
  EXPECT_EQ(engine_->Stats().staged_uploads, 1u);
  EXPECT_GT(engine_->Stats().staged_bytes, 0u);

  CompactRequest r = testing::InlineRequest(cache, testing::Chain(6, 2));
  r.inline_payload.reset();
  r.upload_session = 42;
  Result<CompactOutcome> out = engine_->Compact(r);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_TRUE(out->stored);
  EXPECT_EQ(engine_->Stats().staged_uploads, 0u);
  EXPECT_EQ(engine_->Stats().staged_bytes, 0u);
  // The session is gone.
  EXPECT_TRUE(engine_->Compact(r).status().IsNotFound());
}

TEST_F(EngineTest, FailedGateIsReportedAndNotStoredByDefault) {
  CompactionSpec spec = testing::FastSpec();
  spec.gate.min_cosine = 1.0;  // unreachable
  spec.gate.max_rounds = 1;
  const auto chain = testing::Chain(7, 1);
  Result<CompactOutcome> out =
      engine_->Compact(testing::InlineRequest(testing::TinyCache(7), chain, spec));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_FALSE(out->stored);
  EXPECT_TRUE(out->entry.fidelity.gate_requested);
  EXPECT_FALSE(out->entry.fidelity.gate_passed);
  EXPECT_EQ(out->entry.fidelity.gate_rounds, 2);
  EXPECT_TRUE(engine_->Fetch(chain.back(), SpecHash(spec)).status().IsNotFound());
  EXPECT_EQ(engine_->Stats().store.puts, 0u);
}

TEST_F(EngineTest, FailedGateIsStoredAndMarkedWhenConfigured) {
  Close();
  EngineOptions options;
  options.store_failed_gate = true;
  Open(options);
  CompactionSpec spec = testing::FastSpec();
  spec.gate.min_cosine = 1.0;
  spec.gate.max_rounds = 0;
  const auto chain = testing::Chain(8, 1);
  Result<CompactOutcome> out =
      engine_->Compact(testing::InlineRequest(testing::TinyCache(8), chain, spec));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_TRUE(out->stored);
  Result<LookupOutcome> hit = engine_->Lookup(chain, SpecHash(spec));
  ASSERT_TRUE(hit.ok());
  ASSERT_TRUE(hit->entry.has_value());
  EXPECT_TRUE(hit->entry->fidelity.gate_requested);
  EXPECT_FALSE(hit->entry->fidelity.gate_passed);
}

TEST_F(EngineTest, EntriesSurviveARestart) {
  const auto chain = testing::Chain(9, 3);
  const auto spec_hash = SpecHash(testing::FastSpec());
  Result<CompactOutcome> out =
      engine_->Compact(testing::InlineRequest(testing::TinyCache(9), chain));
  ASSERT_TRUE(out.ok());
  Close();
  Open(EngineOptions{});
  Result<FetchOutcome> fetched = engine_->Fetch(chain.back(), spec_hash);
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  EXPECT_EQ(fetched->entry.entries, out->entry.entries);
  EXPECT_EQ(fetched->entry.method, "am");
}

TEST_F(EngineTest, StatsHealthAndMetrics) {
  ASSERT_TRUE(
      engine_->Compact(testing::InlineRequest(testing::TinyCache(10), testing::Chain(10, 1))).ok());
  EngineStats s = engine_->Stats();
  EXPECT_EQ(s.jobs_submitted, 1u);
  EXPECT_EQ(s.jobs_succeeded, 1u);
  EXPECT_EQ(s.store.puts, 1u);
  EXPECT_EQ(s.executor, "cpu");
  EXPECT_EQ(s.queue_capacity, EngineOptions{}.queue_capacity);
  EngineHealth h = engine_->Health();
  EXPECT_TRUE(h.serving);
  EXPECT_EQ(h.queue_depth, 0u);
  const std::string text = metrics_.ExposePrometheus();
  EXPECT_NE(text.find("kvc_engine_jobs_total{outcome=\"succeeded\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("kvc_compaction_ratio_count{method=\"am\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("kvc_compaction_fidelity_cosine_count{method=\"am\"} 1"), std::string::npos);

  engine_->Stop();
  EXPECT_FALSE(engine_->Health().serving);
  EXPECT_EQ(engine_->Compact(testing::InlineRequest(testing::TinyCache(1), testing::Chain(1, 1)))
                .status()
                .code(),
            Code::kUnavailable);
  EXPECT_EQ(engine_->Lookup(testing::Chain(1, 1), SpecHash(testing::FastSpec())).status().code(),
            Code::kUnavailable);
}

}  // namespace
}  // namespace kvc::engine
