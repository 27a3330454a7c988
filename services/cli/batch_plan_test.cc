#include "services/cli/batch_plan.h"

#include <gtest/gtest.h>

#include <numeric>

namespace kvc::cli {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

DumpShape Llama8B(int layers, int64_t tokens, int64_t n_ref = 256) {
  DumpShape s;
  s.layout = {layers, 8, 32, 128, DType::kF16, tokens};
  s.q_ref_rows = n_ref;
  s.q_window_rows = 32;
  s.q_dtype = DType::kF16;
  return s;
}

CompactionSpec Spec(Method m, double ratio = 10) {
  CompactionSpec s;
  s.method = m;
  s.ratio = ratio;
  return s;
}

PlanOptions Budget(int64_t bytes, int threads = 2) {
  PlanOptions o;
  o.memory_bytes = bytes;
  o.threads = threads;
  return o;
}

int64_t Sum(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{0});
}

TEST(BatchPlan, WholeDocumentIsOneGroupWhenItFits) {
  Result<DocumentPlan> p =
      PlanDocument(Llama8B(2, 4096), Spec(Method::kAttentionMatching), Budget(4 * kGiB));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->groups.size(), 1u);
  EXPECT_EQ(p->groups[0].count, 2);
  EXPECT_FALSE(p->chunked());
  EXPECT_EQ(p->chunk_bounds, (std::vector<int64_t>{0, 4096}));
  EXPECT_FALSE(p->over_budget);
  EXPECT_LE(p->estimated_bytes, 4 * kGiB);
  // One group keeps the caller's spec untouched (budget 0: the ratio decides, as in compact).
  EXPECT_EQ(p->groups[0].spec.budget, 0);
  EXPECT_NE(p->allocation.find("one group"), std::string::npos);
}

TEST(BatchPlan, GroupsShrinkWithTheBudgetAndCoverEveryLayer) {
  const DumpShape shape = Llama8B(32, 8192);
  const CompactionSpec spec = Spec(Method::kSnapKv);
  int previous = 33;
  for (int64_t budget : {8 * kGiB, 2 * kGiB, kGiB / 2}) {
    Result<DocumentPlan> p = PlanDocument(shape, spec, Budget(budget));
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_FALSE(p->over_budget) << budget;
    EXPECT_LE(p->estimated_bytes, budget);
    int next = 0;
    for (const LayerGroup& g : p->groups) {
      EXPECT_EQ(g.first, next);
      next += g.count;
      EXPECT_EQ(g.head_budget, 819);  // uniform: round(8192 / 10) for every group
    }
    EXPECT_EQ(next, 32);
    EXPECT_LT(p->groups[0].count, previous);
    previous = p->groups[0].count;
  }
}

TEST(BatchPlan, ChunksAttentionMatchingWhenOneLayerDoesNotFit) {
  // 128k tokens of the 8B layout: one layer is 512 MiB of f16 K/V and 1 GiB of F32 copies, and
  // one head's Phi matrix for 820 fit queries is 430 MB; the plan must chunk to fit 1 GiB.
  const DumpShape shape = Llama8B(32, 131072);
  const CompactionSpec spec = Spec(Method::kAttentionMatching);
  const int64_t whole_layer = EstimateUnit(shape, spec, 1, 131072, 13107, 2, false);
  EXPECT_GT(whole_layer, kGiB);
  Result<DocumentPlan> p = PlanDocument(shape, spec, Budget(kGiB));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->chunked());
  EXPECT_FALSE(p->over_budget);
  EXPECT_LE(p->estimated_bytes, kGiB);
  EXPECT_EQ(p->groups.size(), 32u);
  EXPECT_EQ(p->chunk_bounds.front(), 0);
  EXPECT_EQ(p->chunk_bounds.back(), 131072);
  for (size_t c = 1; c < p->chunk_bounds.size(); ++c) {
    EXPECT_LT(p->chunk_bounds[c - 1], p->chunk_bounds[c]);
  }
  EXPECT_NE(p->chunking.find("chunk-local fit"), std::string::npos);
  // The default budget (4 GiB) takes the full 128k document too.
  Result<DocumentPlan> d = PlanDocument(shape, spec, Budget(4 * kGiB));
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->over_budget);
  EXPECT_LE(d->estimated_bytes, 4 * kGiB);
}

TEST(BatchPlan, WindowMethodsAreNeverChunked) {
  const DumpShape shape = Llama8B(4, 131072);
  Result<DocumentPlan> p = PlanDocument(shape, Spec(Method::kSnapKv), Budget(kGiB / 4));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_FALSE(p->chunked());
  EXPECT_EQ(p->groups.size(), 4u);
  EXPECT_TRUE(p->over_budget);  // the smallest plan snapkv allows is one whole layer
  PlanOptions o = Budget(4 * kGiB);
  o.chunk_tokens = 1024;
  Result<DocumentPlan> bad = PlanDocument(shape, Spec(Method::kSnapKv), o);
  EXPECT_TRUE(bad.status().IsInvalidArgument()) << bad.status().ToString();
  CompactionSpec scores = Spec(Method::kAttentionMatching);
  scores.am.selection = AmSelection::kScores;
  EXPECT_TRUE(PlanDocument(shape, scores, o).status().IsInvalidArgument());
  EXPECT_TRUE(PlanDocument(shape, Spec(Method::kAttentionMatching), o).ok());
}

