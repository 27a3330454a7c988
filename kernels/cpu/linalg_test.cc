#include "kernels/cpu/linalg.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <random>

#include "kernels/cpu/am_test_util.h"

namespace kvc::cpu {
namespace {

using testing::FromFloats;
using testing::Mat;
using testing::MatMul;
using testing::Solve;
using testing::Transpose;

std::vector<float> RandomVec(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

TEST(LinalgTest, GemmMatchesNaiveForEveryTransposition) {
  const int64_t m = 7, n = 5, k = 9;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const std::vector<float> a = RandomVec(m * k, 1), b = RandomVec(k * n, 2);
      std::vector<float> c(m * n, 1.f);
      Gemm(ta, tb, m, n, k, 0.5f, a.data(), ta ? m : k, b.data(), tb ? k : n, 2.f, c.data(), n);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          double ref = 2.0;
          for (int64_t p = 0; p < k; ++p) {
            const double x = ta ? a[p * m + i] : a[i * k + p];
            const double y = tb ? b[j * k + p] : b[p * n + j];
            ref += 0.5 * x * y;
          }
          EXPECT_NEAR(c[i * n + j], ref, 1e-4) << ta << tb << " " << i << "," << j;
        }
      }
    }
  }
}

TEST(LinalgTest, GramMatchesProducts) {
  const int64_t m = 6, n = 4;
  const std::vector<float> a = RandomVec(m * n, 3);
  const Mat A = FromFloats(a.data(), m, n);
  const Mat ata = MatMul(Transpose(A), A), aat = MatMul(A, Transpose(A));
  const std::vector<double> g = GramCols(a.data(), m, n, n), h = GramRows(a.data(), m, n, n);
  for (int64_t i = 0; i < n * n; ++i) EXPECT_NEAR(g[i], ata.a[i], 1e-4);
  for (int64_t i = 0; i < m * m; ++i) EXPECT_NEAR(h[i], aat.a[i], 1e-4);
}

TEST(LinalgTest, ExpIsAccurateAndUnderflowsToZero) {
  std::vector<float> x;
  for (float v = -87.f; v <= 80.f; v += 0.0137f) x.push_back(v);
  std::vector<float> y = x;
  ExpInPlace(y.data(), int64_t(y.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double ref = std::exp(double(x[i]));
    EXPECT_NEAR(y[i] / ref, 1.0, 4e-7) << x[i];
  }
  float edge[3] = {-90.f, -std::numeric_limits<float>::infinity(), 0.f};
  ExpInPlace(edge, 3);
  EXPECT_EQ(edge[0], 0.f);
  EXPECT_EQ(edge[1], 0.f);
  EXPECT_EQ(edge[2], 1.f);
}

TEST(LinalgTest, SoftmaxRowsIsStableAndReportsLse) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {1000.f, 1001.f, 999.f, -inf, 0.f, 0.f, -inf, -inf, -inf};
  std::vector<double> lse(3);
  SoftmaxRows(x.data(), 3, 3, 3, lse.data());
  const double e0 = std::exp(-1.0), e2 = std::exp(-2.0), s = e0 + 1 + e2;
  EXPECT_NEAR(x[0], e0 / s, 1e-6);
  EXPECT_NEAR(x[1], 1 / s, 1e-6);
  EXPECT_NEAR(lse[0], 1001.0 + std::log(s), 1e-4);
  EXPECT_EQ(x[3], 0.f);
  EXPECT_NEAR(x[4], 0.5, 1e-7);
  EXPECT_NEAR(lse[1], std::log(2.0), 1e-7);
  EXPECT_EQ(x[6], 0.f);  // an all -inf row becomes zeros, lse -inf
  EXPECT_EQ(lse[2], -std::numeric_limits<double>::infinity());
}

TEST(LinalgTest, LeastSquaresOverdeterminedMatchesNormalEquations) {
  const int64_t m = 20, n = 6, k = 3;
  const std::vector<float> a = RandomVec(m * n, 4), b = RandomVec(m * k, 5);
  std::vector<float> x(n * k);
  LsInfo info;
  ASSERT_TRUE(LeastSquares(a.data(), m, n, b.data(), k, 0.0, x.data(), &info).ok());
  EXPECT_EQ(info.path, LsPath::kQr);
  const Mat A = FromFloats(a.data(), m, n), B = FromFloats(b.data(), m, k);
  const Mat ref = Solve(MatMul(Transpose(A), A), MatMul(Transpose(A), B));
  for (int64_t i = 0; i < n * k; ++i) EXPECT_NEAR(x[i], ref.a[i], 1e-4);
}

