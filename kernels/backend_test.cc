// The compaction front with a ComputeBackend: fake backends built on the CPU functions give
// bit-identical results, NotSupported falls back stage by stage, errors and malformed results
// stop the front with a clear message, and the metadata says which backend ran each stage.
#include "kernels/backend.h"

#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "kernels/compactor.h"
#include "kernels/cpu/am_test_util.h"
#include "kernels/cpu/compact_stages.h"
#include "kernels/cpu/pipeline.h"

namespace kvc {
namespace {

using testing::CacheShape;
using testing::MakeCache;

// Every stage on the CPU functions, counting calls; `only` limits it to the named stages
// (others answer NotSupported through the base class).
class CpuMirror : public ComputeBackend {
 public:
  explicit CpuMirror(std::string only = "") : only_(std::move(only)) {}
  const char* name() const override { return "test"; }

  Result<cpu::ScoreSet> ComputeScores(const cpu::PreparedCache& c, const CompactionSpec& spec,
                                      int64_t hb) override {
    if (!Has("scores")) return ComputeBackend::ComputeScores(c, spec, hb);
    ++calls;
    return cpu::ComputeScores(c, spec, hb);
  }
  Result<cpu::ScoreSet> ScoreHighestAttention(const cpu::PreparedCache& c) override {
    if (!Has("highest")) return ComputeBackend::ScoreHighestAttention(c);
    ++calls;
    return cpu::ScoreHighestAttention(c);
  }
  Result<cpu::Budgets> AllocateBudgets(const cpu::PreparedCache& c, const cpu::ScoreSet& s,
                                       const CompactionSpec& spec, int64_t hb) override {
    if (!Has("alloc")) return ComputeBackend::AllocateBudgets(c, s, spec, hb);
    ++calls;
    return cpu::AllocateBudgets(c, s, spec, hb);
  }
  Result<cpu::LayerResults> AttentionMatchingFit(const cpu::PreparedCache& c,
                                                 const cpu::Selection& sel, const cpu::Budgets& b,
                                                 const AmOptions& o) override {
    if (!Has("am")) return ComputeBackend::AttentionMatchingFit(c, sel, b, o);
    ++calls;
    return cpu::AttentionMatchingFit(c, sel, b, o);
  }
  Result<cpu::LayerResults> D2oMerge(const cpu::PreparedCache& c, const cpu::Selection& sel,
                                     const D2oOptions& o) override {
    if (!Has("d2o")) return ComputeBackend::D2oMerge(c, sel, o);
    ++calls;
    return cpu::D2oMerge(c, sel, o);
  }
  int calls = 0;

 private:
  bool Has(const char* stage) const { return only_.empty() || only_.find(stage) != only_.npos; }
  std::string only_;
};

// Answers NotSupported everywhere (the base class).
class NoneBackend : public ComputeBackend {
 public:
  const char* name() const override { return "none-supported"; }
};

// Fails the AM fit, or returns results / scores of the wrong shape.
class BrokenBackend : public ComputeBackend {
 public:
  enum Mode { kError, kShortResults, kBadScores };
  explicit BrokenBackend(Mode m) : mode_(m) {}
  const char* name() const override { return "broken"; }
  Result<cpu::ScoreSet> ScoreHighestAttention(const cpu::PreparedCache& c) override {
    if (mode_ != kBadScores) return ComputeBackend::ScoreHighestAttention(c);
    return cpu::ScoreSet::Zeros(c.layout.n_layers, c.layout.n_kv_heads, c.T() - 1);
  }
  Result<cpu::LayerResults> AttentionMatchingFit(const cpu::PreparedCache& c,
                                                 const cpu::Selection& sel, const cpu::Budgets& b,
                                                 const AmOptions& o) override {
    if (mode_ == kError) return Status::ResourceExhausted("device out of memory (boom)");
    if (mode_ == kBadScores) return ComputeBackend::AttentionMatchingFit(c, sel, b, o);
    return cpu::LayerResults(size_t(c.layout.n_layers),
                             std::vector<cpu::HeadResult>(size_t(c.layout.n_kv_heads)));
  }

