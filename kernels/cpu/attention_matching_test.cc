// Attention Matching against direct, double-precision implementations of each definition of
// design §4 on small inputs, plus the invariants of the fit.
#include "kernels/cpu/attention_matching.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "kernels/cpu/am_test_util.h"
#include "kernels/cpu/compact_stages.h"

namespace kvc::cpu {
namespace {

using testing::FromFloats;
using testing::Mat;
using testing::MatMul;
using testing::PlainAttention;
using testing::PlainStats;
using testing::Solve;
using testing::Transpose;

// A self-contained head: random K, V; queries near random keys (peaked attention).
struct TestHead {
  std::vector<float> k, v, q;
  AmHead head;
  TestHead(int64_t T, int64_t n, int d, uint32_t seed, float sharp = 1.5f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::uniform_int_distribution<int64_t> pick(0, T - 1);
    k.resize(size_t(T * d));
    v.resize(size_t(T * d));
    q.resize(size_t(n * d));
    for (float& x : k) x = normal(rng);
    for (float& x : v) x = normal(rng);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = pick(rng);
      for (int c = 0; c < d; ++c) q[i * d + c] = sharp * k[j * d + c] + normal(rng);
    }
    head = AmHead{k.data(), v.data(), q.data(), T, n, d};
  }
};

// Plain OMP following `schedule`, refitting with the exact box-constrained least squares.
std::vector<int64_t> PlainOmp(const PlainStats& p, int64_t t, const std::vector<OmpStage>& sched) {
  const int64_t n = p.phi.rows, T = p.phi.cols;
  std::vector<int64_t> sel;
  std::vector<double> r = p.z;
  std::vector<char> taken(size_t(T), 0);
  int since = 0;
  std::vector<double> corr(static_cast<size_t>(T));
  bool valid = false;
  while (int64_t(sel.size()) < t) {
    const OmpStage* st = &sched.back();
    for (const OmpStage& s : sched) {
      if (int64_t(sel.size()) < s.up_to) {
        st = &s;
        break;
      }
    }
    if (!valid) {
      for (int64_t j = 0; j < T; ++j) {
        corr[j] = 0;
        for (int64_t i = 0; i < n; ++i) corr[j] += p.phi(i, j) * r[i];
      }
      valid = true;
    }
    for (int q = 0; q < st->keys_per_step && int64_t(sel.size()) < t; ++q) {
      int64_t best = -1;
      for (int64_t j = 0; j < T; ++j)
        if (!taken[j] && (best < 0 || corr[j] > corr[best])) best = j;
      taken[best] = 1;
      sel.push_back(best);
    }
    if (++since >= st->refit_every || int64_t(sel.size()) == t) {
      Mat A(n, int64_t(sel.size()));
      for (int64_t i = 0; i < n; ++i)
        for (size_t j = 0; j < sel.size(); ++j) A(i, int64_t(j)) = p.phi(i, sel[j]);
      const std::vector<double> w = testing::ExhaustiveBoxLs(A, p.z, kBetaLoOmp, kBetaHiOmp);
      for (int64_t i = 0; i < n; ++i) {
        double cur = 0;
        for (size_t j = 0; j < sel.size(); ++j) cur += A(i, int64_t(j)) * w[j];
        r[i] = p.z[i] - cur;
      }
      valid = false;
      since = 0;
    }
  }
  std::sort(sel.begin(), sel.end());
  return sel;
}

TEST(AttentionMatchingTest, AttentionStatsMatchDefinition) {
  TestHead th(37, 11, 8, 1);
  const AttentionStats st = ComputeAttentionStats(th.head);
  const PlainStats ref = PlainAttention(th.head);
  for (int64_t i = 0; i < 11; ++i) {
    EXPECT_NEAR(st.z[i], ref.z[i], 1e-5 * ref.z[i]);
    for (int64_t j = 0; j < 37; ++j) EXPECT_NEAR(st.phi[i * 37 + j], ref.phi(i, j), 2e-6);
  }
}

TEST(AttentionMatchingTest, HighestAttentionScoresMatchDefinition) {
  TestHead th(29, 13, 8, 2);
  const std::vector<float> sc = HighestAttentionScores(ComputeAttentionStats(th.head));
  const PlainStats ref = PlainAttention(th.head);
  for (int64_t j = 0; j < 29; ++j) {
    double acc = 0;
    for (int64_t i = 0; i < 13; ++i) {
      const double a = ref.phi(i, j) / ref.z[i];
      acc += a * a;
    }
    EXPECT_NEAR(sc[j], std::sqrt(acc / 13), 1e-6);
  }
}

TEST(AttentionMatchingTest, TopPositionsBreaksTiesLowAndHonoursKeepAndBlocked) {
  const std::vector<float> s = {0.5f, 0.9f, 0.9f, 0.1f, 0.7f, 0.9f};
  EXPECT_EQ(TopPositions(s, 2, {}), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(TopPositions(s, 3, {0, 1, 0, 0, 0, 0}), (std::vector<int64_t>{2, 4, 5}));
  EXPECT_EQ(TopPositions(s, 3, {}, {3}), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(TopPositions(s, 9, {1, 1, 1, 1, 1, 0}), (std::vector<int64_t>{5}));
}

TEST(AttentionMatchingTest, OmpPicksMatchPlainOmp) {
  const std::vector<OmpStage> plain = {{std::numeric_limits<int64_t>::max(), 1, 1}};
  for (uint32_t seed = 0; seed < 6; ++seed) {
    TestHead th(10, 12, 6, 10 + seed, 1.0f);
    const std::vector<int64_t> got =
        OmpSelect(ComputeAttentionStats(th.head), 5, plain, {}, {}, 20000);
    EXPECT_EQ(got, PlainOmp(PlainAttention(th.head), 5, plain)) << "seed " << seed;
  }
}

TEST(AttentionMatchingTest, OmpFastFollowsItsSchedule) {
  const std::vector<OmpStage> sched = {{2, 1, 1}, {std::numeric_limits<int64_t>::max(), 2, 2}};
  for (uint32_t seed = 0; seed < 6; ++seed) {
    TestHead th(12, 14, 6, 30 + seed, 1.0f);
    const std::vector<int64_t> got =
        OmpSelect(ComputeAttentionStats(th.head), 6, sched, {}, {}, 20000);
    EXPECT_EQ(got, PlainOmp(PlainAttention(th.head), 6, sched)) << "seed " << seed;
  }
}

TEST(AttentionMatchingTest, OmpNeverPicksBlockedAndKeepsStart) {
  TestHead th(40, 20, 8, 3);
  std::vector<char> blocked(40, 0);
  for (int j = 0; j < 40; j += 3) blocked[j] = 1;
  const std::vector<int64_t> got = OmpSelect(ComputeAttentionStats(th.head), 10,
                                             AmOptions{}.omp_fast_schedule, {1, 2}, blocked, 30);
  ASSERT_EQ(got.size(), 10u);
  EXPECT_TRUE(std::binary_search(got.begin(), got.end(), 1));
  EXPECT_TRUE(std::binary_search(got.begin(), got.end(), 2));
  for (int64_t j : got) EXPECT_FALSE(blocked[j]) << j;
}

TEST(AttentionMatchingTest, BetaMatchesExhaustiveBoxLeastSquares) {
  for (uint32_t seed = 0; seed < 5; ++seed) {
    TestHead th(30, 24, 8, 50 + seed);
    const AttentionStats st = ComputeAttentionStats(th.head);
    const std::vector<int64_t> sel = TopPositions(HighestAttentionScores(st), 5, {});
    Result<std::vector<float>> beta = FitBeta(st, sel, kBetaLoHighest, kBetaHiHighest, 20000);
    ASSERT_TRUE(beta.ok()) << beta.status().ToString();
    const PlainStats p = PlainAttention(th.head);
    Mat A(24, 5);
    for (int64_t i = 0; i < 24; ++i)
      for (int j = 0; j < 5; ++j) A(i, j) = p.phi(i, sel[j]);
    const std::vector<double> w = testing::ExhaustiveBoxLs(A, p.z, kBetaLoHighest, kBetaHiHighest);
    for (int j = 0; j < 5; ++j) {
      EXPECT_NEAR((*beta)[j], std::log(w[j]), 2e-3) << "seed " << seed << " key " << j;
      EXPECT_GE((*beta)[j], -3.0 - 1e-6);
      EXPECT_LE((*beta)[j], 3.0 + 1e-6);
    }
  }
}

// X and Y of the value fit, from the definitions, in double.
void PlainXY(const TestHead& th, const std::vector<int64_t>& sel, const std::vector<float>& beta,
             Mat& X, Mat& Y) {
  const AmHead& h = th.head;
  const PlainStats p = PlainAttention(h);
  X = Mat(h.n, int64_t(sel.size()));
  Y = Mat(h.n, h.d);
  for (int64_t i = 0; i < h.n; ++i) {
    double mx = -INFINITY;
    for (size_t j = 0; j < sel.size(); ++j) {
      double s = 0;
      for (int c = 0; c < h.d; ++c) s += double(h.q[i * h.d + c]) * h.k[sel[j] * h.d + c];
      X(i, int64_t(j)) = s / std::sqrt(double(h.d)) + beta[j];
      mx = std::max(mx, X(i, int64_t(j)));
    }
    double sum = 0;
    for (size_t j = 0; j < sel.size(); ++j)
      sum += (X(i, int64_t(j)) = std::exp(X(i, int64_t(j)) - mx));
    for (size_t j = 0; j < sel.size(); ++j) X(i, int64_t(j)) /= sum;
    for (int64_t j = 0; j < h.T; ++j)
      for (int c = 0; c < h.d; ++c) Y(i, c) += p.phi(i, j) / p.z[i] * h.v[j * h.d + c];
  }
}

void ExpectClose(const std::vector<float>& got, const Mat& ref, double rel) {
  double scale = 0;
  for (double v : ref.a) scale = std::max(scale, std::fabs(v));
  ASSERT_EQ(got.size(), ref.a.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], ref.a[i], rel * scale) << i;
}

TEST(AttentionMatchingTest, ValuesMatchNormalEquationsWhenOverdetermined) {
  TestHead th(40, 48, 8, 60);
  const AttentionStats st = ComputeAttentionStats(th.head);
  const std::vector<int64_t> sel = TopPositions(HighestAttentionScores(st), 6, {});
  const std::vector<float> beta = {0.3f, -0.2f, 0.f, 1.f, -1.f, 0.5f};
  Result<std::vector<float>> cv = FitValues(th.head, st, sel, beta, 0.0);
  ASSERT_TRUE(cv.ok()) << cv.status().ToString();
  Mat X(0, 0), Y(0, 0);
  PlainXY(th, sel, beta, X, Y);
  ExpectClose(*cv, Solve(MatMul(Transpose(X), X), MatMul(Transpose(X), Y)), 2e-3);
}

TEST(AttentionMatchingTest, ValuesWithRidgeShrinkTowardsTheKeptValues) {
  TestHead th(40, 48, 8, 61);
  const AttentionStats st = ComputeAttentionStats(th.head);
  const std::vector<int64_t> sel = TopPositions(HighestAttentionScores(st), 6, {});
  const std::vector<float> beta(6, 0.f);
  const double ridge = 0.1;
  Result<std::vector<float>> cv = FitValues(th.head, st, sel, beta, ridge);
  ASSERT_TRUE(cv.ok());
  Mat X(0, 0), Y(0, 0);
  PlainXY(th, sel, beta, X, Y);
  double xx = 0;
  for (double v : X.a) xx += v * v;
  // Ridge towards the kept values: (X^T X + lambda I) C = X^T Y + lambda V_S.
  const double lambda = ridge * xx / 6;
  Mat G = MatMul(Transpose(X), X);
  Mat rhs = MatMul(Transpose(X), Y);
  for (int j = 0; j < 6; ++j) {
    G(j, j) += lambda;
    for (int c = 0; c < 8; ++c) rhs(j, c) += lambda * th.v[sel[j] * 8 + c];
  }
  ExpectClose(*cv, Solve(G, rhs), 1e-3);
}

TEST(AttentionMatchingTest, UnderdeterminedValuesAreTheMinimiserNearestTheKeptValues) {
  TestHead th(30, 5, 8, 62);
  const AttentionStats st = ComputeAttentionStats(th.head);
  const std::vector<int64_t> sel = TopPositions(HighestAttentionScores(st), 9, {});
  const std::vector<float> beta(9, 0.2f);
  Result<std::vector<float>> cv = FitValues(th.head, st, sel, beta, 0.0);
  ASSERT_TRUE(cv.ok());
  Mat X(0, 0), Y(0, 0);
  PlainXY(th, sel, beta, X, Y);
  Mat VS(9, 8);
  for (int j = 0; j < 9; ++j)
    for (int c = 0; c < 8; ++c) VS(j, c) = th.v[sel[j] * 8 + c];
  Mat R = Y;
  const Mat XV = MatMul(X, VS);
  for (size_t i = 0; i < R.a.size(); ++i) R.a[i] -= XV.a[i];
  Mat ref = MatMul(Transpose(X), Solve(MatMul(X, Transpose(X)), R));
  for (size_t i = 0; i < ref.a.size(); ++i) ref.a[i] += VS.a[i];
  ExpectClose(*cv, ref, 2e-3);
}

TEST(AttentionMatchingTest, FullBudgetReturnsTheCacheUnchanged) {
  for (int64_t n : {8, 64}) {  // fewer and more fit queries than keys
    TestHead th(32, n, 8, 70);
    Result<HeadResult> r = FitAmHead(th.head, {}, 32, AmOptions{});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->positions.size(), 32u);
    for (float b : r->beta) EXPECT_NEAR(b, 0.f, 1e-4);
    for (size_t i = 0; i < th.v.size(); ++i) EXPECT_NEAR(r->v[i], th.v[i], 1e-3);
    EXPECT_EQ(r->k, th.k);
  }
}

TEST(AttentionMatchingTest, SelectOnlyKeepsKeysAndValues) {
  TestHead th(50, 20, 8, 71);
  AmOptions o;
  o.fit_beta = o.fit_values = false;
  Result<HeadResult> r = FitAmHead(th.head, {}, 7, o);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->positions.size(), 7u);
  for (size_t i = 0; i < 7; ++i) {
    EXPECT_EQ(r->beta[i], 0.f);
    for (int c = 0; c < 8; ++c) {
      EXPECT_EQ(r->v[i * 8 + c], th.v[r->positions[i] * 8 + c]);
      EXPECT_EQ(r->k[i * 8 + c], th.k[r->positions[i] * 8 + c]);
    }
  }
}