TEST(LinalgTest, LeastSquaresWithRidgeMatchesRegularisedNormalEquations) {
  const int64_t m = 15, n = 5, k = 2;
  const double lambda = 0.7;
  const std::vector<float> a = RandomVec(m * n, 6), b = RandomVec(m * k, 7);
  std::vector<float> x(n * k);
  LsInfo info;
  ASSERT_TRUE(LeastSquares(a.data(), m, n, b.data(), k, lambda, x.data(), &info).ok());
  EXPECT_EQ(info.path, LsPath::kNormal);
  const Mat A = FromFloats(a.data(), m, n), B = FromFloats(b.data(), m, k);
  Mat G = MatMul(Transpose(A), A);
  for (int64_t i = 0; i < n; ++i) G(i, i) += lambda;
  const Mat ref = Solve(G, MatMul(Transpose(A), B));
  for (int64_t i = 0; i < n * k; ++i) EXPECT_NEAR(x[i], ref.a[i], 1e-4);
}

TEST(LinalgTest, LeastSquaresUnderdeterminedIsMinimumNorm) {
  const int64_t m = 4, n = 9, k = 2;
  const std::vector<float> a = RandomVec(m * n, 8), b = RandomVec(m * k, 9);
  std::vector<float> x(n * k);
  LsInfo info;
  ASSERT_TRUE(LeastSquares(a.data(), m, n, b.data(), k, 0.0, x.data(), &info).ok());
  EXPECT_EQ(info.path, LsPath::kMinNorm);
  const Mat A = FromFloats(a.data(), m, n), B = FromFloats(b.data(), m, k);
  const Mat ref = MatMul(Transpose(A), Solve(MatMul(A, Transpose(A)), B));
  for (int64_t i = 0; i < n * k; ++i) EXPECT_NEAR(x[i], ref.a[i], 1e-4);
}

TEST(LinalgTest, RankDeficientLeastSquaresFallsBackToRegularisedCholesky) {
  const int64_t m = 10, n = 3;
  std::vector<float> a = RandomVec(m * n, 10);
  for (int64_t i = 0; i < m; ++i) a[i * n + 2] = a[i * n + 0];  // duplicate column
  const std::vector<float> b = RandomVec(m, 11);
  std::vector<float> x(n);
  LsInfo info;
  ASSERT_TRUE(LeastSquares(a.data(), m, n, b.data(), 1, 0.0, x.data(), &info).ok());
  EXPECT_EQ(info.path, LsPath::kNormal);
  EXPECT_GT(info.jitter, 0.0);
  for (float v : x) EXPECT_TRUE(std::isfinite(v));
  // The duplicated pair shares its coefficient; the fit is still the least-squares optimum.
  EXPECT_NEAR(x[0], x[2], 1e-3);
}

TEST(LinalgTest, LeastSquaresRejectsBadArguments) {
  float a = 1, b = 1, x = 0;
  EXPECT_TRUE(LeastSquares(&a, 0, 1, &b, 1, 0.0, &x).IsInvalidArgument());
  EXPECT_TRUE(LeastSquares(&a, 1, 1, &b, 1, -1.0, &x).IsInvalidArgument());
}

TEST(LinalgTest, CholeskySolveAddsRidgeAndJitter) {
  std::vector<double> g = {4, 2, 2, 3};
  std::vector<double> b = {1, 2};
  ASSERT_TRUE(CholeskySolve(g, 2, 1.0, b.data(), 1).ok());
  // (G + I) x = b with G + I = [[5, 2], [2, 4]]: det 16.
  EXPECT_NEAR(b[0], (4 * 1 - 2 * 2) / 16.0, 1e-12);
  EXPECT_NEAR(b[1], (5 * 2 - 2 * 1) / 16.0, 1e-12);
  std::vector<double> singular = {1, 1, 1, 1};
  std::vector<double> rhs = {1, 1};
  double jitter = 0;
  ASSERT_TRUE(CholeskySolve(singular, 2, 0.0, rhs.data(), 1, &jitter).ok());
  EXPECT_GT(jitter, 0.0);
  std::vector<double> bad = {std::nan(""), 0, 0, 1};
  std::vector<double> r2 = {1, 1};
  EXPECT_EQ(CholeskySolve(bad, 2, 0.0, r2.data(), 1).code(), Code::kInternal);
}