TEST(BatchPlan, ExplicitChunkTokensAndGroupLayers) {
  PlanOptions o = Budget(64 * kGiB);
  o.chunk_tokens = 1000;
  o.group_layers = 3;
  Result<DocumentPlan> p = PlanDocument(Llama8B(8, 4096), Spec(Method::kAttentionMatching), o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->chunk_count(), 5);   // ceil(4096 / 1000)
  ASSERT_EQ(p->groups.size(), 3u);  // 8 layers in groups of at most 3, near-equal
  EXPECT_EQ(p->groups[0].count + p->groups[1].count + p->groups[2].count, 8);
  for (const LayerGroup& g : p->groups) EXPECT_LE(g.count, 3);
}

TEST(BatchPlan, ChunkCountNeverExceedsTheHeadBudget) {
  PlanOptions o = Budget(64 * kGiB);
  o.chunk_tokens = 256;
  CompactionSpec spec = Spec(Method::kAttentionMatching);
  spec.budget = 3;
  Result<DocumentPlan> p = PlanDocument(Llama8B(1, 4096), spec, o);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->chunk_count(), 3);
}

TEST(BatchPlan, GateNeedsHeldOutQueries) {
  CompactionSpec spec = Spec(Method::kSnapKv);
  spec.gate.min_cosine = 0.99;
  EXPECT_TRUE(PlanDocument(Llama8B(2, 1024, 0), spec, Budget(kGiB)).status().IsInvalidArgument());
  EXPECT_TRUE(PlanDocument(Llama8B(2, 1024, 64), spec, Budget(kGiB)).ok());
  spec.budget = 2048;
  EXPECT_TRUE(PlanDocument(Llama8B(2, 1024, 64), spec, Budget(kGiB)).status().IsInvalidArgument());
}

TEST(BatchPlan, PyramidUsesTheWholeModelScheduleLayerByLayer) {
  const DumpShape shape = Llama8B(8, 8192);
  PlanOptions o = Budget(64 * kGiB);
  o.group_layers = 3;  // asks for groups, but pyramid budgets are per layer
  Result<DocumentPlan> p = PlanDocument(shape, Spec(Method::kPyramidKv), o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->groups.size(), 8u);
  int64_t total = 0;
  for (size_t l = 0; l < p->groups.size(); ++l) {
    const LayerGroup& g = p->groups[l];
    EXPECT_EQ(g.spec.allocator, Allocator::kUniform);
    EXPECT_EQ(g.spec.budget, g.head_budget);
    if (l > 0) {
      EXPECT_LE(g.head_budget, p->groups[l - 1].head_budget);
    }
    total += g.head_budget;
  }
  EXPECT_EQ(total, 8 * 819);
  EXPECT_GT(p->groups.front().head_budget, 819 * 3 / 2);
  EXPECT_LT(p->groups.back().head_budget, 819 / 2);
}

TEST(BatchPlan, D2oKeepsUncompressedLayersAtTheirGlobalIndices) {
  const DumpShape shape = Llama8B(8, 1000);
  PlanOptions o = Budget(64 * kGiB);
  o.group_layers = 4;
  CompactionSpec spec = Spec(Method::kD2o, 2);  // budget 500: room for 3 whole layers of 1000
  Result<DocumentPlan> p = PlanDocument(shape, spec, o);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->groups.size(), 2u);
  // Global whole layers {0, 1, 7}: the rest share 8 * 500 - 3 * 1000 = 1000 -> 200 per layer.
  EXPECT_EQ(p->groups[0].spec.d2o.uncompressed_layers, (std::vector<int>{0, 1}));
  EXPECT_EQ(p->groups[1].spec.d2o.uncompressed_layers, (std::vector<int>{3}));
  EXPECT_EQ(p->groups[0].head_budget, (2 * 1000 + 2 * 200) / 4);
  EXPECT_EQ(p->groups[1].head_budget, (1000 + 3 * 200) / 4);
  EXPECT_EQ(D2oWholeLayers({0, 1, -1, 9, -20}, 8), (std::vector<int>{0, 1, 7}));
}

TEST(BatchPlan, ApportionIsExactAndProportional) {
  EXPECT_EQ(Apportion({1, 1, 1}, 10, {10, 10, 10}), (std::vector<int64_t>{4, 3, 3}));
  EXPECT_EQ(Apportion({3, 1}, 8, {100, 100}), (std::vector<int64_t>{6, 2}));
  // A capped entry gives its excess to the others.
  EXPECT_EQ(Apportion({10, 1, 1}, 12, {2, 100, 100}), (std::vector<int64_t>{2, 5, 5}));
  EXPECT_EQ(Sum(Apportion({0, 0}, 5, {2, 2})), 4);  // limited by the caps
  EXPECT_EQ(Apportion({0, 0}, 3, {5, 5}), (std::vector<int64_t>{2, 1}));
  const std::vector<int64_t> b = ChunkBudgets({0, 100, 200, 301}, 31);
  EXPECT_EQ(Sum(b), 31);
  for (int64_t x : b) EXPECT_TRUE(x == 10 || x == 11);
}

TEST(BatchPlan, PlanJsonNamesGroupsAndChunks) {
  PlanOptions o = Budget(64 * kGiB);
  o.chunk_tokens = 512;
  Result<DocumentPlan> p = PlanDocument(Llama8B(2, 1024), Spec(Method::kAttentionMatching), o);
  ASSERT_TRUE(p.ok());
  const std::string j = p->ToJson();
  EXPECT_NE(j.find("\"groups\":[[0,2,102]]"), std::string::npos) << j;
  EXPECT_NE(j.find("\"chunk_bounds\":[0,512,1024]"), std::string::npos) << j;
}

}  // namespace
}  // namespace kvc::cli
