// GpuBackend against the CPU front: AM with highest-attention and with a fixed selection,
// highest-attention scores, batch splitting, the NCCL all-gather (size one, and across devices
// when there are several) and layer sharding. Every test skips with "no CUDA device" on a
// machine without one.
#include "kernels/cuda/gpu_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>

#include "kernels/compactor.h"
#include "kernels/cpu/am_test_util.h"
#include "kernels/cpu/attention_matching.h"
#include "kernels/cpu/compact_stages.h"
#include "kernels/cuda/device.h"

namespace kvc::cuda {
namespace {

using kvc::testing::CacheShape;
using kvc::testing::MakeCache;

#define KVC_REQUIRE_DEVICES(n)                                                        \
  do {                                                                                \
    if (DeviceCount() < (n)) {                                                        \
      if (DeviceCount() == 0) GTEST_SKIP() << "no CUDA device: " << NoDeviceReason(); \
      GTEST_SKIP() << "needs " << (n) << " CUDA devices, found " << DeviceCount();    \
    }                                                                                 \
  } while (0)

std::unique_ptr<GpuBackend> MakeBackend(GpuBackendOptions o = {}) {
  Result<std::unique_ptr<GpuBackend>> b = GpuBackend::Create(o);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? std::move(b).value() : nullptr;
}

KvCache TestCache(int layers = 3) {
  CacheShape s;
  s.layers = layers;
  s.kv_heads = 2;
  s.q_heads = 4;
  s.head_dim = 32;
  s.tokens = 384;
  s.n_ref = 256;  // 2 x ~205 pooled fit queries per kv head: well above the budget
  s.n_window = 32;
  return MakeCache(s, 3);
}

CompactionSpec AmSpec() {
  CompactionSpec s;
  s.budget = 38;
  s.threads = 2;
  return s;
}

std::string Stage(const CompactionResult& r, const char* stage) {
  return nlohmann::json::parse(r.cache.metadata.at("backend"))[stage].get<std::string>();
}

bool SameBytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Runs spec on the CPU and on `backend`; checks fidelity within 5e-3 and returns both.
std::pair<CompactionResult, CompactionResult> RunBoth(const KvCache& cache,
                                                      const CompactionSpec& spec,
                                                      ComputeBackend* backend) {
  Result<CompactionResult> cpu = Compact(cache, spec);
  Result<CompactionResult> gpu = Compact(cache, spec, backend);
  EXPECT_TRUE(cpu.ok()) << cpu.status().ToString();
  EXPECT_TRUE(gpu.ok()) << gpu.status().ToString();
  if (!cpu.ok() || !gpu.ok()) return {};
  EXPECT_TRUE(cpu->fidelity && gpu->fidelity);
  const double c = cpu->fidelity->overall.cosine.mean, g = gpu->fidelity->overall.cosine.mean;
  EXPECT_NEAR(g, c, 5e-3) << "held-out cosine: cpu " << c << ", gpu " << g;
  EXPECT_TRUE(std::isfinite(g));
  return {std::move(cpu).value(), std::move(gpu).value()};
}

TEST(GpuBackendTest, NcclSizeOneAllGatherRoundTrip) {
  KVC_REQUIRE_DEVICES(1);
  auto b = MakeBackend({.devices = {0}});
  ASSERT_NE(b, nullptr);
  const std::vector<float> x = {1.5f, -2.f, 3.25f, 0.f, 7.f};
  Result<std::vector<float>> got = b->AllGatherForTest({x}, 0);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, x);
  Result<std::unique_ptr<NcclComms>> comms = NcclComms::Create({0});
  ASSERT_TRUE(comms.ok()) << comms.status().ToString();
  EXPECT_EQ((*comms)->size(), 1);
  EXPECT_EQ(NcclComms::Create({0, 0}).status().code(), Code::kInvalidArgument);
}

TEST(GpuBackendTest, AmHighestAttentionMatchesTheCpuFront) {
  KVC_REQUIRE_DEVICES(1);
  auto b = MakeBackend();
  ASSERT_NE(b, nullptr);
  auto [cpu, gpu] = RunBoth(TestCache(), AmSpec(), b.get());
  EXPECT_EQ(Stage(gpu, "post"), "cuda");
  EXPECT_EQ(Stage(gpu, "score"), "none");
  EXPECT_EQ(gpu.cache.total_entries(), cpu.cache.total_entries());
}

TEST(GpuBackendTest, FixedSelectionKeepsExactlyTheCpuPositions) {
  KVC_REQUIRE_DEVICES(1);
  auto b = MakeBackend();
  ASSERT_NE(b, nullptr);
  CompactionSpec spec = AmSpec();
  spec.am.selection = AmSelection::kScores;
  spec.am.selector = Method::kStreamingLlm;  // scored on the CPU (no attention), fitted on GPU
  auto [cpu, gpu] = RunBoth(TestCache(), spec, b.get());
  EXPECT_EQ(Stage(gpu, "score"), "cpu");
  EXPECT_EQ(Stage(gpu, "post"), "cuda");
  ASSERT_EQ(cpu.cache.layers.size(), gpu.cache.layers.size());
  for (size_t l = 0; l < cpu.cache.layers.size(); ++l) {
    EXPECT_EQ(cpu.cache.layers[l].offsets, gpu.cache.layers[l].offsets);
    // Kept keys are the source keys at the kept positions: equal bytes = equal positions.
    EXPECT_TRUE(SameBytes(cpu.cache.layers[l].k, gpu.cache.layers[l].k)) << "layer " << l;
  }
}

TEST(GpuBackendTest, HighestAttentionScoresMatchTheCpu) {
  KVC_REQUIRE_DEVICES(1);
  auto b = MakeBackend();
  ASSERT_NE(b, nullptr);
  const KvCache cache = TestCache();
  Result<cpu::PreparedCache> p = cpu::Prepare(cache, cpu::HeldoutRowsImpl(256, 0.2, 0), false);
  ASSERT_TRUE(p.ok());
  Result<cpu::ScoreSet> want = cpu::ScoreHighestAttention(*p);
  Result<cpu::ScoreSet> got = b->ScoreHighestAttention(*p);
  ASSERT_TRUE(want.ok() && got.ok()) << got.status().ToString();
  ASSERT_EQ(want->scores.size(), got->scores.size());
  double err = 0, ref = 0;
  for (size_t i = 0; i < want->scores.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got->scores[i])) << i;
    err += std::pow(double(got->scores[i]) - want->scores[i], 2);
    ref += std::pow(double(want->scores[i]), 2);
  }
  EXPECT_LT(err / ref, 1e-8);
  CompactionSpec spec = AmSpec();
  spec.allocator = Allocator::kPyramid;
  auto [c, g] = RunBoth(cache, spec, b.get());
  EXPECT_EQ(Stage(g, "score"), "cuda");
}

