// The Thrift handler called directly (no sockets): types translated both ways, typed
// exceptions, and every call counted.
#include "services/rpc/handler.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/kv_io.h"
#include "common/safetensors.h"
#include "services/engine/engine_testing.h"
#include "services/engine/spec_hash.h"
#include "services/rpc/convert.h"
#include "storage/testing.h"

namespace kvc::rpc {
namespace {

class HandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::TieredStore::Open(engine::testing::StoreOptions(dir_.path().string()));
    ASSERT_TRUE(store.ok());
    engine::EngineOptions o;
    o.queue_capacity = 4;
    engine_ = std::make_unique<engine::Engine>(
        o, std::shared_ptr<storage::TieredStore>(std::move(store).value()), nullptr, &metrics_);
    ASSERT_TRUE(engine_->Start().ok());
    HandlerOptions h;
    h.ucx_address = "127.0.0.1:7401";
    h.max_inline_fetch_bytes = 1 << 20;
    handler_ = std::make_unique<KvCompactHandler>(engine_.get(), &recorder_, h);
  }

  CompactRequest Request(uint64_t chain_seed, size_t blocks = 2) {
    CompactRequest r;
    r.request_id = "req-" + std::to_string(chain_seed);
    r.tenant = "t";
    r.model = "m";
    r.block_hashes = engine::testing::Chain(chain_seed, blocks);
    r.spec = SpecToThrift(engine::testing::FastSpec());
    r.__set_inline_payload(engine::testing::PayloadOf(cache_));
    return r;
  }
  std::string SpecHash() const { return engine::SpecHash(engine::testing::FastSpec()); }
  bool Exposes(const std::string& line) const {
    return metrics_.ExposePrometheus().find(line) != std::string::npos;
  }

  storage::testing::TempDir dir_{"kvc-rpc-handler"};
  MetricsRegistry metrics_;
  CallRecorder recorder_{&metrics_};
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<KvCompactHandler> handler_;
  KvCache cache_ = engine::testing::TinyCache(31);
};

TEST_F(HandlerTest, CompactLookupFetchDelete) {
  CompactResult result;
  handler_->compact(result, Request(1, 3));
  EXPECT_EQ(result.request_id, "req-1");
  EXPECT_TRUE(result.stored);
  EXPECT_EQ(result.manifest.method, "am");
  EXPECT_EQ(result.manifest.layout.n_layers, 2);
  EXPECT_EQ(result.manifest.spec_hash, SpecHash());
  EXPECT_TRUE(result.manifest.fidelity.measured);

  LookupResult found;
  handler_->lookup(found, engine::testing::Chain(1, 5), SpecHash());
  EXPECT_EQ(found.matched_blocks, 3);
  ASSERT_TRUE(found.__isset.manifest);
  EXPECT_EQ(found.manifest.entries, result.manifest.entries);

  FetchRequest fr;
  fr.block_hash = engine::testing::Chain(1, 3).back();
  fr.spec_hash = SpecHash();
  FetchResult fetched;
  handler_->fetch(fetched, fr);
  ASSERT_TRUE(fetched.__isset.inline_payload);
  EXPECT_FALSE(fetched.__isset.ucx_key);
  auto file = SafetensorsReader::ParseCopy(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(fetched.inline_payload.data()),
                               fetched.inline_payload.size()));
  ASSERT_TRUE(file.ok());
  Result<CompactedCache> cache = CompactedCacheFromSafetensors(*file);
  ASSERT_TRUE(cache.ok()) << cache.status().ToString();
  EXPECT_EQ(cache->total_entries(), result.manifest.entries);

  fr.mode = FetchMode::UCX;
  FetchResult ucx;
  handler_->fetch(ucx, fr);
  EXPECT_FALSE(ucx.__isset.inline_payload);
  EXPECT_EQ(ucx.ucx_address, "127.0.0.1:7401");
  EXPECT_EQ(engine::ParseEntryFetchKey(ucx.ucx_key)->block_hash, fr.block_hash);
  EXPECT_EQ(ucx.manifest.entries, result.manifest.entries);

  handler_->delete_entry(fr.block_hash, fr.spec_hash);
  EXPECT_THROW(handler_->fetch(fetched, fr), NotFound);
  EXPECT_THROW(handler_->delete_entry(fr.block_hash, fr.spec_hash), NotFound);

  EXPECT_TRUE(Exposes("kvc_rpc_requests_total{op=\"compact\",code=\"ok\"} 1"));
  EXPECT_TRUE(Exposes("kvc_rpc_requests_total{op=\"fetch\",code=\"not_found\"} 1"));
  EXPECT_TRUE(Exposes("kvc_store_lookups_total{result=\"hit\"} 1"));
  EXPECT_TRUE(Exposes("kvc_store_fetches_total{result=\"miss\"} 1"));
  EXPECT_TRUE(Exposes("kvc_rpc_latency_seconds_count{op=\"lookup\"} 1"));
  EXPECT_TRUE(Exposes("kvc_rpc_bytes_out_total{op=\"fetch\"} " +
                      std::to_string(fetched.inline_payload.size())));
}

