#include "kernels/spec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>

namespace kvc {
namespace {

TEST(SpecTest, MethodNamesRoundTripCaseInsensitively) {
  for (int i = 0; i <= 7; ++i) {
    const Method m = static_cast<Method>(i);
    std::string name = MethodName(m);
    Result<Method> back = ParseMethod(name);
    ASSERT_TRUE(back.ok()) << name;
    EXPECT_EQ(*back, m);
    for (char& c : name) c = static_cast<char>(std::toupper(c));
    EXPECT_EQ(*ParseMethod(name), m);
  }
  EXPECT_EQ(*ParseMethod("SnapKV"), Method::kSnapKv);
  Result<Method> bad = ParseMethod("kvzip");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(bad.status().IsNotSupported());
  for (const char* n :
       {"am", "okdmd", "dynamickv", "d2o", "streamingllm", "h2o", "snapkv", "pyramidkv"}) {
    EXPECT_NE(bad.status().message().find(n), std::string::npos) << n;
  }
  EXPECT_NE(bad.status().message().find("kvzip"), std::string::npos);
}

TEST(SpecTest, SelectionAndAllocatorNamesRoundTrip) {
  for (int i = 0; i <= 3; ++i) {
    const AmSelection s = static_cast<AmSelection>(i);
    EXPECT_EQ(*ParseAmSelection(AmSelectionName(s)), s);
  }
  EXPECT_EQ(*ParseAmSelection("OMP-Fast"), AmSelection::kOmpFast);
  EXPECT_TRUE(ParseAmSelection("greedy").status().IsNotSupported());
  for (int i = 0; i <= 5; ++i) {
    const Allocator a = static_cast<Allocator>(i);
    EXPECT_EQ(*ParseAllocator(AllocatorName(a)), a);
  }
  EXPECT_TRUE(ParseAllocator("random").status().IsNotSupported());
}

TEST(SpecTest, DefaultsAreValid) { EXPECT_TRUE(CompactionSpec{}.Validate().ok()); }

// Each mutation must fail validation with InvalidArgument naming `field`.
void ExpectBad(const std::string& field, const std::function<void(CompactionSpec&)>& mutate) {
  CompactionSpec s;
  mutate(s);
  Status st = s.Validate();
  EXPECT_TRUE(st.IsInvalidArgument()) << field << ": " << st.ToString();
  EXPECT_NE(st.message().find(field), std::string::npos) << field << ": " << st.ToString();
}

TEST(SpecTest, ValidateNamesTheOffendingField) {
  ExpectBad("method", [](CompactionSpec& s) { s.method = static_cast<Method>(42); });
  ExpectBad("ratio", [](CompactionSpec& s) { s.ratio = 0.5; });
  ExpectBad("ratio", [](CompactionSpec& s) { s.ratio = std::nan(""); });
  ExpectBad("budget", [](CompactionSpec& s) { s.budget = -3; });
  ExpectBad("allocator", [](CompactionSpec& s) { s.allocator = static_cast<Allocator>(9); });
  ExpectBad("heldout_fraction", [](CompactionSpec& s) { s.heldout_fraction = 1.0; });
  ExpectBad("threads", [](CompactionSpec& s) { s.threads = -1; });
  ExpectBad("am.selection",
            [](CompactionSpec& s) { s.am.selection = static_cast<AmSelection>(7); });
  ExpectBad("am.selector", [](CompactionSpec& s) {
    s.am.selection = AmSelection::kScores;
    s.am.selector = Method::kAttentionMatching;
  });
  ExpectBad("am.nnls_pg_steps", [](CompactionSpec& s) { s.am.nnls_pg_steps = -1; });
  ExpectBad("am.ridge", [](CompactionSpec& s) { s.am.ridge = -0.1; });
  ExpectBad("am.refine_rounds", [](CompactionSpec& s) { s.am.refine_rounds = 4; });
  ExpectBad("am.omp_fast_schedule", [](CompactionSpec& s) { s.am.omp_fast_schedule.clear(); });
  ExpectBad("am.omp_fast_schedule[1].up_to",
            [](CompactionSpec& s) { s.am.omp_fast_schedule[1].up_to = 100; });
  ExpectBad("am.omp_fast_schedule[0].keys_per_step",
            [](CompactionSpec& s) { s.am.omp_fast_schedule[0].keys_per_step = 0; });
  ExpectBad("am.keys_as_queries_fit", [](CompactionSpec& s) { s.am.keys_as_queries_fit = true; });
  ExpectBad("okdmd.k_modes", [](CompactionSpec& s) { s.okdmd.k_modes = 0; });
  ExpectBad("okdmd.lambda", [](CompactionSpec& s) { s.okdmd.lambda = 0; });
  ExpectBad("okdmd.refresh_every", [](CompactionSpec& s) { s.okdmd.refresh_every = 0; });
  ExpectBad("streaming.sinks", [](CompactionSpec& s) { s.streaming.sinks = -1; });
  ExpectBad("h2o.recent_fraction", [](CompactionSpec& s) { s.h2o.recent_fraction = 1.5; });
  ExpectBad("snapkv.kernel", [](CompactionSpec& s) { s.snapkv.kernel = 0; });
  ExpectBad("pyramid.beta", [](CompactionSpec& s) { s.pyramid.beta = 0.5; });
  ExpectBad("dynamickv.window", [](CompactionSpec& s) { s.dynamickv.window = 0; });
  ExpectBad("dynamickv.radio_max", [](CompactionSpec& s) { s.dynamickv.radio_max = 0; });
  ExpectBad("d2o.hh_ratio", [](CompactionSpec& s) { s.d2o.hh_ratio = -0.1; });
  ExpectBad("d2o.ema_alpha", [](CompactionSpec& s) { s.d2o.ema_alpha = 2; });
  ExpectBad("gate.min_cosine", [](CompactionSpec& s) { s.gate.min_cosine = 1.5; });
  ExpectBad("gate.escalation", [](CompactionSpec& s) { s.gate.escalation = 1.0; });
  ExpectBad("gate.max_rounds", [](CompactionSpec& s) { s.gate.max_rounds = -1; });
}

TEST(SpecTest, RatioIsIgnoredWhenABudgetIsGiven) {
  CompactionSpec s;
  s.ratio = 0;
  s.budget = 8;
  EXPECT_TRUE(s.Validate().ok());
}

TEST(SpecTest, PerHeadBudget) {
  CompactionSpec s;
  s.ratio = 10;
  EXPECT_EQ(s.PerHeadBudget(1000), 100);
  EXPECT_EQ(s.PerHeadBudget(1005), 101);  // round(100.5) = 101
  EXPECT_EQ(s.PerHeadBudget(3), 1);       // never below 1
  s.budget = 64;
  EXPECT_EQ(s.PerHeadBudget(1000), 64);
  EXPECT_EQ(s.PerHeadBudget(50), 50);  // never above T
}

TEST(SpecTest, ToJsonIsOneStableLineWithEveryField) {
  CompactionSpec s;
  s.method = Method::kSnapKv;
  s.seed = 7;
  const std::string j = s.ToJson();
  EXPECT_EQ(j.find('\n'), std::string::npos);
  EXPECT_EQ(j, s.ToJson());
  const nlohmann::json parsed = nlohmann::json::parse(j);
  EXPECT_EQ(parsed["method"], "snapkv");
  EXPECT_EQ(parsed["seed"], 7);
  EXPECT_EQ(parsed["am"]["selection"], "highest");
  EXPECT_EQ(parsed["am"]["omp_fast_schedule"].size(), 3u);
  EXPECT_EQ(parsed["gate"]["escalation"], 1.5);
  EXPECT_EQ(parsed["d2o"]["uncompressed_layers"].size(), 3u);
  for (const char* key : {"ratio", "budget", "allocator", "heldout_fraction", "okdmd", "streaming",
                          "h2o", "snapkv", "pyramid", "dynamickv"}) {
    EXPECT_TRUE(parsed.contains(key)) << key;
  }
  // Results do not depend on threads, so neither does the description.
  CompactionSpec t = s;
  t.threads = 7;
  EXPECT_EQ(t.ToJson(), j);
  CompactionSpec u = s;
  u.am.ridge = 0.25;
  EXPECT_NE(u.ToJson(), j);
}

}  // namespace
}  // namespace kvc