TEST(LinalgTest, SpectralNormMatchesClosedForm) {
  // A = diag(3, 1) rotated: sigma_max^2 = 9.
  const float c = std::cos(0.3f), s = std::sin(0.3f);
  const std::vector<float> a = {3 * c, -s, 3 * s, c};
  EXPECT_NEAR(SpectralNormSq(a.data(), 2, 2), 9.0, 1e-4);
  const std::vector<float> zero(6, 0.f);
  EXPECT_EQ(SpectralNormSq(zero.data(), 3, 2), 0.0);
}

TEST(LinalgTest, BoundedLeastSquaresMatchesExhaustiveReference) {
  for (uint32_t seed = 0; seed < 12; ++seed) {
    const int64_t m = 14, n = 5;
    std::vector<float> a = RandomVec(m * n, 100 + seed);
    for (float& v : a) v = std::fabs(v);  // nonnegative, like Phi
    std::vector<float> z = RandomVec(m, 200 + seed, 3.f);
    const double lo = 0.05, hi = 2.0;
    std::vector<float> w(n);
    ASSERT_TRUE(
        BoundedLeastSquares(a.data(), m, n, z.data(), nullptr, lo, hi, 20000, w.data()).ok());
    const Mat A = FromFloats(a.data(), m, n);
    const std::vector<double> zd(z.begin(), z.end());
    const std::vector<double> ref = testing::ExhaustiveBoxLs(A, zd, lo, hi);
    ASSERT_EQ(ref.size(), size_t(n));
    for (int64_t j = 0; j < n; ++j) EXPECT_NEAR(w[j], ref[j], 2e-3) << "seed " << seed;
  }
}

TEST(LinalgTest, BoundedLeastSquaresClampsWithoutSteps) {
  // Unconstrained optimum is w = (4, -1); clamp to [0, 2] gives (2, 0).
  const std::vector<float> a = {1, 0, 0, 1, 0, 0};
  const std::vector<float> z = {4, -1, 0};
  std::vector<float> w(2);
  ASSERT_TRUE(BoundedLeastSquares(a.data(), 3, 2, z.data(), nullptr, 0.0, 2.0, 0, w.data()).ok());
  EXPECT_FLOAT_EQ(w[0], 2.f);
  EXPECT_FLOAT_EQ(w[1], 0.f);
  EXPECT_TRUE(BoundedLeastSquares(a.data(), 3, 2, z.data(), nullptr, 1.0, 0.5, 0, w.data())
                  .IsInvalidArgument());
}

TEST(LinalgTest, BoundedLeastSquaresUnderdeterminedStaysNearPrior) {
  // One equation, three unknowns: w1 + w2 + w3 = 3 is met by the prior (1, 1, 1) exactly.
  const std::vector<float> a = {1, 1, 1};
  const std::vector<float> z = {3};
  const std::vector<float> prior = {1, 1, 1};
  std::vector<float> w(3);
  ASSERT_TRUE(
      BoundedLeastSquares(a.data(), 1, 3, z.data(), prior.data(), 1e-3, 10, 30, w.data()).ok());
  for (float v : w) EXPECT_NEAR(v, 1.f, 1e-6);
}

// Overlapping scopes (two compactions in one worker): the first's setting holds until the last
// scope ends, and the value found before the first comes back afterwards.
TEST(LinalgTest, OverlappingBlasScopesRestoreOnlyAtTheLastEnd) {
  const int before = ScopedBlasThreads::Current();
  auto a = std::make_unique<ScopedBlasThreads>(1);
  EXPECT_EQ(ScopedBlasThreads::Current(), 1);
  auto b = std::make_unique<ScopedBlasThreads>(1);
  a.reset();  // the first compaction ends while the second runs
  EXPECT_EQ(ScopedBlasThreads::Current(), 1);
  b.reset();
  EXPECT_EQ(ScopedBlasThreads::Current(), before);
}

}  // namespace
}  // namespace kvc::cpu