TEST_F(HandlerTest, TypedExceptions) {
  CompactRequest bad = Request(2);
  bad.block_hashes.clear();
  EXPECT_THROW(handler_->compact_async(bad), InvalidArgument);
  bad = Request(2);
  bad.spec.method = "nonsense";
  EXPECT_THROW(handler_->compact_async(bad), Unsupported);
  bad = Request(2);
  bad.spec.options["no.such.option"] = "1";
  EXPECT_THROW(handler_->compact_async(bad), InvalidArgument);
  bad = Request(2);
  bad.inline_payload = "garbage";
  EXPECT_THROW(handler_->compact(*std::make_unique<CompactResult>(), bad), Corruption);

  LookupResult lr;
  EXPECT_THROW(handler_->lookup(lr, engine::testing::Chain(1, 2), "short"), InvalidArgument);
  handler_->lookup(lr, engine::testing::Chain(9, 2), SpecHash());
  EXPECT_EQ(lr.matched_blocks, 0);
  EXPECT_FALSE(lr.__isset.manifest);

  JobStatus js;
  EXPECT_THROW(handler_->job_status(js, 999), NotFound);
  EXPECT_THROW(handler_->job_status(js, -1), InvalidArgument);
  EXPECT_THROW(handler_->cancel_job(0), InvalidArgument);
  EXPECT_TRUE(Exposes("kvc_rpc_requests_total{op=\"compact_async\",code=\"invalid_argument\"} 2"));
  EXPECT_TRUE(Exposes("kvc_store_lookups_total{result=\"miss\"} 1"));
}

TEST_F(HandlerTest, BusyCarriesTheRetryHint) {
  engine_->Stop();  // a stopped engine answers Unavailable ...
  EXPECT_THROW(handler_->compact_async(Request(3)), Unavailable);
  Health h;
  handler_->health(h);
  EXPECT_FALSE(h.serving);
  EXPECT_EQ(h.ucx_address, "127.0.0.1:7401");
  // ... and a full staging budget answers Busy with the engine's hint.
  std::filesystem::create_directories(dir_.Sub("second"));
  auto store = storage::TieredStore::Open(engine::testing::StoreOptions(dir_.Sub("second")));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  engine::EngineOptions o;
  o.staging_bytes = 1000;
  o.retry_after = std::chrono::milliseconds(4321);
  engine::Engine small(o, std::shared_ptr<storage::TieredStore>(std::move(store).value()));
  ASSERT_TRUE(small.Start().ok());
  KvCompactHandler handler(&small, &recorder_, HandlerOptions{});
  try {
    handler.compact_async(Request(3));
    FAIL() << "expected Busy";
  } catch (const Busy& busy) {
    EXPECT_EQ(busy.retry_after_ms, 4321);
    EXPECT_NE(busy.message.find("staging budget"), std::string::npos);
  }
}

TEST_F(HandlerTest, AsyncJobsStatsHealth) {
  const int64_t id = handler_->compact_async(Request(4));
  JobStatus js;
  for (int i = 0; i < 2000; ++i) {
    handler_->job_status(js, id);
    if (js.state != JobState::QUEUED && js.state != JobState::RUNNING) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(js.state, JobState::SUCCEEDED) << js.error_message;
  EXPECT_TRUE(js.__isset.result);
  EXPECT_EQ(js.request_id, "req-4");
  EXPECT_FALSE(handler_->cancel_job(id));

  Stats s;
  handler_->stats(s);
  EXPECT_EQ(s.jobs_succeeded, 1);
  EXPECT_EQ(s.store_puts, 1);
  EXPECT_EQ(s.queue_capacity, 4);
  EXPECT_EQ(s.executor, "cpu");
  Health h;
  handler_->health(h);
  EXPECT_TRUE(h.serving);
  EXPECT_EQ(h.version, "0.1.0");
}

TEST_F(HandlerTest, OversizedInlineFetchAsksForUcx) {
  HandlerOptions tiny;
  tiny.max_inline_fetch_bytes = 100;
  KvCompactHandler handler(engine_.get(), &recorder_, tiny);
  CompactResult result;
  handler.compact(result, Request(5, 1));
  FetchRequest fr;
  fr.block_hash = engine::testing::Chain(5, 1).back();
  fr.spec_hash = SpecHash();
  FetchResult out;
  try {
    handler.fetch(out, fr);
    FAIL() << "expected InvalidArgument";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(e.message.find("UCX"), std::string::npos);
  }
  fr.mode = FetchMode::UCX;
  EXPECT_THROW(handler.fetch(out, fr), Unavailable);  // this handler has no UCX address
}

}  // namespace
}  // namespace kvc::rpc
