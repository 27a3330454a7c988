#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "kernels/cpu/methods_test_util.h"
#include "kernels/cpu/pipeline.h"

namespace kvc::cpu {
namespace {

// Reference: forced positions first (sinks = the run from 0, then the rest newest first), then
// every other position by (score desc, position asc).
std::vector<int64_t> RefSelect(const float* s, int64_t T, const std::vector<int64_t>& forced,
                               int64_t b) {
  std::vector<int64_t> order, rest_forced;
  for (int64_t p : forced) {
    (p == static_cast<int64_t>(order.size()) ? order : rest_forced).push_back(p);
  }
  order.insert(order.end(), rest_forced.rbegin(), rest_forced.rend());
  std::vector<int64_t> kept(order.begin(), order.begin() + std::min<int64_t>(b, order.size()));
  std::vector<int64_t> rest;
  for (int64_t j = 0; j < T; ++j) {
    if (std::find(forced.begin(), forced.end(), j) == forced.end()) rest.push_back(j);
  }
  std::stable_sort(rest.begin(), rest.end(), [s](int64_t a, int64_t c) { return s[a] > s[c]; });
  for (int64_t j : rest) {
    if (static_cast<int64_t>(kept.size()) >= b) break;
    kept.push_back(j);
  }
  std::sort(kept.begin(), kept.end());
  return kept;
}

TEST(SelectTopKTest, MatchesReferenceWithTiesAndForced) {
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int> small(0, 4);  // many ties
  const int L = 2, H = 3;
  const int64_t T = 37;
  ScoreSet s = ScoreSet::Zeros(L, H, T);
  for (float& x : s.scores) x = static_cast<float>(small(rng));
  s.forced = {0, 1, 30, 35, 36};
  for (int64_t b : {0, 1, 3, 5, 6, 20, 37}) {
    Budgets budgets(L, std::vector<int64_t>(H, b));
    budgets[1][2] = std::min<int64_t>(b + 2, T);
    const Selection sel = SelectTopK(s, budgets);
    for (int l = 0; l < L; ++l) {
      for (int h = 0; h < H; ++h) {
        EXPECT_EQ(sel[l][h], RefSelect(s.at(l, h), T, s.forced, budgets[l][h]))
            << "b=" << b << " l=" << l << " h=" << h;
      }
    }
  }
}

TEST(SelectTopKTest, ForcedPrefixWhenBudgetIsShort) {
  ScoreSet s = ScoreSet::Zeros(1, 1, 10);
  for (int j = 0; j < 10; ++j) s.at(0, 0)[j] = static_cast<float>(100 - j);
  s.forced = {0, 1, 7, 8, 9};
  EXPECT_EQ(SelectTopK(s, {{1}})[0][0], (std::vector<int64_t>{0}));
  EXPECT_EQ(SelectTopK(s, {{3}})[0][0], (std::vector<int64_t>{0, 1, 9}));
  EXPECT_EQ(SelectTopK(s, {{4}})[0][0], (std::vector<int64_t>{0, 1, 8, 9}));
  // Without sinks the window is kept newest first.
  s.forced = {7, 8, 9};
  EXPECT_EQ(SelectTopK(s, {{2}})[0][0], (std::vector<int64_t>{8, 9}));
  EXPECT_EQ(SelectTopK(s, {{6}})[0][0], (std::vector<int64_t>{0, 1, 2, 7, 8, 9}));
}

TEST(SelectTopKTest, NanRanksLastAndBudgetIsClamped) {
  ScoreSet s = ScoreSet::Zeros(1, 1, 5);
  float* v = s.at(0, 0);
  v[0] = NAN, v[1] = 1, v[2] = NAN, v[3] = 2, v[4] = 0;
  EXPECT_EQ(SelectTopK(s, {{3}})[0][0], (std::vector<int64_t>{1, 3, 4}));
  EXPECT_EQ(SelectTopK(s, {{99}})[0][0], (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_TRUE(SelectTopK(s, {{-4}})[0][0].empty());
}

TEST(GatherSelectedTest, CopiesRowsWithZeroBeta) {
  testing::CacheShape shape;
  const PreparedCache c = testing::RandomCache(shape, 5);
  Selection sel = {{{0, 3, 39}, {}}, {{1}, {2, 5}}};
  const LayerResults r = GatherSelected(c, sel);
  ASSERT_EQ(r.size(), 2u);
  for (int l = 0; l < 2; ++l) {
    for (int h = 0; h < 2; ++h) {
      const HeadResult& hr = r[l][h];
      EXPECT_EQ(hr.positions, sel[l][h]);
      ASSERT_EQ(hr.k.size(), sel[l][h].size() * shape.d);
      EXPECT_EQ(hr.beta, std::vector<float>(sel[l][h].size(), 0.0f));
      for (size_t i = 0; i < sel[l][h].size(); ++i) {
        for (int x = 0; x < shape.d; ++x) {
          EXPECT_EQ(hr.k[i * shape.d + x], c.K(l, h)[sel[l][h][i] * shape.d + x]);
          EXPECT_EQ(hr.v[i * shape.d + x], c.V(l, h)[sel[l][h][i] * shape.d + x]);
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvc::cpu