 private:
  Mode mode_;
};

void ExpectSameCache(const CompactionResult& a, const CompactionResult& b) {
  ASSERT_EQ(a.cache.layers.size(), b.cache.layers.size());
  for (size_t l = 0; l < a.cache.layers.size(); ++l) {
    const CompactedLayer &x = a.cache.layers[l], &y = b.cache.layers[l];
    EXPECT_EQ(x.offsets, y.offsets) << "layer " << l;
    ASSERT_EQ(x.k.nbytes(), y.k.nbytes());
    ASSERT_EQ(x.beta.nbytes(), y.beta.nbytes());
    EXPECT_EQ(std::memcmp(x.k.raw(), y.k.raw(), x.k.nbytes()), 0) << "layer " << l;
    EXPECT_EQ(std::memcmp(x.v.raw(), y.v.raw(), x.v.nbytes()), 0) << "layer " << l;
    EXPECT_EQ(std::memcmp(x.beta.raw(), y.beta.raw(), x.beta.nbytes()), 0) << "layer " << l;
  }
  for (const char* key : {"fidelity", "gate", "head_budget", "heldout", "spec"}) {
    EXPECT_EQ(a.cache.metadata.count(key), b.cache.metadata.count(key)) << key;
    if (a.cache.metadata.count(key)) {
      EXPECT_EQ(a.cache.metadata.at(key), b.cache.metadata.at(key)) << key;
    }
  }
}

nlohmann::json BackendMetadata(const CompactionResult& r) {
  return nlohmann::json::parse(r.cache.metadata.at("backend"));
}

struct Case {
  const char* label;
  CompactionSpec spec;
  const char* score;  // expected "backend" metadata with CpuMirror
  const char* post;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  CompactionSpec am;
  am.budget = 12;
  am.threads = 2;
  cases.push_back({"am highest", am, "none", "test"});
  CompactionSpec pyr = am;
  pyr.allocator = Allocator::kPyramid;
  cases.push_back({"am highest + pyramid allocator", pyr, "test", "test"});
  CompactionSpec scores = am;
  scores.am.selection = AmSelection::kScores;
  scores.am.selector = Method::kSnapKv;
  cases.push_back({"am scores (snapkv)", scores, "test", "test"});
  CompactionSpec d2o = am;
  d2o.method = Method::kD2o;
  d2o.d2o.uncompressed_layers = {};
  cases.push_back({"d2o merge", d2o, "test", "test"});
  CompactionSpec h2o = am;
  h2o.method = Method::kH2o;
  cases.push_back({"h2o (gather)", h2o, "test", "cpu"});
  CompactionSpec gated = am;
  gated.budget = 3;
  gated.gate.min_cosine = 0.9999;
  gated.gate.max_rounds = 2;
  cases.push_back({"am with gate rounds", gated, "none", "test"});
  return cases;
}

KvCache TestCache() {
  CacheShape s;
  s.layers = 3;
  s.n_window = 16;
  return MakeCache(s, 7);
}

TEST(BackendTest, CpuMirrorIsBitIdenticalAndRecordedPerStage) {
  const KvCache cache = TestCache();
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.label);
    Result<CompactionResult> ref = Compact(cache, c.spec);
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
    CpuMirror mirror;
    Result<CompactionResult> got = Compact(cache, c.spec, &mirror);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ExpectSameCache(*ref, *got);
    EXPECT_GT(mirror.calls, 0);
    EXPECT_EQ(got->backends.score, c.score);
    EXPECT_EQ(got->backends.post, c.post);
    const nlohmann::json md = BackendMetadata(*got);
    EXPECT_EQ(md["score"], c.score);
    EXPECT_EQ(md["post"], c.post);
    // Allocation is offered whenever scores exist (no case here uses the AM allocator).
    EXPECT_EQ(md["allocate"], std::string(c.score) == "none" ? "cpu" : "test");
    // Without a backend every stage that ran says "cpu".
    const nlohmann::json cpu_md = BackendMetadata(*ref);
    EXPECT_EQ(cpu_md["score"], std::string(c.score) == "none" ? "none" : "cpu");
    EXPECT_EQ(cpu_md["post"], "cpu");
  }
}

