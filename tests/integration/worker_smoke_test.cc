// kvcompactd as a real process on loopback, driven by the generated Thrift client, plain HTTP
// and the UCX endpoint: every operation, garbage on its ports, kill -9 and restart, SIGTERM.
#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "common/kv_io.h"
#include "common/safetensors.h"
#include "services/engine/engine_testing.h"
#include "services/engine/spec_hash.h"
#include "services/rpc/convert.h"
#include "services/rpc/rpc_testing.h"
#include "services/transport/endpoint.h"
#include "services/transport/ucx_context.h"
#include "storage/testing.h"
#include "tests/integration/worker_process.h"

namespace kvc {
namespace {

using namespace std::chrono_literals;
using rpc::testing::HttpGet;
using rpc::testing::TestClient;

class WorkerSmokeTest : public ::testing::Test {
 protected:
  std::unique_ptr<testing::WorkerProcess> StartWorker(bool ucx = true,
                                                      std::vector<std::string> extra = {}) {
    testing::WorkerProcessOptions o;
    o.data_dir = dir_.Sub("data");
    o.log_path = dir_.Sub("worker.log");
    o.ucx = ucx;
    o.extra_args = std::move(extra);
    auto w = testing::WorkerProcess::Start(o);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    return w.ok() ? std::move(w).value() : nullptr;
  }
  rpc::CompactRequest Request(uint64_t seed, size_t blocks = 2) {
    rpc::CompactRequest r;
    r.request_id = "it-" + std::to_string(seed);
    r.tenant = "tenant";
    r.model = "synthetic";
    r.block_hashes = engine::testing::Chain(seed, blocks);
    r.spec = rpc::SpecToThrift(engine::testing::FastSpec());
    r.__set_inline_payload(engine::testing::PayloadOf(engine::testing::TinyCache(seed)));
    return r;
  }
  static std::string SpecHash() { return engine::SpecHash(engine::testing::FastSpec()); }
  rpc::FetchRequest Fetch(uint64_t seed, size_t blocks = 2) {
    rpc::FetchRequest f;
    f.block_hash = engine::testing::Chain(seed, blocks).back();
    f.spec_hash = SpecHash();
    return f;
  }

  storage::testing::TempDir dir_{"kvc-it-worker"};
};

TEST_F(WorkerSmokeTest, EveryOperationOverThriftAndHttp) {
  auto worker = StartWorker();
  ASSERT_NE(worker, nullptr);
  ASSERT_NE(worker->thrift_port(), 0);
  ASSERT_NE(worker->http_port(), 0);
  ASSERT_NE(worker->ucx_port(), 0) << worker->ready_line();
  TestClient client("127.0.0.1", worker->thrift_port());

  rpc::Health health;
  client->health(health);
  EXPECT_TRUE(health.serving);
  EXPECT_EQ(health.executor, "cpu");
  EXPECT_NE(health.ucx_address.find(std::to_string(worker->ucx_port())), std::string::npos);

  rpc::CompactResult result;
  client->compact(result, Request(1, 3));
  EXPECT_TRUE(result.stored);
  EXPECT_EQ(result.manifest.method, "am");
  EXPECT_GT(result.manifest.fidelity.mean_cosine, 0.5);

  rpc::LookupResult found;
  client->lookup(found, engine::testing::Chain(1, 6), SpecHash());
  EXPECT_EQ(found.matched_blocks, 3);

  rpc::FetchResult fetched;
  client->fetch(fetched, Fetch(1, 3));
  auto file = SafetensorsReader::ParseCopy(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(fetched.inline_payload.data()),
                               fetched.inline_payload.size()));
  ASSERT_TRUE(file.ok());
  Result<CompactedCache> cache = CompactedCacheFromSafetensors(*file);
  ASSERT_TRUE(cache.ok()) << cache.status().ToString();
  EXPECT_EQ(cache->total_entries(), result.manifest.entries);