TEST(AttentionMatchingTest, RejectsBadSelections) {
  TestHead th(20, 10, 8, 72);
  EXPECT_TRUE(FitAmHead(th.head, {1, 2}, 3, AmOptions{}).status().IsInvalidArgument());
  EXPECT_TRUE(FitAmHead(th.head, {2, 1, 3}, 3, AmOptions{}).status().IsInvalidArgument());
  EXPECT_TRUE(FitAmHead(th.head, {1, 2, 20}, 3, AmOptions{}).status().IsInvalidArgument());
}

TEST(AttentionMatchingTest, RefinementReplacesKeysWithVeryNegativeBeta) {
  AmOptions o;
  o.selection = AmSelection::kOmp;
  bool found = false;
  for (uint32_t seed = 0; seed < 60 && !found; ++seed) {
    TestHead th(40, 30, 8, 300 + seed, 0.8f);
    std::vector<int64_t> sel;
    for (int64_t j = 0; j < 40; j += 4) sel.push_back(j);  // an arbitrary, poor selection
    Result<HeadResult> base = FitAmHead(th.head, sel, 10, o);
    ASSERT_TRUE(base.ok());
    std::vector<int64_t> low;
    for (size_t i = 0; i < 10; ++i)
      if (base->beta[i] < kRefineDropBelow) low.push_back(base->positions[i]);
    if (low.empty()) continue;
    found = true;
    o.refine_rounds = 3;
    Result<HeadResult> ref = FitAmHead(th.head, sel, 10, o);
    ASSERT_TRUE(ref.ok());
    ASSERT_EQ(ref->positions.size(), 10u);
    for (int64_t j : low) {
      EXPECT_FALSE(std::binary_search(ref->positions.begin(), ref->positions.end(), j)) << j;
    }
    for (float b : ref->beta) EXPECT_TRUE(std::isfinite(b));
  }
  EXPECT_TRUE(found) << "no seed produced a key with beta < -7";
}