TEST(BackendTest, NotSupportedFallsBackToTheCpuStageByStage) {
  const KvCache cache = TestCache();
  for (const Case& c : Cases()) {
    SCOPED_TRACE(c.label);
    Result<CompactionResult> ref = Compact(cache, c.spec);
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
    NoneBackend none;
    Result<CompactionResult> got = Compact(cache, c.spec, &none);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ExpectSameCache(*ref, *got);
    EXPECT_EQ(got->cache.metadata.at("backend"), ref->cache.metadata.at("backend"));
  }
  // Only the AM fit offloaded: scores on the CPU, post on the backend.
  CompactionSpec pyr = Cases()[1].spec;
  CpuMirror am_only("am");
  Result<CompactionResult> got = Compact(cache, pyr, &am_only);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(am_only.calls, 1);
  EXPECT_EQ(BackendMetadata(*got),
            nlohmann::json({{"score", "cpu"}, {"allocate", "cpu"}, {"post", "test"}}));
  Result<CompactionResult> ref = Compact(cache, pyr);
  ASSERT_TRUE(ref.ok());
  ExpectSameCache(*ref, *got);
}

TEST(BackendTest, GateRoundsCallTheBackendEachRound) {
  const KvCache cache = TestCache();
  const Case gated = Cases().back();
  CpuMirror mirror;
  Result<CompactionResult> got = Compact(cache, gated.spec, &mirror);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(mirror.calls, got->gate.rounds);
  EXPECT_GT(got->gate.rounds, 1);
}

TEST(BackendTest, BackendErrorsStopTheFrontWithAClearMessage) {
  const KvCache cache = TestCache();
  const KvCache before = cache;
  CompactionSpec am = Cases()[0].spec;
  BrokenBackend failing(BrokenBackend::kError);
  Result<CompactionResult> r = Compact(cache, am, &failing);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().ToString();
  EXPECT_NE(r.status().message().find("backend 'broken', post"), std::string::npos)
      << r.status().ToString();
  EXPECT_NE(r.status().message().find("boom"), std::string::npos);
  // The input is untouched (shared storage: the same bytes as the copy taken before).
  for (size_t l = 0; l < cache.layers.size(); ++l) {
    EXPECT_EQ(cache.layers[l].k.raw(), before.layers[l].k.raw());
  }

  BrokenBackend short_results(BrokenBackend::kShortResults);
  r = Compact(cache, am, &short_results);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInternal) << r.status().ToString();

  CompactionSpec pyr = Cases()[1].spec;
  BrokenBackend bad_scores(BrokenBackend::kBadScores);
  r = Compact(cache, pyr, &bad_scores);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInternal) << r.status().ToString();
  EXPECT_NE(r.status().message().find("score stage"), std::string::npos) << r.status().ToString();
}

TEST(BackendTest, InvalidInputIsRejectedBeforeTheBackendRuns) {
  const KvCache cache = TestCache();
  CompactionSpec bad = Cases()[0].spec;
  bad.budget = cache.layout.tokens + 1;
  CpuMirror mirror;
  Result<CompactionResult> r = Compact(cache, bad, &mirror);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument());
  EXPECT_EQ(mirror.calls, 0);
}

// GpuBackend shards the scorers of SnapKV/PyramidKV, DynamicKV, H2O and D2O by layer (one-layer
// sub-caches, forced positions from layer 0): that is exact only if their scores of a layer do
// not depend on the other layers. Checked here on the CPU functions they mirror.
TEST(BackendTest, LayerShardedScorersMatchWholeCacheScores) {
  const KvCache cache = TestCache();
  Result<cpu::PreparedCache> prepared = cpu::Prepare(cache, {}, false);
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();
  const cpu::PreparedCache& c = *prepared;
  for (Method m :
       {Method::kSnapKv, Method::kPyramidKv, Method::kDynamicKv, Method::kH2o, Method::kD2o}) {
    CompactionSpec spec;
    spec.method = m;
    Result<cpu::ScoreSet> whole = cpu::ComputeScores(c, spec, 12);
    ASSERT_TRUE(whole.ok()) << MethodName(m) << ": " << whole.status().ToString();
    std::vector<float> joined;
    std::vector<int64_t> forced0;
    for (int l = 0; l < c.layout.n_layers; ++l) {
      cpu::PreparedCache one;
      one.layout = c.layout;
      one.layout.n_layers = 1;
      one.layers = {c.layers[size_t(l)]};
      Result<cpu::ScoreSet> part = cpu::ComputeScores(one, spec, 12);
      ASSERT_TRUE(part.ok()) << MethodName(m) << ": " << part.status().ToString();
      joined.insert(joined.end(), part->scores.begin(), part->scores.end());
      if (l == 0) forced0 = part->forced;
    }
    EXPECT_EQ(joined, whole->scores) << MethodName(m);
    EXPECT_EQ(forced0, whole->forced) << MethodName(m);
  }
}

}  // namespace
}  // namespace kvc
