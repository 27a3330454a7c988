#include "kernels/fidelity.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "kernels/cpu/am_test_util.h"

namespace kvc {
namespace {

// A compacted cache that keeps every `stride`-th key of each head (head h of layer l keeps
// budgets[l][h] of them), with seeded beta and perturbed values.
CompactedCache MakeCompacted(const KvCache& full, const std::vector<std::vector<int64_t>>& budgets,
                             uint32_t seed, float beta_scale, float value_noise) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  const KvLayout& L = full.layout;
  CompactedCache c;
  c.layout = L;
  for (int l = 0; l < L.n_layers; ++l) {
    std::vector<float> k, v, beta;
    CompactedLayer cl;
    cl.offsets = {0};
    for (int h = 0; h < L.n_kv_heads; ++h) {
      const int64_t t = budgets[l][h];
      for (int64_t i = 0; i < t; ++i) {
        const int64_t pos = i * L.tokens / std::max<int64_t>(t, 1);
        for (int d = 0; d < L.head_dim; ++d) {
          const size_t src = (size_t(h) * L.tokens + pos) * L.head_dim + d;
          k.push_back(full.layers[l].k.data<float>()[src]);
          v.push_back(full.layers[l].v.data<float>()[src] + value_noise * normal(rng));
        }
        beta.push_back(beta_scale * normal(rng));
      }
      cl.offsets.push_back(cl.offsets.back() + t);
    }
    const int64_t total = cl.offsets.back();
    cl.k = Tensor::FromVector(k, {total, L.head_dim});
    cl.v = Tensor::FromVector(v, {total, L.head_dim});
    cl.beta = Tensor::FromVector(beta, {total});
    c.layers.push_back(cl);
  }
  return c;
}

std::vector<Tensor> RandomQueries(const KvLayout& L, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.5f);
  std::vector<Tensor> out;
  for (int l = 0; l < L.n_layers; ++l) {
    std::vector<float> q(size_t(L.n_q_heads) * n * L.head_dim);
    for (float& x : q) x = normal(rng);
    out.push_back(Tensor::FromVector(q, {L.n_q_heads, n, L.head_dim}));
  }
  return out;
}

// Attention output and log-sum-exp in double for one query over m keys (+ bias).
void PlainAttend(const float* q, const float* k, const float* v, const float* bias, int64_t m,
                 int d, std::vector<double>& out, double& lse) {
  std::vector<double> s(static_cast<size_t>(m));
  double mx = -INFINITY;
  for (int64_t j = 0; j < m; ++j) {
    double dot = 0;
    for (int c = 0; c < d; ++c) dot += double(q[c]) * k[j * d + c];
    s[j] = dot / std::sqrt(double(d)) + (bias ? bias[j] : 0.0);
    mx = std::max(mx, s[j]);
  }
  double sum = 0;
  for (double& x : s) sum += (x = std::exp(x - mx));
  lse = mx + std::log(sum);
  out.assign(size_t(d), 0.0);
  for (int64_t j = 0; j < m; ++j)
    for (int c = 0; c < d; ++c) out[c] += s[j] / sum * v[j * d + c];
}

TEST(FidelityTest, MatchesPlainFormulasPerHeadAndSummaries) {
  testing::CacheShape s;
  s.layers = 2;
  s.n_ref = 0;
  const KvCache full = testing::MakeCache(s, 1);
  const CompactedCache comp = MakeCompacted(full, {{10, 30}, {5, 50}}, 2, 0.5f, 0.3f);
  const std::vector<Tensor> q = RandomQueries(full.layout, 7, 3);
  Result<FidelityReport> r = EvaluateFidelity(full, comp, q, 2);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->heads.size(), 8u);
  EXPECT_EQ(r->queries_per_head, 7);
  const int d = 16;
  std::vector<double> cosines;
  for (const HeadFidelity& hf : r->heads) {
    const int h = hf.q_head / 2;
    EXPECT_EQ(hf.kv_head, h);
    const CompactedLayer& cl = comp.layers[hf.layer];
    double cos = 0, rel = 0, mass = 0;
    for (int64_t i = 0; i < 7; ++i) {
      const float* qi = q[hf.layer].data<float>() + (size_t(hf.q_head) * 7 + i) * d;
      std::vector<double> o, c;
      double lse, lse_c;
      PlainAttend(qi, full.layers[hf.layer].k.data<float>() + size_t(h) * 96 * d,
                  full.layers[hf.layer].v.data<float>() + size_t(h) * 96 * d, nullptr, 96, d, o,
                  lse);
      PlainAttend(qi, cl.k.data<float>() + cl.offsets[h] * d,
                  cl.v.data<float>() + cl.offsets[h] * d, cl.beta.data<float>() + cl.offsets[h],
                  cl.budget(h), d, c, lse_c);
      double oo = 0, cc = 0, oc = 0, diff = 0;
      for (int j = 0; j < d; ++j) {
        oo += o[j] * o[j];
        cc += c[j] * c[j];
        oc += o[j] * c[j];
        diff += (o[j] - c[j]) * (o[j] - c[j]);
      }
      cos += oc / std::sqrt(oo * cc);
      rel += std::sqrt(diff / oo);
      mass += std::fabs(std::exp(lse_c - lse) - 1);
    }
    EXPECT_NEAR(hf.cosine, cos / 7, 1e-5);
    EXPECT_NEAR(hf.rel_l2, rel / 7, 1e-4);
    EXPECT_NEAR(hf.mass_error, mass / 7, 1e-4);
    cosines.push_back(hf.cosine);
  }
  std::sort(cosines.begin(), cosines.end());
  double mean = 0;
  for (double c : cosines) mean += c / 8;
  EXPECT_NEAR(r->overall.cosine.mean, mean, 1e-12);
  EXPECT_EQ(r->overall.cosine.min, cosines.front());
  EXPECT_EQ(r->overall.cosine.max, cosines.back());
  // p10 of 8 values: position 0.7 between the first two order statistics.
  EXPECT_NEAR(r->overall.cosine.p10, cosines[0] + 0.7 * (cosines[1] - cosines[0]), 1e-12);
  ASSERT_EQ(r->layers.size(), 2u);
  EXPECT_EQ(r->layers[0].heads, 4);
  const double layer1 =
      (r->heads[4].cosine + r->heads[5].cosine + r->heads[6].cosine + r->heads[7].cosine) / 4;
  EXPECT_NEAR(r->layers[1].cosine.mean, layer1, 1e-12);
}

