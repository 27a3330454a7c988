// End-to-end quality on real-model KV (stories260K): the compactor's output, fed back into the
// model as a compacted prefix, is compared with the full cache on held-out continuations.
// Skips with a message when the checkpoint is absent.
#include <gtest/gtest.h>

#include <string>

#include "kernels/compactor.h"
#include "kernels/spec.h"
#include "tests/harness/data.h"
#include "tests/harness/eval.h"
#include "tests/harness/llama2.h"

namespace kvc::harness {
namespace {

class QualityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ModelLocation where = FindTestModel();
    if (where.path.empty()) {
      skip_reason_ = new std::string("stories260K.bin not found (tried " + where.tried +
                                     "); set KVC_TEST_MODEL to run the real-model tests");
      return;
    }
    auto model = Llama2Model::Load(where.path);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    model_ = new Llama2Model(std::move(*model));
    auto data = ProduceData(*model_, DataOptions{});
    ASSERT_TRUE(data.ok()) << data.status().ToString();
    data_ = new HarnessData(std::move(*data));
    auto ref = ComputeFullReference(*model_, data_->context, data_->heldout);
    ASSERT_TRUE(ref.ok()) << ref.status().ToString();
    ref_ = new FullReference(std::move(*ref));
  }
  static void TearDownTestSuite() {
    delete ref_;
    delete data_;
    delete model_;
    delete skip_reason_;
    ref_ = nullptr;
    data_ = nullptr;
    model_ = nullptr;
    skip_reason_ = nullptr;
  }
  void SetUp() override {
    if (skip_reason_ != nullptr) GTEST_SKIP() << *skip_reason_;
    ASSERT_NE(ref_, nullptr);
  }

  // Mean held-out KL(full || compacted) of `spec` applied to the real-model cache.
  static double Kl(const CompactionSpec& spec) {
    auto result = Compact(data_->cache, spec);
    EXPECT_TRUE(result.ok()) << MethodName(spec.method) << ": " << result.status().ToString();
    if (!result.ok()) return 1e9;
    auto metrics = EvaluateAgainst(*model_, *ref_, result->cache);
    EXPECT_TRUE(metrics.ok()) << metrics.status().ToString();
    return metrics.ok() ? metrics->mean_kl : 1e9;
  }
  static CompactionSpec Spec(Method m, double ratio) {
    CompactionSpec s;
    s.method = m;
    s.ratio = ratio;
    s.seed = 3;
    return s;
  }

  static inline Llama2Model* model_ = nullptr;
  static inline HarnessData* data_ = nullptr;
  static inline FullReference* ref_ = nullptr;
  static inline std::string* skip_reason_ = nullptr;
};

TEST_F(QualityTest, FullBudgetReproducesTheModel) {
  // Budget T keeps every key: whatever the method, the model must not notice.
  for (Method m : {Method::kAttentionMatching, Method::kSnapKv, Method::kH2o}) {
    CompactionSpec spec = Spec(m, 1.0);
    spec.budget = data_->cache.layout.tokens;
    EXPECT_LT(Kl(spec), 1e-6) << MethodName(m);
  }
}

TEST_F(QualityTest, AttentionMatchingBeatsSelectionBaselinesAtTenX) {
  const double am = Kl(Spec(Method::kAttentionMatching, 10));
  for (Method m : {Method::kH2o, Method::kSnapKv, Method::kStreamingLlm}) {
    const double base = Kl(Spec(m, 10));
    EXPECT_LT(am, base) << "AM KL " << am << " vs " << MethodName(m) << " KL " << base;
  }
}

}  // namespace
}  // namespace kvc::harness
