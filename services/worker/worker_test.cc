// The Worker in-process: start on free ports without UCX, serve HTTP and Thrift, shut down on
// request, refuse to start on a taken port or an unknown executor, and serve on the CPU when
// asked for GPUs that are not there.
#include "services/worker/worker.h"

#include <gtest/gtest.h>

#include <future>

#include "kernels/backend_factory.h"
#include "services/rpc/rpc_testing.h"
#include "storage/testing.h"

namespace kvc::worker {
namespace {

WorkerOptions LocalOptions(const std::string& dir) {
  WorkerOptions o;
  o.data_dir = dir;
  o.listen_address = "127.0.0.1";
  o.thrift_port = 0;
  o.http_port = 0;
  o.ucx_enabled = false;
  o.store_sync = false;
  o.stats_ms = 0;
  return o;
}

TEST(WorkerTest, ServesAndShutsDownOnRequest) {
  storage::testing::TempDir dir("kvc-worker");
  Worker worker(LocalOptions(dir.Sub("data")));
  ASSERT_TRUE(worker.Start().ok());
  const std::string ready = worker.ReadyLine();
  EXPECT_NE(ready.find("thrift=127.0.0.1:" + std::to_string(worker.thrift_port())),
            std::string::npos)
      << ready;
  EXPECT_NE(ready.find("ucx=off"), std::string::npos);
  EXPECT_EQ(worker.ucx_port(), 0);
  auto run = std::async(std::launch::async, [&] { return worker.Run(); });

  std::string body;
  EXPECT_EQ(rpc::testing::HttpGet("127.0.0.1", worker.http_port(), "/healthz", &body), 200);
  EXPECT_EQ(rpc::testing::HttpGet("127.0.0.1", worker.http_port(), "/metrics", &body), 200);
  EXPECT_NE(body.find("kvc_up 1"), std::string::npos);
  EXPECT_NE(body.find("kvc_store_entries{tier=\"warm\"} 0"), std::string::npos);
  EXPECT_EQ(rpc::testing::HttpGet("127.0.0.1", worker.http_port(), "/metrics?x", &body), 200);
  const std::string post = rpc::testing::Exchange(
      "127.0.0.1", worker.http_port(),
      "POST /metrics HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
      std::chrono::seconds(2));
  EXPECT_NE(post.find("405"), std::string::npos);
  {
    rpc::testing::TestClient client("127.0.0.1", worker.thrift_port());
    rpc::Health h;
    client->health(h);
    EXPECT_TRUE(h.serving);
    EXPECT_EQ(h.version, kWorkerVersion);
    EXPECT_TRUE(h.ucx_address.empty());
  }
  worker.RequestShutdown();
  worker.RequestShutdown();  // idempotent
  ASSERT_EQ(run.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_TRUE(run.get().ok());
  EXPECT_FALSE(worker.engine().Health().serving);
  EXPECT_EQ(rpc::testing::HttpGet("127.0.0.1", worker.http_port(), "/healthz"), 0);
}

TEST(WorkerTest, StartFailuresNameTheCause) {
  storage::testing::TempDir dir("kvc-worker");
  Worker first(LocalOptions(dir.Sub("a")));
  ASSERT_TRUE(first.Start().ok());
  WorkerOptions taken = LocalOptions(dir.Sub("b"));
  taken.http_port = first.http_port();
  Worker second(taken);
  const Status st = second.Start();
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("http"), std::string::npos);

  WorkerOptions tpu = LocalOptions(dir.Sub("c"));
  tpu.executor = "tpu";
  Worker third(tpu);
  EXPECT_EQ(third.Start().code(), Code::kInvalidArgument);
  EXPECT_FALSE(third.Run().ok());  // Run without a successful Start
}

// "gpu" on a machine (or build) without a CUDA device serves on the CPU and says so.
TEST(WorkerTest, GpuExecutorWithoutADeviceServesOnTheCpu) {
  storage::testing::TempDir dir("kvc-worker");
  WorkerOptions gpu = LocalOptions(dir.Sub("gpu"));
  gpu.executor = "gpu";
  Worker worker(gpu);
  ASSERT_TRUE(worker.Start().ok());
  EXPECT_EQ(worker.engine().Health().executor, GpuDeviceCount() > 0 ? "gpu" : "cpu");
  auto run = std::async(std::launch::async, [&] { return worker.Run(); });
  worker.RequestShutdown();
  ASSERT_EQ(run.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_TRUE(run.get().ok());
}

}  // namespace
}  // namespace kvc::worker