TEST(FidelityTest, TheFullCacheIsPerfectAndAnEmptyHeadIsZero) {
  testing::CacheShape s;
  s.n_ref = 0;
  const KvCache full = testing::MakeCache(s, 4);
  CompactedCache same = MakeCompacted(full, {{96, 96}, {96, 0}}, 5, 0.f, 0.f);
  const std::vector<Tensor> q = RandomQueries(full.layout, 5, 6);
  Result<FidelityReport> r = EvaluateFidelity(full, same, q, 1);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  for (const HeadFidelity& h : r->heads) {
    if (h.layer == 1 && h.kv_head == 1) {
      EXPECT_EQ(h.cosine, 0.0);
      EXPECT_EQ(h.rel_l2, 1.0);
      EXPECT_EQ(h.mass_error, 1.0);
    } else {
      EXPECT_NEAR(h.cosine, 1.0, 1e-6);
      EXPECT_NEAR(h.rel_l2, 0.0, 1e-5);
      EXPECT_NEAR(h.mass_error, 0.0, 1e-5);
    }
  }
  EXPECT_EQ(r->layers[1].cosine.min, 0.0);
}

TEST(FidelityTest, RejectsMismatchedInputs) {
  testing::CacheShape s;
  s.n_ref = 0;
  const KvCache full = testing::MakeCache(s, 7);
  const CompactedCache comp = MakeCompacted(full, {{4, 4}, {4, 4}}, 8, 0.1f, 0.f);
  const std::vector<Tensor> q = RandomQueries(full.layout, 3, 9);
  CompactedCache other = comp;
  other.layout.tokens = 95;
  EXPECT_TRUE(EvaluateFidelity(full, other, q).status().IsInvalidArgument());
  EXPECT_TRUE(EvaluateFidelity(full, comp, {q[0]}).status().IsInvalidArgument());
  std::vector<Tensor> wrong = q;
  wrong[1] = RandomQueries(KvLayout{2, 2, 4, 8, DType::kF32, 96}, 3, 1)[1];
  EXPECT_TRUE(EvaluateFidelity(full, comp, wrong).status().IsInvalidArgument());
  std::vector<Tensor> nan = {q[0], q[1].Clone()};
  nan[1].data<float>()[5] = std::nanf("");
  Status st = EvaluateFidelity(full, comp, nan).status();
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("NaN"), std::string::npos);
}

TEST(FidelityTest, TextAndJsonCarryTheSummaries) {
  testing::CacheShape s;
  s.n_ref = 0;
  const KvCache full = testing::MakeCache(s, 10);
  const CompactedCache comp = MakeCompacted(full, {{12, 20}, {30, 8}}, 11, 0.2f, 0.1f);
  Result<FidelityReport> r = EvaluateFidelity(full, comp, RandomQueries(full.layout, 4, 12));
  ASSERT_TRUE(r.ok());
  const std::string text = r->ToText();
  EXPECT_NE(text.find("cos_mean"), std::string::npos);
  EXPECT_NE(text.find("   all"), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(r->ToJson());
  EXPECT_DOUBLE_EQ(j["overall"]["cosine"]["mean"].get<double>(), r->overall.cosine.mean);
  EXPECT_EQ(j["layers"].size(), 2u);
  EXPECT_FALSE(j.contains("heads"));
  EXPECT_EQ(nlohmann::json::parse(r->ToJson(true))["heads"].size(), 8u);
}

}  // namespace
}  // namespace kvc
