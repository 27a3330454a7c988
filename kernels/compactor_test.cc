#include "kernels/compactor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "kernels/cpu/am_allocator.h"
#include "kernels/cpu/am_test_util.h"
#include "kernels/cpu/compact_stages.h"

namespace kvc {
namespace {

using testing::CacheShape;
using testing::MakeCache;

CompactionSpec AmSpec(int64_t budget) {
  CompactionSpec s;
  s.budget = budget;
  s.threads = 2;
  return s;
}

void ExpectInvalid(const KvCache& cache, const CompactionSpec& spec, const std::string& needle) {
  Result<CompactionResult> r = Compact(cache, spec);
  ASSERT_FALSE(r.ok()) << needle;
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().ToString();
}

TEST(CompactorTest, RejectsEveryBadInputWithAClearError) {
  CacheShape s;
  const KvCache cache = MakeCache(s, 1);
  CompactionSpec bad_ratio;
  bad_ratio.ratio = 0.5;
  ExpectInvalid(cache, bad_ratio, "spec.ratio");
  ExpectInvalid(cache, AmSpec(97), "exceeds the source length T = 96");
  ExpectInvalid(cache, AmSpec(-1), "spec.budget");
  KvCache nan = cache;
  nan.layers[1].v = cache.layers[1].v.Clone();
  nan.layers[1].v.data<float>()[17] = std::nanf("");
  ExpectInvalid(nan, AmSpec(8), "non-finite");
  KvCache wrong_shape = cache;
  wrong_shape.layers[0].k = *cache.layers[0].k.Reshape({2, 48, 32});
  ExpectInvalid(wrong_shape, AmSpec(8), "layers.0.k");
  CacheShape no_ref = s;
  no_ref.n_ref = 0;
  const KvCache without_ref = MakeCache(no_ref, 2);
  ExpectInvalid(without_ref, AmSpec(8), "q_ref");
  CompactionSpec am_alloc;
  am_alloc.method = Method::kStreamingLlm;
  am_alloc.allocator = Allocator::kAm;
  ExpectInvalid(without_ref, am_alloc, "allocator am");
  CompactionSpec snap;
  snap.method = Method::kSnapKv;
  ExpectInvalid(cache, snap, "q_window");
  CompactionSpec composed = AmSpec(8);
  composed.am.selection = AmSelection::kScores;
  composed.am.selector = Method::kH2o;
  ExpectInvalid(cache, composed, "AM selector h2o");
  CompactionSpec gate_no_ref;
  gate_no_ref.method = Method::kStreamingLlm;
  gate_no_ref.gate.min_cosine = 0.9;
  ExpectInvalid(without_ref, gate_no_ref, "gate.min_cosine");
  CompactionSpec gate_no_heldout = AmSpec(8);
  gate_no_heldout.heldout_fraction = 0;
  gate_no_heldout.gate.min_cosine = 0.9;
  ExpectInvalid(cache, gate_no_heldout, "gate.min_cosine");
  CacheShape one_row = s;
  one_row.n_ref = 1;
  ExpectInvalid(MakeCache(one_row, 3), AmSpec(8), "at least 2");
}

TEST(CompactorTest, AmResultHasExactRaggedLayoutAndMetadata) {
  CacheShape s;
  const KvCache cache = MakeCache(s, 4);
  CompactionSpec spec = AmSpec(0);
  spec.ratio = 8;  // 96 / 8 = 12 keys per head
  Result<CompactionResult> r = Compact(cache, spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const CompactedCache& c = r->cache;
  EXPECT_TRUE(c.Validate().ok());
  EXPECT_EQ(r->head_budget, 12);
  for (const CompactedLayer& l : c.layers) {
    EXPECT_EQ(l.offsets, (std::vector<int64_t>{0, 12, 24}));
    EXPECT_EQ(l.k.dim(0), 24);  // no padding
    for (int64_t i = 0; i < l.total(); ++i) EXPECT_TRUE(std::isfinite(l.beta.data<float>()[i]));
  }
  EXPECT_EQ(c.metadata.at("method"), "am");
  EXPECT_EQ(c.metadata.at("spec"), spec.ToJson());
  EXPECT_EQ(c.metadata.at("source_tokens"), "96");
  EXPECT_EQ(c.metadata.at("model"), "test");
  ASSERT_TRUE(r->fidelity.has_value());
  EXPECT_EQ(c.metadata.at("fidelity"), r->fidelity->ToJson());
  EXPECT_EQ(r->fidelity->queries_per_head, 8);  // 20% of 40 rows
  EXPECT_GT(r->fidelity->overall.cosine.mean, 0.5);
  EXPECT_FALSE(r->gate.requested);
  EXPECT_TRUE(r->gate.passed);
  EXPECT_EQ(r->gate.rounds, 1);
  EXPECT_GT(r->timings.total_ms, 0);
  EXPECT_GE(r->timings.total_ms, r->timings.post_ms);
}

TEST(CompactorTest, FullBudgetReproducesAttentionOnHeldOutQueries) {
  for (AmSelection sel : {AmSelection::kHighestAttention, AmSelection::kOmpFast}) {
    CacheShape s;
    CompactionSpec spec = AmSpec(96);
    spec.am.selection = sel;
    Result<CompactionResult> r = Compact(MakeCache(s, 5), spec);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_GE(r->fidelity->overall.cosine.min, 0.9999);
    EXPECT_LE(r->fidelity->overall.mass_error.max, 1e-4);
  }
}

TEST(CompactorTest, GateEscalatesUntilTheFloorIsMet) {
  CacheShape s;
  const KvCache cache = MakeCache(s, 6);
  Result<CompactionResult> base = Compact(cache, AmSpec(4));
  ASSERT_TRUE(base.ok());
  const double c0 = base->fidelity->overall.cosine.mean;
  ASSERT_LT(c0, 0.999);
  CompactionSpec spec = AmSpec(4);
  spec.gate.min_cosine = 0.9999;  // met at T at the latest
  spec.gate.max_rounds = 10;
  Result<CompactionResult> r = Compact(cache, spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->gate.requested);
  EXPECT_TRUE(r->gate.passed);
  ASSERT_GT(r->gate.rounds, 1);
  EXPECT_EQ(r->gate.budgets_tried.front(), 4);
  EXPECT_EQ(r->gate.budgets_tried[1], 6);  // ceil(4 * 1.5)
  for (size_t i = 1; i < r->gate.budgets_tried.size(); ++i) {
    EXPECT_GT(r->gate.budgets_tried[i], r->gate.budgets_tried[i - 1]);
    EXPECT_LT(r->gate.cosines[i - 1], 0.9999);
  }
  EXPECT_GE(r->gate.cosines.back(), 0.9999);
  EXPECT_EQ(r->head_budget, r->gate.budgets_tried.back());
  EXPECT_NEAR(r->gate.cosines.front(), c0, 1e-12);
  const nlohmann::json g = nlohmann::json::parse(r->cache.metadata.at("gate"));
  EXPECT_TRUE(g["passed"].get<bool>());
  EXPECT_EQ(g["rounds"].get<int>(), r->gate.rounds);
}

TEST(CompactorTest, GateFailureIsReportedNotHidden) {
  CacheShape s;
  CompactionSpec spec = AmSpec(3);
  spec.gate.min_cosine = 0.99999;
  spec.gate.max_rounds = 1;
  Result<CompactionResult> r = Compact(MakeCache(s, 7), spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->gate.passed);
  EXPECT_EQ(r->gate.rounds, 2);
  EXPECT_EQ(r->gate.budgets_tried, (std::vector<int64_t>{3, 5}));
  const nlohmann::json g = nlohmann::json::parse(r->cache.metadata.at("gate"));
  EXPECT_FALSE(g["passed"].get<bool>());
  EXPECT_EQ(r->cache.metadata.at("head_budget"), "5");
}

void ExpectSameCache(const CompactedCache& a, const CompactedCache& b) {
  ASSERT_EQ(a.layers.size(), b.layers.size());
  for (size_t l = 0; l < a.layers.size(); ++l) {
    EXPECT_EQ(a.layers[l].offsets, b.layers[l].offsets);
    ASSERT_EQ(a.layers[l].k.nbytes(), b.layers[l].k.nbytes());
    EXPECT_EQ(std::memcmp(a.layers[l].k.raw(), b.layers[l].k.raw(), a.layers[l].k.nbytes()), 0);
    EXPECT_EQ(std::memcmp(a.layers[l].v.raw(), b.layers[l].v.raw(), a.layers[l].v.nbytes()), 0);
    EXPECT_EQ(
        std::memcmp(a.layers[l].beta.raw(), b.layers[l].beta.raw(), a.layers[l].beta.nbytes()), 0);
  }
  EXPECT_EQ(a.metadata.at("fidelity"), b.metadata.at("fidelity"));
}

TEST(CompactorTest, DeterministicForASeedAndAcrossThreadCounts) {
  CacheShape s;
  s.layers = 3;
  const KvCache cache = MakeCache(s, 8);
  for (AmSelection sel : {AmSelection::kHighestAttention, AmSelection::kOmpFast}) {
    CompactionSpec spec = AmSpec(10);
    spec.am.selection = sel;
    spec.seed = 42;
    spec.threads = 1;
    Result<CompactionResult> a = Compact(cache, spec);
    spec.threads = 3;
    Result<CompactionResult> b = Compact(cache, spec);
    Result<CompactionResult> c = Compact(cache, spec);
    ASSERT_TRUE(a.ok() && b.ok() && c.ok());
    ExpectSameCache(a->cache, b->cache);
    ExpectSameCache(b->cache, c->cache);
    spec.seed = 43;  // another held-out split
    Result<CompactionResult> d = Compact(cache, spec);
    ASSERT_TRUE(d.ok());
    EXPECT_NE(d->cache.metadata.at("heldout"), a->cache.metadata.at("heldout"));
  }
}

TEST(CompactorTest, HalfPrecisionInComputesInF32AndKeepsTheDtype) {
  CacheShape s;
  s.dtype = DType::kF16;
  Result<CompactionResult> r = Compact(MakeCache(s, 9), AmSpec(12));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->cache.layers[0].k.dtype(), DType::kF16);
  EXPECT_EQ(r->cache.layers[0].v.dtype(), DType::kF16);
  EXPECT_EQ(r->cache.layers[0].beta.dtype(), DType::kF32);
  EXPECT_GT(r->fidelity->overall.cosine.mean, 0.5);
}

TEST(CompactorTest, HeldoutQueriesAndEvaluateReproduceTheReport) {
  CacheShape s;
  const KvCache cache = MakeCache(s, 10);
  CompactionSpec spec = AmSpec(9);
  spec.seed = 5;
  Result<CompactionResult> r = Compact(cache, spec);
  ASSERT_TRUE(r.ok());
  Result<std::vector<Tensor>> q = HeldoutQueries(cache, r->cache);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  const std::vector<int64_t> rows = HeldoutRows(40, 0.2, 5);
  ASSERT_EQ(rows.size(), 8u);
  EXPECT_EQ((*q)[1].dim(1), 8);
  const float* src = cache.layers[1].q_ref->data<float>();
  EXPECT_EQ((*q)[1].data<float>()[16 * 8 + 3], src[(40 + rows[0]) * 16 + 3]);  // head 1, row 0
  Result<FidelityReport> again = EvaluateFidelity(cache, r->cache, *q, 1);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->ToJson(), r->fidelity->ToJson());
  CompactedCache stripped = r->cache;
  stripped.metadata.erase("heldout");
  EXPECT_TRUE(HeldoutQueries(cache, stripped).status().IsInvalidArgument());
  CacheShape other = s;
  other.n_ref = 30;
  EXPECT_TRUE(HeldoutQueries(MakeCache(other, 10), r->cache).status().IsInvalidArgument());
}

TEST(CompactorTest, HeldoutRowsAreASeededShareOfTheRows) {
  EXPECT_EQ(HeldoutRows(40, 0.2, 1).size(), 8u);
  EXPECT_EQ(HeldoutRows(40, 0.2, 1), HeldoutRows(40, 0.2, 1));
  EXPECT_NE(HeldoutRows(40, 0.2, 1), HeldoutRows(40, 0.2, 2));
  EXPECT_EQ(HeldoutRows(3, 0.01, 1).size(), 1u);  // at least one
  EXPECT_EQ(HeldoutRows(3, 0.9, 1).size(), 2u);   // at most N - 1
  EXPECT_TRUE(HeldoutRows(40, 0.0, 1).empty());
  EXPECT_TRUE(HeldoutRows(1, 0.5, 1).empty());
}

TEST(CompactorTest, KeysAsQueriesIsSelectOnlyUnlessAskedToFit) {
  CacheShape s;
  s.n_ref = 0;
  const KvCache cache = MakeCache(s, 11);
  CompactionSpec spec = AmSpec(10);
  spec.am.keys_as_queries = true;
  Result<CompactionResult> r = Compact(cache, spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->fidelity.has_value());
  EXPECT_EQ(r->cache.metadata.count("heldout"), 0u);
  const CompactedLayer& l0 = r->cache.layers[0];
  for (int64_t i = 0; i < l0.total(); ++i) EXPECT_EQ(l0.beta.data<float>()[i], 0.f);
  // Values are kept: each compacted value row equals some source value row of its head.
  const float* v = cache.layers[0].v.data<float>();
  for (int64_t i = 0; i < l0.budget(0); ++i) {
    bool found = false;
    for (int64_t j = 0; j < 96 && !found; ++j) {
      found = std::memcmp(l0.v.data<float>() + i * 16, v + j * 16, 64) == 0;
    }
    EXPECT_TRUE(found) << i;
  }
  spec.am.keys_as_queries_fit = true;
  Result<CompactionResult> fit = Compact(cache, spec);
  ASSERT_TRUE(fit.ok());
  bool any_beta = false;
  for (int64_t i = 0; i < fit->cache.layers[0].total(); ++i) {
    any_beta |= fit->cache.layers[0].beta.data<float>()[i] != 0.f;
  }
  EXPECT_TRUE(any_beta);
}

TEST(CompactorTest, AmAllocatorIsExactCappedAndFavoursTheHeadThatNeedsKeys) {
  CacheShape s;
  s.tokens = 128;
  s.n_ref = 48;
  KvCache cache = MakeCache(s, 12);
  // Query heads of KV head 0 get nearly uniform attention (an easy head); KV head 1 stays peaked.
  for (LayerKv& l : cache.layers) {
    l.q_ref = l.q_ref->Clone();
    float* q = l.q_ref->data<float>();
    for (int64_t i = 0; i < 2 * 48 * 16; ++i) q[i] *= 0.01f;
  }
  CompactionSpec spec = AmSpec(16);
  const cpu::PreparedCache p =
      *cpu::Prepare(cache, HeldoutRows(48, spec.heldout_fraction, spec.seed), false);
  cpu::ThreadPool pool(2);
  Result<cpu::Budgets> b = cpu::AllocateAmBudgets(p, spec, 16, pool);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  int64_t total = 0;
  for (const auto& row : *b) {
    for (int64_t x : row) {
      total += x;
      EXPECT_GE(x, 4);
      EXPECT_LE(x, 96);  // 0.75 T
    }
    EXPECT_GT(row[1], row[0]);
  }
  EXPECT_EQ(total, 2 * 2 * 16);
  spec.allocator = Allocator::kAm;
  Result<CompactionResult> r = Compact(cache, spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (size_t l = 0; l < 2; ++l) {
    EXPECT_EQ(r->cache.layers[l].budget(0), (*b)[l][0]);
    EXPECT_EQ(r->cache.layers[l].budget(1), (*b)[l][1]);
  }
}

TEST(CompactorTest, SelectionOnlyMethodsKeepBetaZero) {
  CacheShape s;
  CompactionSpec spec;
  spec.method = Method::kStreamingLlm;
  spec.budget = 10;
  Result<CompactionResult> r = Compact(MakeCache(s, 13), spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->cache.metadata.at("method"), "streamingllm");
  for (const CompactedLayer& l : r->cache.layers) {
    EXPECT_EQ(l.offsets, (std::vector<int64_t>{0, 10, 20}));
    for (int64_t i = 0; i < l.total(); ++i) EXPECT_EQ(l.beta.data<float>()[i], 0.f);
  }
  ASSERT_TRUE(r->fidelity.has_value());  // q_ref was sent: fidelity is measured for any method
}

TEST(CompactorTest, AmComposesWithAnotherMethodsScores) {
  CacheShape s;
  const KvCache cache = MakeCache(s, 14);
  CompactionSpec plain;
  plain.method = Method::kStreamingLlm;
  plain.budget = 10;
  CompactionSpec composed = AmSpec(10);
  composed.am.selection = AmSelection::kScores;
  composed.am.selector = Method::kStreamingLlm;
  Result<CompactionResult> a = Compact(cache, plain);
  Result<CompactionResult> b = Compact(cache, composed);
  ASSERT_TRUE(a.ok() && b.ok()) << b.status().ToString();
  // Same keys (StreamingLLM picks them), fitted beta and values on top.
  EXPECT_EQ(std::memcmp(a->cache.layers[0].k.raw(), b->cache.layers[0].k.raw(),
                        a->cache.layers[0].k.nbytes()),
            0);
  EXPECT_GT(b->fidelity->overall.cosine.mean, a->fidelity->overall.cosine.mean);
}

}  // namespace
}  // namespace kvc
