// CPU side of the comparison harness: self-consistency of the reference ops on every case.
// These run on every machine; the GPU comparisons are in gpu_compare_test.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "kernels/cuda/compare_util.h"

namespace kvc::cuda::test {
namespace {

class RefChecks : public testing::TestWithParam<AmCase> {};

TEST_P(RefChecks, SoftmaxRowsSumToOneAndLseMatchesDefinition) {
  const CaseData d = MakeCaseData(GetParam());
  const int64_t n = d.c.n(), T = d.c.tokens;
  const ref::Vec p = ref::RowExpShift(d.s, d.full, n, nullptr, d.stats.lse);
  ASSERT_TRUE(ref::AllFinite(p));
  for (int64_t r = 0; r < d.c.batch * n; ++r) {
    long double sum = 0, naive = 0;
    float mx = -INFINITY;
    for (int64_t j = 0; j < T; ++j) {
      sum += p[r * T + j];
      naive += std::exp((long double)d.s[r * T + j]);
      mx = std::max(mx, d.s[r * T + j]);
    }
    EXPECT_NEAR(double(sum), 1.0, 1e-5) << "row " << r;
    EXPECT_NEAR(d.stats.lse[r], double(std::log(naive)), 1e-5) << "row " << r;
    EXPECT_EQ(d.stats.max[r], mx) << "row " << r;
    EXPECT_GE(d.stats.lse[r], d.stats.max[r]);
  }
}

TEST_P(RefChecks, ColumnScoresMatchDefinition) {
  const CaseData d = MakeCaseData(GetParam());
  const int64_t n = d.c.n(), T = d.c.tokens;
  for (int64_t b = 0; b < d.c.batch; ++b) {
    std::vector<double> sq(size_t(T), 0.0);
    for (int64_t i = 0; i < n; ++i) {  // normalise each row by its own sum, independently of lse
      const float* row = d.s.data() + (b * n + i) * T;
      const double m = *std::max_element(row, row + T);
      double sum = 0;
      for (int64_t j = 0; j < T; ++j) sum += std::exp(double(row[j]) - m);
      for (int64_t j = 0; j < T; ++j) {
        const double a = std::exp(double(row[j]) - m) / sum;
        sq[j] += a * a;
      }
    }
    for (int64_t j = 0; j < T; ++j) {
      const double want = std::sqrt(sq[j] / double(n));
      ASSERT_NEAR(d.col_scores[b * T + j], want, 1e-6 * want + 1e-12) << b << "," << j;
      ASSERT_LE(d.col_scores[b * T + j], 1.0f);
    }
  }
}

TEST_P(RefChecks, TopKKeepsTheHighestScoresInOrder) {
  const CaseData d = MakeCaseData(GetParam());
  const int64_t T = d.c.tokens;
  for (int64_t b = 0; b < d.c.batch; ++b) {
    const int64_t k = d.c.budgets[b];
    std::vector<int32_t> got(d.idx.begin() + d.kept[b], d.idx.begin() + d.kept[b + 1]);
    ASSERT_EQ(int64_t(got.size()), k);
    ASSERT_TRUE(std::is_sorted(got.begin(), got.end()));
    ASSERT_EQ(std::set<int32_t>(got.begin(), got.end()).size(), got.size());
    const float* s = d.col_scores.data() + b * T;
    float min_kept = INFINITY;
    for (int32_t j : got) min_kept = std::min(min_kept, s[j]);
    const std::set<int32_t> kept(got.begin(), got.end());
    for (int32_t j = 0; j < T; ++j) {
      if (!kept.count(j)) {
        ASSERT_LE(s[j], min_kept) << "dropped " << j << " beats a kept key";
      }
    }
  }
}

TEST_P(RefChecks, NnlsDescendsStaysInBoundsAndStepIsSafe) {
  const CaseData d = MakeCaseData(GetParam());
  const int64_t n = d.c.n();
  NnlsOptions o;
  const ref::Vec w0 = ref::NnlsUniformInit(d.phi, d.kept, n, d.z, o.lower, o.upper);
  ref::Vec lip;
  const ref::Vec w = ref::NnlsProjectedGradient(d.phi, d.kept, n, d.z, o, w0, &lip);
  const std::vector<double> f0 = ref::NnlsObjective(d.phi, d.kept, n, d.z, w0);
  const std::vector<double> f1 = ref::NnlsObjective(d.phi, d.kept, n, d.z, w);
  const std::vector<double> lmax = ref::GramLambdaMax(d.phi, d.kept, n, 500);
  for (int64_t b = 0; b < d.c.batch; ++b) {
    EXPECT_LE(f1[b], f0[b] * (1 + 1e-9) + 1e-12) << "head " << b;
    EXPECT_LE(lip[b], lmax[b] * (1 + 1e-6)) << "head " << b;  // from below: step >= 1/L
    EXPECT_GE(lip[b], 0.5 * lmax[b]) << "head " << b;         // step < 2/L: stable
  }
  for (float x : w) {
    ASSERT_GE(x, o.lower);
    ASSERT_LE(x, o.upper);
  }
}

TEST_P(RefChecks, LstsqSatisfiesRidgeNormalEquations) {
  const AmCase& c = GetParam();
  const int64_t rows = c.n(), r = 3;
  const ref::Offsets off = ref::OffsetsFromCounts(c.budgets);
  const ref::Vec a = NormalVector(size_t(rows * off.back()), c.seed + 100);
  const ref::Vec bm = NormalVector(size_t(c.batch * rows * r), c.seed + 101);
  LstsqOptions o;
  o.ridge = 0.05;
  const ref::Vec x = ref::RidgeLeastSquares(a, off, rows, bm, r, o);
  for (int64_t h = 0; h < c.batch; ++h) {
    const int64_t t = off[h + 1] - off[h];
    if (t == 0) continue;
    const float* A = a.data() + rows * off[h];
    double trace = 0;  // ||A||_F^2
    for (int64_t i = 0; i < rows * t; ++i) trace += double(A[i]) * A[i];
    const int64_t m = std::min(rows, t);
    const double lambda = trace * (o.ridge / double(t) + o.min_relative_ridge / double(m));
    double res2 = 0, ref2 = 0;  // (A^T A + lambda) x - A^T b, per column
    for (int64_t j = 0; j < t; ++j) {
      for (int64_t k = 0; k < r; ++k) {
        double lhs = lambda * x[(off[h] + j) * r + k], rhs = 0;
        for (int64_t i = 0; i < rows; ++i) {
          double ax = 0;
          for (int64_t jj = 0; jj < t; ++jj) ax += double(A[i * t + jj]) * x[(off[h] + jj) * r + k];
          lhs += double(A[i * t + j]) * ax;
          rhs += double(A[i * t + j]) * bm[(h * rows + i) * r + k];
        }
        res2 += (lhs - rhs) * (lhs - rhs);
        ref2 += rhs * rhs;
      }
    }
    EXPECT_LT(std::sqrt(res2 / ref2), 1e-5) << "head " << h << " (t " << t << ")";
  }
}

// The GPU tolerances must cover what f32 arithmetic alone does to the fit: the same pipeline with
// float accumulators in NNLS and the solves stays inside them.
TEST_P(RefChecks, FloatAccumulationStaysWithinGpuTolerances) {
  const AmFitHostProblem p = MakeProblem(GetParam());
  const AmFitOptions o = StrictAmOptions();
  const AmFitHostResult r64 = ref::AmFit(p, o, ref::Accum::kDouble);
  const AmFitHostResult r32 = ref::AmFit(p, o, ref::Accum::kFloat);
  const double nb = ref::Nmse(Exp(r32.beta), Exp(r64.beta));
  const double nv = ref::Nmse(r32.values, r64.values);
  std::printf(
      "[ %s ] f32 vs f64 accumulation: nmse exp(beta) %.2e (tol %.0e), values %.2e "
      "(tol %.0e)\n",
      GetParam().name.c_str(), nb, kTolAmBeta, nv, kTolAmValues);
  EXPECT_LT(nb, kTolAmBeta);
  EXPECT_LT(nv, kTolAmValues);
}

// The default fit (least-squares start of beta, 1e-6 ridge floors) is sensitive to rounding, so
// the GPU comparison reads held-out fidelity; f32 accumulation alone must stay inside that
// tolerance too.
TEST_P(RefChecks, FloatAccumulationKeepsDefaultFidelity) {
  const AmCase& c = GetParam();
  const AmFitHostProblem p = MakeProblem(c);
  const AmFitHostResult r64 = ref::AmFit(p, AmFitOptions{}, ref::Accum::kDouble);
  const AmFitHostResult r32 = ref::AmFit(p, AmFitOptions{}, ref::Accum::kFloat);
  ASSERT_TRUE(ref::AllFinite(r32.beta) && ref::AllFinite(r32.values));
  const int64_t n_eval = 64;
  const ref::Vec qe = MakeHeldOutQueries(c, n_eval);
  const ref::Fidelity f64 = ref::EvaluateFidelity(qe, n_eval, p, r64);
  const ref::Fidelity f32 = ref::EvaluateFidelity(qe, n_eval, p, r32);
  std::printf("[ %s ] default fit, held-out cosine f64 %.5f f32 %.5f, rel-L2 %.4f / %.4f\n",
              c.name.c_str(), f64.cosine, f32.cosine, f64.rel_l2, f32.rel_l2);
  EXPECT_NEAR(f32.cosine, f64.cosine, kTolFidelityCosine);
  EXPECT_NEAR(f32.rel_l2, f64.rel_l2, 10 * kTolFidelityCosine);
}

TEST_P(RefChecks, AttentionMatchingBeatsSelectionOnHeldOutQueries) {
  const AmCase& c = GetParam();
  if (!c.well_determined()) {
    GTEST_SKIP() << c.name << ": n < 2 t or a trivial budget; held-out gains are not expected";
  }
  const AmFitHostProblem p = MakeProblem(c);
  AmFitOptions select_only;
  select_only.fit_beta = false;
  select_only.fit_values = false;
  const AmFitHostResult sel = ref::AmFit(p, select_only);
  const AmFitHostResult am = ref::AmFit(p, AmFitOptions{});
  ASSERT_TRUE(ref::AllFinite(am.beta));
  ASSERT_TRUE(ref::AllFinite(am.values));
  const int64_t n_eval = 64;
  const ref::Vec qe = MakeHeldOutQueries(c, n_eval);
  const ref::Fidelity fs = ref::EvaluateFidelity(qe, n_eval, p, sel);
  const ref::Fidelity fa = ref::EvaluateFidelity(qe, n_eval, p, am);
  std::printf(
      "[ %s ] held-out cosine: select-only %.5f, AM %.5f; rel-L2 %.4f -> %.4f; "
      "mass error %.4f -> %.4f\n",
      c.name.c_str(), fs.cosine, fa.cosine, fs.rel_l2, fa.rel_l2, fs.mass_error, fa.mass_error);
  EXPECT_GT(fa.cosine, fs.cosine);
  EXPECT_LT(fa.rel_l2, fs.rel_l2);
  EXPECT_LT(fa.mass_error, fs.mass_error);
}

// values_toward_kept: an overwhelming ridge leaves the kept values V_S; a negligible one gives the
// plain least-squares values when the fit is well determined (the minimiser is unique).
TEST_P(RefChecks, ValuesTowardKeptSolvesTheShiftedRidge) {
  const AmCase& c = GetParam();
  const AmFitHostProblem p = MakeProblem(c);
  AmFitOptions o = StrictAmOptions();
  o.values_toward_kept = true;
  o.values_lstsq.ridge = 1e8;
  const AmFitHostResult heavy = ref::AmFit(p, o);
  ASSERT_TRUE(ref::AllFinite(heavy.values));
  const ref::Vec kept = ref::GatherRows(p.v, p.tokens, p.head_dim, heavy.indices, heavy.offsets);
  EXPECT_LT(ref::Nmse(heavy.values, kept), 1e-6);
  if (!c.well_determined()) return;
  o.values_lstsq.ridge = 0;
  o.values_lstsq.min_relative_ridge = 1e-9;
  AmFitOptions plain = o;
  plain.values_toward_kept = false;
  EXPECT_LT(ref::Nmse(ref::AmFit(p, o).values, ref::AmFit(p, plain).values), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Cases, RefChecks, testing::ValuesIn(ComparisonCases()), CaseName);

TEST(RefTopK, TiesGoToTheLowerPosition) {
  const ref::Vec s = {1, 3, 3, 2, 3, 0, 5, 5, 5, 5};  // segments [0, 6) and [6, 10)
  const std::vector<int32_t> got = ref::TopK(s, {0, 6, 10}, {0, 2, 5});
  EXPECT_EQ(got, (std::vector<int32_t>{1, 2, 0, 1, 2}));
}

TEST(RefNnls, ConvergesToAnInteriorSolution) {
  // Phi with orthogonal-ish columns and z = Phi w*: PG must reach w* (well inside the bounds).
  const int64_t rows = 40, t = 5;
  ref::Vec phi(size_t(rows * t), 0.f);
  for (int64_t i = 0; i < rows; ++i) phi[i * t + (i % t)] = 0.5f + 0.01f * float(i);
  const ref::Vec wstar = {0.5f, 1.f, 2.f, 4.f, 8.f};
  ref::Vec z(size_t(rows), 0.f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < t; ++j) z[i] += phi[i * t + j] * wstar[j];
  NnlsOptions o;
  o.pg_steps = 400;
  const ref::Vec w = ref::NnlsProjectedGradient(phi, {0, t}, rows, z, o, ref::Vec(t, 1.f));
  for (int64_t j = 0; j < t; ++j) EXPECT_NEAR(w[j], wstar[j], 1e-3 * wstar[j]) << j;
}

}  // namespace
}  // namespace kvc::cuda::test
