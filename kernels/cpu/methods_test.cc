// ComputeScores dispatch and the selection pipeline end to end for every eviction method:
// scores -> budgets -> selection -> gather / D2O merge.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/methods_test_util.h"
#include "kernels/cpu/pipeline.h"

namespace kvc::cpu {
namespace {

using testing::CacheShape;
using testing::RandomCache;

const Method kEvictionMethods[] = {Method::kOkDmd,        Method::kDynamicKv, Method::kD2o,
                                   Method::kStreamingLlm, Method::kH2o,       Method::kSnapKv,
                                   Method::kPyramidKv};

TEST(ComputeScoresTest, DispatchesOnTheMethod) {
  const PreparedCache c = RandomCache(CacheShape{}, 81);
  CompactionSpec spec;
  spec.seed = 9;
  const int64_t hb = 8;
  auto scores = [&](Method m) {
    spec.method = m;
    Result<ScoreSet> s = ComputeScores(c, spec, hb);
    EXPECT_TRUE(s.ok()) << MethodName(m) << ": " << s.status().ToString();
    return s.ok() ? s->scores : std::vector<float>{};
  };
  EXPECT_EQ(scores(Method::kOkDmd), ScoreOkDmd(c, spec.okdmd, 9)->scores);
  EXPECT_EQ(scores(Method::kDynamicKv), ScoreDynamicKv(c, spec.dynamickv)->scores);
  EXPECT_EQ(scores(Method::kD2o), ScoreD2o(c, spec.d2o, hb)->scores);
  EXPECT_EQ(scores(Method::kStreamingLlm), ScoreStreamingLlm(c, spec.streaming)->scores);
  EXPECT_EQ(scores(Method::kH2o), ScoreH2o(c, spec.h2o, hb)->scores);
  EXPECT_EQ(scores(Method::kSnapKv), ScoreSnapKv(c, spec.snapkv)->scores);
  EXPECT_EQ(scores(Method::kPyramidKv), ScoreSnapKv(c, spec.snapkv)->scores);
  // Different methods really give different rankings.
  EXPECT_NE(scores(Method::kOkDmd), scores(Method::kH2o));
}

TEST(ComputeScoresTest, AttentionMatchingSelections) {
  CacheShape shape;
  shape.n_fit = 6;
  const PreparedCache c = RandomCache(shape, 82);
  CompactionSpec spec;
  spec.method = Method::kAttentionMatching;
  for (AmSelection sel : {AmSelection::kOmp, AmSelection::kOmpFast}) {
    spec.am.selection = sel;
    Result<ScoreSet> s = ComputeScores(c, spec, 5);
    ASSERT_TRUE(s.ok());
    EXPECT_TRUE(s->forced.empty());
    EXPECT_EQ(s->scores, std::vector<float>(size_t(shape.L) * shape.H * shape.T, 0.0f));
  }
  spec.am.selection = AmSelection::kScores;
  spec.am.selector = Method::kOkDmd;
  EXPECT_EQ(ComputeScores(c, spec, 5)->scores, ScoreOkDmd(c, spec.okdmd, spec.seed)->scores);
  spec.am.selector = Method::kSnapKv;
  EXPECT_EQ(ComputeScores(c, spec, 5)->scores, ScoreSnapKv(c, spec.snapkv)->scores);
}

TEST(ComputeScoresTest, MissingQueriesNameTheKind) {
  CacheShape shape;
  shape.W = 0;
  const PreparedCache c = RandomCache(shape, 83);
  CompactionSpec spec;
  const std::pair<Method, const char*> need[] = {{Method::kSnapKv, "snapkv needs q_window"},
                                                 {Method::kPyramidKv, "snapkv needs q_window"},
                                                 {Method::kDynamicKv, "dynamickv needs q_window"},
                                                 {Method::kD2o, "d2o needs q_window"},
                                                 {Method::kH2o, "h2o needs q_window"}};
  for (const auto& [m, msg] : need) {
    spec.method = m;
    Result<ScoreSet> s = ComputeScores(c, spec, 5);
    ASSERT_FALSE(s.ok()) << MethodName(m);
    EXPECT_TRUE(s.status().IsInvalidArgument());
    EXPECT_NE(s.status().message().find(msg), std::string::npos) << s.status().ToString();
  }
  spec.method = Method::kAttentionMatching;
  spec.am.selection = AmSelection::kScores;
  spec.am.selector = Method::kDynamicKv;
  EXPECT_TRUE(ComputeScores(c, spec, 5).status().IsInvalidArgument());
  // Query-free methods run.
  for (Method m : {Method::kOkDmd, Method::kStreamingLlm}) {
    spec.method = m;
    EXPECT_TRUE(ComputeScores(c, spec, 5).ok()) << MethodName(m);
  }
}

// Every method with its own allocator: exact budgets per head, exact total, forced positions
// kept as far as the head's budget holds them, finite outputs.
TEST(PipelineTest, EveryMethodKeepsExactBudgetsAndForcedPositions) {
  CacheShape shape;
  shape.L = 5;
  shape.T = 96;
  shape.W = 16;
  const PreparedCache c = RandomCache(shape, 84);
  for (Method m : kEvictionMethods) {
    for (int64_t hb : {4, 24, 60}) {
      CompactionSpec spec;
      spec.method = m;
      spec.snapkv.window = 8;
      Result<ScoreSet> s = ComputeScores(c, spec, hb);
      ASSERT_TRUE(s.ok()) << MethodName(m) << ": " << s.status().ToString();
      ASSERT_EQ(s->scores.size(), size_t(shape.L) * shape.H * shape.T);
      for (float x : s->scores) ASSERT_TRUE(std::isfinite(x)) << MethodName(m);
      Result<Budgets> b = AllocateBudgets(c, *s, spec, hb);
      ASSERT_TRUE(b.ok()) << MethodName(m) << ": " << b.status().ToString();
      EXPECT_EQ(testing::Total(*b), int64_t{shape.L} * shape.H * hb) << MethodName(m);
      const Selection sel = SelectTopK(*s, *b);
      Result<LayerResults> out = m == Method::kD2o ? D2oMerge(c, sel, spec.d2o)
                                                   : Result<LayerResults>(GatherSelected(c, sel));
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      for (int l = 0; l < shape.L; ++l) {
        for (int h = 0; h < shape.H; ++h) {
          const std::vector<int64_t>& kept = sel[l][h];
          ASSERT_EQ(static_cast<int64_t>(kept.size()), (*b)[l][h]) << MethodName(m);
          EXPECT_TRUE(std::is_sorted(kept.begin(), kept.end()));
          EXPECT_EQ(std::adjacent_find(kept.begin(), kept.end()), kept.end());
          // All forced positions fit: all kept. Otherwise the budget holds forced ones only.
          size_t forced_kept = 0;
          for (int64_t p : s->forced) {
            forced_kept += std::binary_search(kept.begin(), kept.end(), p);
          }
          EXPECT_EQ(forced_kept, std::min(kept.size(), s->forced.size()))
              << MethodName(m) << " hb=" << hb;
          const HeadResult& r = (*out)[l][h];
          EXPECT_EQ(r.positions, kept);
          EXPECT_EQ(r.k.size(), kept.size() * shape.d);
          for (float x : r.k) ASSERT_TRUE(std::isfinite(x));
          for (float x : r.v) ASSERT_TRUE(std::isfinite(x));
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvc::cpu