PreparedCache PrepareTestCache(const testing::CacheShape& s, uint32_t seed) {
  return *Prepare(testing::MakeCache(s, seed), {}, false);
}

TEST(AttentionMatchingTest, RaggedBudgetsAreExactAndFinite) {
  testing::CacheShape s;
  const PreparedCache p = PrepareTestCache(s, 5);
  const Budgets budgets = {{0, 96}, {13, 1}};
  for (AmSelection mode : {AmSelection::kHighestAttention, AmSelection::kOmpFast}) {
    AmOptions o;
    o.selection = mode;
    ThreadPool pool(2);
    Result<LayerResults> r = AttentionMatchingFit(p, {}, budgets, o, pool);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (int l = 0; l < 2; ++l) {
      for (int h = 0; h < 2; ++h) {
        const HeadResult& hr = (*r)[l][h];
        EXPECT_EQ(int64_t(hr.positions.size()), budgets[l][h]);
        EXPECT_EQ(hr.k.size(), hr.positions.size() * 16);
        EXPECT_EQ(hr.v.size(), hr.positions.size() * 16);
        EXPECT_TRUE(std::is_sorted(hr.positions.begin(), hr.positions.end()));
        EXPECT_TRUE(std::adjacent_find(hr.positions.begin(), hr.positions.end()) ==
                    hr.positions.end());
        for (float b : hr.beta) EXPECT_TRUE(std::isfinite(b));
        for (float v : hr.v) EXPECT_TRUE(std::isfinite(v));
      }
    }
  }
}

