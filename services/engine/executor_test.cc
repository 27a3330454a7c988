// Executor selection: "cpu", "gpu" (degrading to the CPU without a device), "auto", unknown
// names; the GPU executor's results against the CPU's, from several threads at once.
#include "services/engine/executor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <future>
#include <nlohmann/json.hpp>
#include <vector>

#include "kernels/backend_factory.h"
#include "services/engine/engine_testing.h"

namespace kvc::engine {
namespace {

bool SameBytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

void ExpectSameCache(const CompactedCache& a, const CompactedCache& b) {
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    EXPECT_EQ(a.layers[l].offsets, b.layers[l].offsets);
    EXPECT_TRUE(SameBytes(a.layers[l].k, b.layers[l].k)) << "layer " << l;
    EXPECT_TRUE(SameBytes(a.layers[l].v, b.layers[l].v)) << "layer " << l;
    EXPECT_TRUE(SameBytes(a.layers[l].beta, b.layers[l].beta)) << "layer " << l;
  }
}

TEST(ExecutorTest, NamesAndUnknownKinds) {
  Result<std::shared_ptr<CompactionExecutor>> cpu = MakeExecutor("cpu");
  ASSERT_TRUE(cpu.ok());
  EXPECT_STREQ((*cpu)->name(), "cpu");
  Result<std::shared_ptr<CompactionExecutor>> tpu = MakeExecutor("tpu");
  ASSERT_FALSE(tpu.ok());
  EXPECT_TRUE(tpu.status().IsInvalidArgument());
  EXPECT_NE(tpu.status().message().find("auto, cpu, gpu"), std::string::npos);
  Result<std::shared_ptr<CompactionExecutor>> autos = MakeExecutor("auto");
  ASSERT_TRUE(autos.ok()) << autos.status().ToString();
  EXPECT_STREQ((*autos)->name(), GpuDeviceCount() > 0 ? "gpu" : "cpu");
}

TEST(ExecutorTest, GpuWithoutADeviceFallsBackToTheSameCpuResult) {
  if (GpuDeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present: no fallback to test";
  Result<std::shared_ptr<CompactionExecutor>> gpu = MakeExecutor("gpu");
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  EXPECT_STREQ((*gpu)->name(), "cpu");
  const KvCache cache = testing::TinyCache(5);
  Result<CompactionResult> a = (*gpu)->Run(cache, testing::FastSpec());
  Result<CompactionResult> b = MakeCpuExecutor()->Run(cache, testing::FastSpec());
  ASSERT_TRUE(a.ok() && b.ok());
  ExpectSameCache(a->cache, b->cache);
  EXPECT_EQ(a->cache.metadata.at("backend"), b->cache.metadata.at("backend"));
  EXPECT_EQ(a->cache.metadata.at("fidelity"), b->cache.metadata.at("fidelity"));
}

// On a GPU machine: the GPU executor runs the AM fit on the device, from several threads at
// once (the backend serialises its contexts), and agrees with the CPU on held-out fidelity.
TEST(ExecutorTest, GpuExecutorAgreesWithTheCpuFromSeveralThreads) {
  if (GpuDeviceCount() == 0) {
    GTEST_SKIP() << "no CUDA device (" << GpuUnavailableReason() << ")";
  }
  Result<std::shared_ptr<CompactionExecutor>> gpu = MakeExecutor("gpu");
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  ASSERT_STREQ((*gpu)->name(), "gpu");
  const KvCache cache = testing::TinyCache(5);
  const CompactionSpec spec = testing::FastSpec();
  Result<CompactionResult> cpu = MakeCpuExecutor()->Run(cache, spec);
  ASSERT_TRUE(cpu.ok());
  std::vector<std::future<Result<CompactionResult>>> runs;
  for (int i = 0; i < 3; ++i) {
    runs.push_back(std::async(std::launch::async, [&] { return (*gpu)->Run(cache, spec); }));
  }
  for (auto& f : runs) {
    Result<CompactionResult> r = f.get();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    const auto md = nlohmann::json::parse(r->cache.metadata.at("backend"));
    EXPECT_EQ(md["post"], "cuda");
    ASSERT_TRUE(r->fidelity && cpu->fidelity);
    EXPECT_NEAR(r->fidelity->overall.cosine.mean, cpu->fidelity->overall.cosine.mean, 5e-3);
  }
}

}  // namespace
}  // namespace kvc::engine