TEST(GpuBackendTest, SplitBatchesAgreeWithWholeLayers) {
  KVC_REQUIRE_DEVICES(1);
  auto whole = MakeBackend();
  GpuBackendOptions one_head;
  one_head.max_batch_heads = 1;
  auto split = MakeBackend(one_head);
  ASSERT_TRUE(whole && split);
  const KvCache cache = TestCache(2);
  Result<CompactionResult> a = Compact(cache, AmSpec(), whole.get());
  Result<CompactionResult> b = Compact(cache, AmSpec(), split.get());
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t l = 0; l < a->cache.layers.size(); ++l) {
    EXPECT_TRUE(SameBytes(a->cache.layers[l].k, b->cache.layers[l].k)) << "layer " << l;
  }
  EXPECT_NEAR(a->fidelity->overall.cosine.mean, b->fidelity->overall.cosine.mean, 1e-4);
}

TEST(GpuBackendTest, UnsupportedStagesRunOnTheCpuBitIdentically) {
  KVC_REQUIRE_DEVICES(1);
  auto b = MakeBackend();
  ASSERT_NE(b, nullptr);
  CompactionSpec spec = AmSpec();
  spec.am.refine_rounds = 1;  // refinement has no GPU version
  spec.budget = 8;
  const KvCache cache = TestCache(1);
  Result<CompactionResult> cpu = Compact(cache, spec);
  Result<CompactionResult> gpu = Compact(cache, spec, b.get());
  ASSERT_TRUE(cpu.ok() && gpu.ok()) << gpu.status().ToString();
  EXPECT_EQ(Stage(*gpu, "post"), "cpu");
  for (size_t l = 0; l < cpu->cache.layers.size(); ++l) {
    EXPECT_TRUE(SameBytes(cpu->cache.layers[l].v, gpu->cache.layers[l].v));
  }
}