TEST(AttentionMatchingTest, ResultsDoNotDependOnThreadCount) {
  testing::CacheShape s;
  s.layers = 3;
  const PreparedCache p = PrepareTestCache(s, 6);
  const Budgets budgets(3, std::vector<int64_t>{9, 17});
  AmOptions o;
  o.selection = AmSelection::kOmpFast;
  ThreadPool one(1), four(4);
  Result<LayerResults> a = AttentionMatchingFit(p, {}, budgets, o, one);
  Result<LayerResults> b = AttentionMatchingFit(p, {}, budgets, o, four);
  ASSERT_TRUE(a.ok() && b.ok());
  for (int l = 0; l < 3; ++l) {
    for (int h = 0; h < 2; ++h) {
      EXPECT_EQ((*a)[l][h].positions, (*b)[l][h].positions);
      EXPECT_EQ((*a)[l][h].beta, (*b)[l][h].beta);
      EXPECT_EQ((*a)[l][h].v, (*b)[l][h].v);
    }
  }
}

TEST(AttentionMatchingTest, NeedsFitQueries) {
  testing::CacheShape s;
  s.n_ref = 0;
  const PreparedCache p = PrepareTestCache(s, 7);
  ThreadPool pool(1);
  const Budgets budgets(2, std::vector<int64_t>{4, 4});
  EXPECT_TRUE(AttentionMatchingFit(p, {}, budgets, AmOptions{}, pool).status().IsInvalidArgument());
  EXPECT_TRUE(ScoreHighestAttention(p, pool).status().IsInvalidArgument());
}

TEST(AttentionMatchingTest, ScoreSetHasNoForcedPositionsAndMatchesPerHeadScores) {
  testing::CacheShape s;
  const PreparedCache p = PrepareTestCache(s, 8);
  ThreadPool pool(2);
  Result<ScoreSet> sc = ScoreHighestAttention(p, pool);
  ASSERT_TRUE(sc.ok());
  EXPECT_TRUE(sc->forced.empty());
  const std::vector<float> ref = HighestAttentionScores(ComputeAttentionStats(MakeAmHead(p, 1, 1)));
  for (int64_t j = 0; j < p.T(); ++j) EXPECT_EQ(sc->at(1, 1)[j], ref[j]);
}

}  // namespace
}  // namespace kvc::cpu