  const int64_t job = client->compact_async(Request(2));
  rpc::JobStatus js;
  for (int i = 0; i < 1000; ++i) {
    client->job_status(js, job);
    if (js.state == rpc::JobState::SUCCEEDED || js.state == rpc::JobState::FAILED) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(js.state, rpc::JobState::SUCCEEDED) << js.error_message;

  client->delete_entry(Fetch(1, 3).block_hash, SpecHash());
  EXPECT_THROW(client->fetch(fetched, Fetch(1, 3)), rpc::NotFound);

  rpc::Stats stats;
  client->stats(stats);
  EXPECT_EQ(stats.jobs_succeeded, 2);
  EXPECT_EQ(stats.store_puts, 2);
  EXPECT_EQ(stats.store_deletes, 1);

  std::string body;
  EXPECT_EQ(HttpGet("127.0.0.1", worker->http_port(), "/healthz", &body), 200);
  EXPECT_EQ(body, "serving\n");
  ASSERT_EQ(HttpGet("127.0.0.1", worker->http_port(), "/metrics", &body), 200);
  EXPECT_NE(body.find("kvc_rpc_requests_total{op=\"compact\",code=\"ok\"} 1"), std::string::npos);
  EXPECT_NE(body.find("kvc_rpc_requests_total{op=\"fetch\",code=\"not_found\"} 1"),
            std::string::npos);
  EXPECT_NE(body.find("kvc_engine_jobs_total{outcome=\"succeeded\"} 2"), std::string::npos);
  EXPECT_NE(body.find("kvc_compaction_ratio_count{method=\"am\"} 2"), std::string::npos);
  EXPECT_NE(body.find("kvc_store_puts_total 2"), std::string::npos);
  EXPECT_NE(body.find("kvc_up 1"), std::string::npos);
  EXPECT_EQ(HttpGet("127.0.0.1", worker->http_port(), "/nope"), 404);
}

TEST_F(WorkerSmokeTest, UcxUploadCompactAndFetch) {
  auto worker = StartWorker();
  ASSERT_NE(worker, nullptr);
  auto ctx = transport::UcxContext::Create();
  ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
  auto ep = transport::Connect(*ctx, "127.0.0.1", worker->ucx_port());
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  const KvCache cache = engine::testing::TinyCache(5);
  Result<transport::UploadReceipt> receipt = (*ep)->Upload(cache, transport::UploadOptions{});
  ASSERT_TRUE(receipt.ok()) << receipt.status().ToString();

  TestClient client("127.0.0.1", worker->thrift_port());
  rpc::CompactRequest r = Request(5);
  r.__isset.inline_payload = false;
  r.inline_payload.clear();
  r.__set_upload_session(static_cast<int64_t>(receipt->session));
  rpc::CompactResult result;
  client->compact(result, r);
  EXPECT_TRUE(result.stored);
  EXPECT_THROW(client->compact(result, r), rpc::NotFound);  // the upload was consumed

  rpc::FetchRequest f = Fetch(5);
  f.mode = rpc::FetchMode::UCX;
  rpc::FetchResult where;
  client->fetch(where, f);
  ASSERT_TRUE(where.__isset.ucx_key);
  Result<CompactedCache> got = (*ep)->Fetch(where.ucx_key, transport::FetchOptions{});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->total_entries(), result.manifest.entries);
  EXPECT_TRUE((*ep)
                  ->Fetch(*engine::EntryFetchKey(Fetch(77).block_hash, SpecHash()),
                          transport::FetchOptions{})
                  .status()
                  .IsNotFound());
  (*ep)->Close();
}

TEST_F(WorkerSmokeTest, GarbageOnItsPortsLeavesItServing) {
  auto worker = StartWorker(/*ucx=*/false);
  ASSERT_NE(worker, nullptr);
  std::string noise;
  for (int i = 0; i < 4096; ++i) noise += static_cast<char>((i * 7919) % 251);
  for (const std::string& junk :
       {noise, std::string("\xff\xff\xff\xff", 4), std::string("GET /metrics HTTP/1.1\r\n\r\n")}) {
    rpc::testing::Exchange("127.0.0.1", worker->thrift_port(), junk, 2s, true);
    rpc::testing::Exchange("127.0.0.1", worker->http_port(), junk, 2s, true);
  }
  TestClient client("127.0.0.1", worker->thrift_port());
  rpc::CompactResult result;
  client->compact(result, Request(3));
  EXPECT_TRUE(result.stored);
  EXPECT_EQ(HttpGet("127.0.0.1", worker->http_port(), "/healthz"), 200);
  EXPECT_EQ(worker->Wait(0ms), -1);  // still running
}

TEST_F(WorkerSmokeTest, KillNineLosesNoAcknowledgedEntry) {
  std::vector<int64_t> entries;
  {
    auto worker = StartWorker(/*ucx=*/false);
    ASSERT_NE(worker, nullptr);
    TestClient client("127.0.0.1", worker->thrift_port());
    for (uint64_t seed = 10; seed < 16; ++seed) {
      rpc::CompactResult result;
      client->compact(result, Request(seed));
      ASSERT_TRUE(result.stored);
      entries.push_back(result.manifest.entries);
    }
    worker->Signal(SIGKILL);
    EXPECT_EQ(worker->Wait(10s), 128 + SIGKILL);
  }
  auto worker = StartWorker(/*ucx=*/false);
  ASSERT_NE(worker, nullptr);
  TestClient client("127.0.0.1", worker->thrift_port());
  for (uint64_t seed = 10; seed < 16; ++seed) {
    rpc::FetchResult fetched;
    client->fetch(fetched, Fetch(seed));
    EXPECT_EQ(fetched.manifest.entries, entries[seed - 10]);
    EXPECT_EQ(fetched.manifest.attributes.at("request_id"), "it-" + std::to_string(seed));
    rpc::LookupResult found;
    client->lookup(found, engine::testing::Chain(seed, 4), SpecHash());
    EXPECT_EQ(found.matched_blocks, 2);
  }
}

TEST_F(WorkerSmokeTest, SigtermDrainsQueuedJobsAndExitsZero) {
  auto worker = StartWorker(/*ucx=*/false, {"--executor-threads", "1"});
  ASSERT_NE(worker, nullptr);
  std::vector<int64_t> jobs;
  {
    TestClient client("127.0.0.1", worker->thrift_port());
    for (uint64_t seed = 20; seed < 26; ++seed)
      jobs.push_back(client->compact_async(Request(seed)));
  }
  worker->Signal(SIGTERM);
  EXPECT_EQ(worker->Wait(60s), 0) << worker->LogTail();
  EXPECT_NE(worker->LogTail().find("engine: stopped"), std::string::npos);
  // Every admitted job ran during the drain and its entry is on disk.
  auto again = StartWorker(/*ucx=*/false);
  ASSERT_NE(again, nullptr);
  TestClient client("127.0.0.1", again->thrift_port());
  for (uint64_t seed = 20; seed < 26; ++seed) {
    rpc::FetchResult fetched;
    EXPECT_NO_THROW(client->fetch(fetched, Fetch(seed))) << seed;
  }
  again->Signal(SIGINT);
  EXPECT_EQ(again->Wait(60s), 0);
}

TEST_F(WorkerSmokeTest, StartupFailuresHaveExitCodes) {
  const std::string log = dir_.Sub("fail.log");
  EXPECT_EQ(testing::RunWorkerToExit({"--no-such-flag"}, log, 30s), 2);
  EXPECT_EQ(testing::RunWorkerToExit({"--config", dir_.Sub("missing.json")}, log, 30s), 2);
  auto worker = StartWorker(/*ucx=*/false);
  ASSERT_NE(worker, nullptr);
  // The Thrift port is taken: the second worker cannot start.
  EXPECT_EQ(testing::RunWorkerToExit(
                {"--data-dir", dir_.Sub("other"), "--listen", "127.0.0.1", "--no-ucx",
                 "--http-port", "0", "--thrift-port", std::to_string(worker->thrift_port())},
                log, 60s),
            1);
  // An executor kind that does not exist is a usage error ("gpu" without a device serves on
  // the CPU instead: services/worker/worker_test.cc).
  EXPECT_EQ(testing::RunWorkerToExit({"--data-dir", dir_.Sub("tpu"), "--executor", "tpu",
                                      "--no-ucx", "--thrift-port", "0", "--http-port", "0"},
                                     log, 30s),
            2);
}

}  // namespace
}  // namespace kvc