// Every method with GPU stages, through the front: the stages say "cuda", budgets agree (D2O's
// within one key per head: its layer ratios are sums of floats), held-out fidelity within 5e-3.
TEST(GpuBackendTest, MethodsMatchTheCpuFront) {
  KVC_REQUIRE_DEVICES(1);
  auto b = MakeBackend();
  ASSERT_NE(b, nullptr);
  const KvCache cache = TestCache();
  for (Method m : {Method::kSnapKv, Method::kPyramidKv, Method::kDynamicKv, Method::kH2o,
                   Method::kD2o, Method::kOkDmd}) {
    SCOPED_TRACE(MethodName(m));
    CompactionSpec spec = AmSpec();
    spec.method = m;
    auto [cpu, gpu] = RunBoth(cache, spec, b.get());
    EXPECT_EQ(Stage(gpu, "score"), "cuda");
    const bool stats = m == Method::kDynamicKv || m == Method::kD2o;
    EXPECT_EQ(Stage(gpu, "allocate"), stats ? "cuda" : "cpu");
    EXPECT_EQ(Stage(gpu, "post"), m == Method::kD2o ? "cuda" : "cpu");
    ASSERT_EQ(cpu.cache.layers.size(), gpu.cache.layers.size());
    for (size_t l = 0; l < cpu.cache.layers.size(); ++l) {
      const std::vector<int64_t>&co = cpu.cache.layers[l].offsets,
            &go = gpu.cache.layers[l].offsets;
      ASSERT_EQ(co.size(), go.size());
      for (size_t h = 0; h + 1 < co.size(); ++h) {
        EXPECT_NEAR(double(go[h + 1] - go[h]), double(co[h + 1] - co[h]), m == Method::kD2o ? 1 : 0)
            << "layer " << l << " head " << h;
      }
    }
  }
}

// GPU OMP-fast refits by projected gradient only, so its picks differ from the CPU's; its
// held-out fidelity must still be in the CPU's range.
TEST(GpuBackendTest, OmpFastRunsOnTheGpu) {
  KVC_REQUIRE_DEVICES(1);
  auto b = MakeBackend();
  ASSERT_NE(b, nullptr);
  CompactionSpec spec = AmSpec();
  spec.am.selection = AmSelection::kOmpFast;
  const KvCache cache = TestCache();
  Result<CompactionResult> cpu = Compact(cache, spec);
  Result<CompactionResult> gpu = Compact(cache, spec, b.get());
  ASSERT_TRUE(cpu.ok()) << cpu.status().ToString();
  ASSERT_TRUE(gpu.ok()) << gpu.status().ToString();
  EXPECT_EQ(Stage(*gpu, "post"), "cuda");
  EXPECT_EQ(gpu->cache.total_entries(), cpu->cache.total_entries());
  const double c = cpu->fidelity->overall.cosine.mean, g = gpu->fidelity->overall.cosine.mean;
  EXPECT_GT(g, c - 0.02) << "held-out cosine: cpu " << c << ", gpu " << g;
}

TEST(GpuBackendTest, MultiDeviceAllGatherAndSharding) {
  KVC_REQUIRE_DEVICES(2);
  if (!NcclBuilt()) GTEST_SKIP() << "built without NCCL: one device per backend";
  auto all = MakeBackend();
  auto one = MakeBackend({.devices = {0}});
  ASSERT_TRUE(all && one);
  const int D = static_cast<int>(all->devices().size());
  ASSERT_GE(D, 2);
  std::vector<std::vector<float>> parts;
  std::vector<float> want;
  for (int r = 0; r < D; ++r) {
    parts.push_back({float(r), float(10 * r + 1), float(-r)});
    want.insert(want.end(), parts.back().begin(), parts.back().end());
  }
  for (int r = 0; r < D; ++r) {
    Result<std::vector<float>> got = all->AllGatherForTest(parts, r);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, want) << "rank " << r;
  }
  // Layers spread over the devices (5 layers: uneven shards) give the one-device result.
  const KvCache cache = TestCache(5);
  CompactionSpec spec = AmSpec();
  spec.allocator = Allocator::kPyramid;  // scores all-gathered across devices
  Result<CompactionResult> a = Compact(cache, spec, all.get());
  Result<CompactionResult> b = Compact(cache, spec, one.get());
  ASSERT_TRUE(a.ok() && b.ok()) << a.status().ToString();
  EXPECT_EQ(Stage(*a, "score"), "cuda");
  for (size_t l = 0; l < a->cache.layers.size(); ++l) {
    EXPECT_EQ(a->cache.layers[l].offsets, b->cache.layers[l].offsets) << "layer " << l;
    EXPECT_TRUE(SameBytes(a->cache.layers[l].k, b->cache.layers[l].k)) << "layer " << l;
  }
  EXPECT_NEAR(a->fidelity->overall.cosine.mean, b->fidelity->overall.cosine.mean, 1e-5);
}

TEST(GpuBackendTest, CreateRejectsBadDevices) {
  KVC_REQUIRE_DEVICES(1);
  EXPECT_EQ(GpuBackend::Create({.devices = {DeviceCount()}}).status().code(),
            Code::kInvalidArgument);
  GpuBackendOptions negative;
  negative.max_batch_heads = -1;
  EXPECT_EQ(GpuBackend::Create(negative).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace kvc::cuda
