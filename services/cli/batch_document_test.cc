#include "services/cli/batch_document.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/kv_io.h"
#include "tests/synth/synth_kv.h"

namespace kvc::cli {
namespace {

namespace fs = std::filesystem;

bool SameBytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

class BatchDocumentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("kvc_batch_doc_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    SynthOptions o = SynthSmall();  // 4 layers, 4 kv heads, 16 q heads, d 64, T 2048
    o.layout.tokens = 1024;
    o.layout.dtype = DType::kF16;
    o.n_ref = 96;
    o.seed = 7;
    Result<KvCache> kv = GenerateSyntheticKv(o);
    ASSERT_TRUE(kv.ok()) << kv.status().ToString();
    full_ = std::move(*kv);
    dump_ = (dir_ / "dump.safetensors").string();
    ASSERT_TRUE(SaveKvCache(dump_, full_).ok());
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Batch compaction of the dump with `opts`; the output loaded back.
  CompactedCache RunBatch(const CompactionSpec& spec, PlanOptions opts,
                          DocumentResult* result = nullptr, DocumentPlan* plan_out = nullptr) {
    Result<DumpFile> dump = DumpFile::Open(dump_);
    EXPECT_TRUE(dump.ok()) << dump.status().ToString();
    opts.threads = 2;
    Result<DocumentPlan> plan = PlanDocument(dump->info().shape, spec, opts);
    EXPECT_TRUE(plan.ok()) << plan.status().ToString();
    const std::string out = (dir_ / "out.safetensors").string();
    Result<DocumentResult> r = CompactDocument(*dump, spec, *plan, out, {});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (result != nullptr && r.ok()) *result = *r;
    if (plan_out != nullptr) *plan_out = *plan;
    Result<CompactedCache> c = LoadCompactedCache(out);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(*c) : CompactedCache{};
  }

  CompactionResult Whole(CompactionSpec spec) {
    spec.threads = 2;
    Result<CompactionResult> r = Compact(full_, spec);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return std::move(*r);
  }

  void ExpectSameTensors(const CompactedCache& a, const CompactedCache& b) {
    ASSERT_EQ(a.layers.size(), b.layers.size());
    for (size_t l = 0; l < a.layers.size(); ++l) {
      EXPECT_EQ(a.layers[l].offsets, b.layers[l].offsets) << "layer " << l;
      EXPECT_TRUE(SameBytes(a.layers[l].k, b.layers[l].k)) << "layer " << l;
      EXPECT_TRUE(SameBytes(a.layers[l].v, b.layers[l].v)) << "layer " << l;
      EXPECT_TRUE(SameBytes(a.layers[l].beta, b.layers[l].beta)) << "layer " << l;
    }
  }

  fs::path dir_;
  KvCache full_;
  std::string dump_;
};

PlanOptions Groups(int layers) {
  PlanOptions o;
  o.memory_bytes = int64_t{16} << 30;
  o.group_layers = layers;
  return o;
}

TEST_F(BatchDocumentTest, OneGroupIsExactlyCompact) {
  CompactionSpec spec;
  spec.ratio = 8;
  const CompactedCache got = RunBatch(spec, Groups(0));
  const CompactionResult want = Whole(spec);
  ExpectSameTensors(got, want.cache);
  for (const char* key :
       {"method", "spec", "head_budget", "gate", "fidelity", "heldout", "model", "rope_theta"}) {
    EXPECT_EQ(got.metadata.at(key), want.cache.metadata.at(key)) << key;
  }
  const nlohmann::json batch = nlohmann::json::parse(got.metadata.at("batch"));
  EXPECT_EQ(batch["source"], "dump.safetensors");
  EXPECT_EQ(batch["plan"]["groups"].size(), 1u);
}

TEST_F(BatchDocumentTest, LayerGroupsMatchCompactForUniformBudgets) {
  // AM and SnapKV with uniform budgets compact every layer on its own, so groups of any size
  // give the whole-model result, including the per-head fidelity behind the report.
  for (Method m : {Method::kAttentionMatching, Method::kSnapKv}) {
    CompactionSpec spec;
    spec.method = m;
    spec.ratio = 6;
    for (int g : {1, 3}) {
      DocumentResult res;
      const CompactedCache got = RunBatch(spec, Groups(g), &res);
      const CompactionResult want = Whole(spec);
      ExpectSameTensors(got, want.cache);
      EXPECT_EQ(got.metadata.at("fidelity"), want.cache.metadata.at("fidelity"));
      EXPECT_EQ(got.metadata.at("head_budget"), want.cache.metadata.at("head_budget"));
      EXPECT_EQ(res.entries, want.cache.total_entries());
    }
  }
}

TEST_F(BatchDocumentTest, ChunkedAttentionMatchingKeepsTheBudgetAndTheFidelity) {
  CompactionSpec spec;
  spec.ratio = 8;  // 128 keys per head
  PlanOptions o = Groups(0);
  o.chunk_tokens = 256;
  DocumentResult res;
  DocumentPlan plan;
  const CompactedCache got = RunBatch(spec, o, &res, &plan);
  ASSERT_EQ(plan.chunk_count(), 4);
  const CompactionResult want = Whole(spec);
  const KvLayout& lay = full_.layout;
  for (const CompactedLayer& l : got.layers) {
    for (int h = 0; h < lay.n_kv_heads; ++h) EXPECT_EQ(l.budget(h), 128);
  }
  ASSERT_TRUE(res.fidelity.has_value());
  const double chunked = res.fidelity->overall.cosine.mean;
  const double whole = want.fidelity->overall.cosine.mean;
  EXPECT_GT(chunked, whole - 0.02) << "chunked " << chunked << " whole " << whole;
  EXPECT_GT(chunked, 0.9);
  EXPECT_EQ(res.fidelity->heads.size(), size_t(lay.n_layers) * lay.n_q_heads);
  // The held-out rows are those Compact holds out, so `eval` reproduces the report.
  Result<std::vector<Tensor>> held = HeldoutQueries(full_, got);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  Result<FidelityReport> again = EvaluateFidelity(full_, got, *held, 2);
  ASSERT_TRUE(again.ok());
  EXPECT_NEAR(again->overall.cosine.mean, chunked, 1e-9);
  EXPECT_NEAR(again->overall.rel_l2.max, res.fidelity->overall.rel_l2.max, 1e-9);
}

TEST_F(BatchDocumentTest, ChunkedGateRaisesTheBudgetOfTheGroup) {
  CompactionSpec spec;
  spec.ratio = 64;  // 16 keys per head: far below a 0.9999 floor
  spec.gate.min_cosine = 0.9999;
  spec.gate.max_rounds = 2;
  PlanOptions o = Groups(2);
  o.chunk_tokens = 512;
  DocumentResult res;
  const CompactedCache got = RunBatch(spec, o, &res);
  EXPECT_TRUE(res.gate.requested);
  EXPECT_EQ(res.gate.rounds, 3);
  EXPECT_EQ(res.gate.budgets_tried, (std::vector<int64_t>{16, 24, 36}));
  ASSERT_EQ(res.gate.cosines.size(), 3u);
  EXPECT_LT(res.gate.cosines[0], res.gate.cosines[2]);
  EXPECT_FALSE(res.gate.passed);
  EXPECT_EQ(got.total_entries(), int64_t{36} * 4 * 4);
  EXPECT_NE(got.metadata.at("gate").find("\"passed\":false"), std::string::npos);
}

TEST_F(BatchDocumentTest, PyramidLayersFollowTheWholeModelSchedule) {
  CompactionSpec spec;
  spec.method = Method::kPyramidKv;
  spec.ratio = 4;
  const CompactedCache got = RunBatch(spec, Groups(1));
  const CompactionResult want = Whole(spec);
  const int H = full_.layout.n_kv_heads;
  ASSERT_EQ(got.total_entries(), want.cache.total_entries());
  for (size_t l = 0; l < got.layers.size(); ++l) {
    EXPECT_LT(std::abs(got.layers[l].total() - want.cache.layers[l].total()), H) << "layer " << l;
  }
  EXPECT_GT(got.layers.front().total(), got.layers.back().total());
}

TEST_F(BatchDocumentTest, D2oGroupsKeepTheGlobalUncompressedLayersWhole) {
  CompactionSpec spec;
  spec.method = Method::kD2o;
  spec.ratio = 1.25;  // 819 per head: room for layers 0, 1 and 3 whole, 204 for layer 2
  const CompactedCache got = RunBatch(spec, Groups(2));
  const int64_t T = full_.layout.tokens;
  for (int l : {0, 1, 3}) {
    for (int h = 0; h < full_.layout.n_kv_heads; ++h) EXPECT_EQ(got.layers[l].budget(h), T) << l;
  }
  EXPECT_EQ(got.layers[2].total(), int64_t{204} * full_.layout.n_kv_heads);
}

TEST_F(BatchDocumentTest, CancellationLeavesNoOutput) {
  Result<DumpFile> dump = DumpFile::Open(dump_);
  ASSERT_TRUE(dump.ok());
  CompactionSpec spec;
  Result<DocumentPlan> plan = PlanDocument(dump->info().shape, spec, Groups(1));
  ASSERT_TRUE(plan.ok());
  std::atomic<bool> cancel{false};
  int groups_done = 0;
  GroupHooks hooks{&cancel, [&](uint64_t) {
                     if (++groups_done == 2) cancel.store(true);
                   }};
  const std::string out = (dir_ / "out.safetensors").string();
  Result<DocumentResult> r = CompactDocument(*dump, spec, *plan, out, hooks);
  EXPECT_EQ(r.status().code(), Code::kCancelled);
  EXPECT_EQ(groups_done, 2);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"dump.safetensors"});
}

TEST_F(BatchDocumentTest, FinishedOutputChecksSpecAndSource) {
  CompactionSpec spec;
  spec.method = Method::kSnapKv;
  RunBatch(spec, Groups(0));
  const std::string out = (dir_ / "out.safetensors").string();
  EXPECT_TRUE(FinishedOutput(dump_, out, spec).ok());
  CompactionSpec other = spec;
  other.ratio = 3;
  EXPECT_EQ(FinishedOutput(dump_, out, other).status().code(), Code::kFailedPrecondition);
  ASSERT_TRUE(SaveKvCache(dump_, full_).ok());  // rewritten: a new modification time
  EXPECT_EQ(FinishedOutput(dump_, out, spec).status().code(), Code::kFailedPrecondition);
  EXPECT_TRUE(FinishedOutput(dump_, (dir_ / "none").string(), spec).status().IsNotFound());
}

}  // namespace
}  // namespace kvc::cli
