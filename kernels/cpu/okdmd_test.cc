#include "kernels/cpu/okdmd.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/cpu/methods_test_util.h"
#include "kernels/cpu/pipeline.h"

namespace kvc::cpu {
namespace {

using Mat = std::vector<double>;  // row-major square or d x k

Mat Inverse(Mat m, int d) {  // Gauss-Jordan with partial pivoting
  Mat inv(d * d, 0.0);
  for (int i = 0; i < d; ++i) inv[i * d + i] = 1.0;
  for (int col = 0; col < d; ++col) {
    int piv = col;
    for (int r = col + 1; r < d; ++r) {
      if (std::abs(m[r * d + col]) > std::abs(m[piv * d + col])) piv = r;
    }
    for (int x = 0; x < d; ++x) std::swap(m[col * d + x], m[piv * d + x]);
    for (int x = 0; x < d; ++x) std::swap(inv[col * d + x], inv[piv * d + x]);
    const double p = m[col * d + col];
    for (int x = 0; x < d; ++x) m[col * d + x] /= p, inv[col * d + x] /= p;
    for (int r = 0; r < d; ++r) {
      if (r == col) continue;
      const double f = m[r * d + col];
      for (int x = 0; x < d; ++x)
        m[r * d + x] -= f * m[col * d + x], inv[r * d + x] -= f * inv[col * d + x];
    }
  }
  return inv;
}

// Projection Q Q^T onto the span of the k columns of Q (d x k): independent of column signs.
Mat Projector(const Mat& q, int d, int k) {
  Mat p(d * d, 0.0);
  for (int r = 0; r < d; ++r) {
    for (int c = 0; c < d; ++c) {
      for (int m = 0; m < k; ++m) p[r * d + c] += q[r * k + m] * q[c * k + m];
    }
  }
  return p;
}

// Q of a thin QR by modified Gram-Schmidt (d x k).
Mat GramSchmidt(Mat a, int d, int k) {
  for (int c = 0; c < k; ++c) {
    for (int p = 0; p < c; ++p) {
      double dot = 0;
      for (int r = 0; r < d; ++r) dot += a[r * k + p] * a[r * k + c];
      for (int r = 0; r < d; ++r) a[r * k + c] -= dot * a[r * k + p];
    }
    double n = 0;
    for (int r = 0; r < d; ++r) n += a[r * k + c] * a[r * k + c];
    for (int r = 0; r < d; ++r) a[r * k + c] /= std::sqrt(n);
  }
  return a;
}

Mat MatMul(const Mat& a, const Mat& b, int n, int inner, int m) {
  Mat c(n * m, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < m; ++j) {
      for (int x = 0; x < inner; ++x) c[i * m + j] += a[i * inner + x] * b[x * m + j];
    }
  }
  return c;
}

void ExpectClose(const Mat& got, const Mat& want, double rel, const char* what) {
  double scale = 0;
  for (double x : want) scale = std::max(scale, std::abs(x));
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], rel * std::max(scale, 1e-12)) << what << " [" << i << "]";
  }
}

std::vector<float> RandomKeys(int64_t T, int d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> k(T * d);
  for (float& x : k) x = nd(rng);
  return k;
}

TEST(OkDmdPrefillTest, MatchesClosedFormFit) {
  const int d = 6;
  const int64_t T = 50;
  const std::vector<float> keys = RandomKeys(T, d, 1);
  OkDmdOptions o;
  o.k_modes = 3;
  Result<OkDmdStream> s = OkDmdStream::Prefill(keys.data(), T, d, o, 77);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  // X X^T + sigma I and Y X^T by plain sums over consecutive pairs.
  Mat xx(d * d, 0.0), yx(d * d, 0.0);
  for (int64_t i = 0; i + 1 < T; ++i) {
    for (int r = 0; r < d; ++r) {
      for (int c = 0; c < d; ++c) {
        xx[r * d + c] += double(keys[i * d + r]) * keys[i * d + c];
        yx[r * d + c] += double(keys[(i + 1) * d + r]) * keys[i * d + c];
      }
    }
  }
  for (int i = 0; i < d; ++i) xx[i * d + i] += o.sigma;
  const Mat p = Inverse(xx, d);
  ExpectClose(s->P(), p, 1e-9, "P");
  ExpectClose(s->A(), MatMul(yx, p, d, d, d), 1e-9, "A");
  // Q: 10 rounds of Q <- qr(A Q) from the seeded start; compare the spans.
  Result<OkDmdStream> start = OkDmdStream::Create(d, o, 77);
  Mat q = start->Q();
  for (int it = 0; it < o.power_iters; ++it) q = GramSchmidt(MatMul(s->A(), q, d, d, 3), d, 3);
  ExpectClose(Projector(s->Q(), d, 3), Projector(q, d, 3), 1e-8, "QQ^T");
  // Orthonormal columns and the survival score ||Q^T k||^2.
  ExpectClose(MatMul(Projector(s->Q(), d, 3), Projector(s->Q(), d, 3), d, d, d),
              Projector(s->Q(), d, 3), 1e-10, "projector idempotent");
  for (int64_t i = 0; i < T; i += 7) {
    double want = 0;
    for (int m = 0; m < 3; ++m) {
      double proj = 0;
      for (int x = 0; x < d; ++x) proj += q[x * 3 + m] * keys[i * d + x];
      want += proj * proj;
    }
    EXPECT_NEAR(s->Score(&keys[i * d]), want, 1e-8 * std::max(1.0, want));
  }
}

TEST(OkDmdPrefillTest, RecoversAKnownDynamicsAndItsDominantModes) {
  // k_{t+1} = A k_t + noise with A = diag(0.97, 0.9, 0.2, 0.1): the top-2 subspace is e1, e2.
  const int d = 4;
  const int64_t T = 4000;
  const double diag[] = {0.97, 0.9, 0.2, 0.1};
  std::mt19937_64 rng(9);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<float> keys(T * d);
  std::vector<double> k(d, 1.0);
  for (int64_t t = 0; t < T; ++t) {
    for (int x = 0; x < d; ++x) keys[t * d + x] = static_cast<float>(k[x]);
    for (int x = 0; x < d; ++x) k[x] = diag[x] * k[x] + nd(rng);
  }
  OkDmdOptions o;
  o.k_modes = 2;
  Result<OkDmdStream> s = OkDmdStream::Prefill(keys.data(), T, d, o, 3);
  ASSERT_TRUE(s.ok());
  for (int r = 0; r < d; ++r) {
    for (int c = 0; c < d; ++c) EXPECT_NEAR(s->A()[r * d + c], r == c ? diag[r] : 0.0, 0.06);
  }
  const Mat want = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  ExpectClose(Projector(s->Q(), d, 2), want, 0.05, "dominant subspace");
}

// The RLS of design §4 written plainly in double, started from `a`, `p`, `q` after key `prev`.
struct RefRls {
  int d, k;
  OkDmdOptions o;
  Mat a, p, q;
  std::vector<double> prev;
  int64_t n = 0;
  void Push(const float* key) {
    if (prev.empty()) {
      prev.assign(key, key + d);
      return;
    }
    std::vector<double> u(d, 0), g(d), e(d);
    for (int r = 0; r < d; ++r) {
      for (int c = 0; c < d; ++c) u[r] += p[r * d + c] * prev[c];
    }
    double ku = 0;
    for (int r = 0; r < d; ++r) ku += prev[r] * u[r];
    for (int r = 0; r < d; ++r) g[r] = u[r] / (o.lambda + ku + 1e-6);
    Mat np(d * d);
    for (int r = 0; r < d; ++r) {
      for (int c = 0; c < d; ++c) np[r * d + c] = (p[r * d + c] - g[r] * u[c]) / o.lambda;
    }
    for (int r = 0; r < d; ++r) {
      for (int c = 0; c < d; ++c) p[r * d + c] = 0.5 * (np[r * d + c] + np[c * d + r]);
      p[r * d + r] += o.sigma;
    }
    for (int r = 0; r < d; ++r) {
      e[r] = key[r];
      for (int c = 0; c < d; ++c) e[r] -= a[r * d + c] * prev[c];
    }
    for (int r = 0; r < d; ++r) {
      for (int c = 0; c < d; ++c) a[r * d + c] += e[r] * g[c];
    }
    prev.assign(key, key + d);
    if (++n % o.refresh_every == 0) q = GramSchmidt(MatMul(a, q, d, d, k), d, k);
  }
};

TEST(OkDmdStreamTest, OneKeyAtATimeMatchesBruteForceRls) {
  const int d = 5;
  const int64_t T = 70;
  const std::vector<float> keys = RandomKeys(T, d, 4);
  OkDmdOptions o;
  o.k_modes = 2;
  o.refresh_every = 8;
  o.lambda = 0.97;
  Result<OkDmdStream> s = OkDmdStream::Create(d, o, 5);
  ASSERT_TRUE(s.ok());
  RefRls ref{d, 2, o, s->A(), s->P(), s->Q(), {}};
  ExpectClose(s->P(),
              Inverse(
                  [&] {
                    Mat m(d * d, 0.0);
                    for (int i = 0; i < d; ++i) m[i * d + i] = o.sigma;
                    return m;
                  }(),
                  d),
              1e-12, "P0 = I / sigma");
  for (int64_t t = 0; t < T; ++t) {
    s->Push(&keys[t * d]);
    ref.Push(&keys[t * d]);
    if (t % 10 == 9) {
      ExpectClose(s->A(), ref.a, 1e-8, "A");
      ExpectClose(s->P(), ref.p, 1e-8, "P");
    }
  }
  EXPECT_EQ(s->updates(), T - 1);
  ExpectClose(Projector(s->Q(), d, 2), Projector(ref.q, d, 2), 1e-7, "QQ^T");
}

TEST(OkDmdStreamTest, PrefillThenStreamContinuesFromTheFit) {
  const int d = 4;
  const std::vector<float> keys = RandomKeys(60, d, 6);
  OkDmdOptions o;
  o.k_modes = 2;
  Result<OkDmdStream> s = OkDmdStream::Prefill(keys.data(), 40, d, o, 1);
  ASSERT_TRUE(s.ok());
  RefRls ref{d, 2, o, s->A(), s->P(), s->Q(), {keys.begin() + 39 * d, keys.begin() + 40 * d}};
  for (int64_t t = 40; t < 60; ++t) {
    s->Push(&keys[t * d]);
    ref.Push(&keys[t * d]);
  }
  ExpectClose(s->A(), ref.a, 1e-8, "A");
  ExpectClose(s->P(), ref.p, 1e-8, "P");
  ExpectClose(Projector(s->Q(), d, 2), Projector(ref.q, d, 2), 1e-7, "QQ^T");
}

TEST(OkDmdStreamTest, InvalidOptions) {
  OkDmdOptions o;
  o.lambda = 1.5;
  EXPECT_TRUE(OkDmdStream::Create(4, o, 0).status().IsInvalidArgument());
  o = {};
  o.sigma = 0;
  EXPECT_TRUE(OkDmdStream::Create(4, o, 0).status().IsInvalidArgument());
  o = {};
  EXPECT_TRUE(OkDmdStream::Create(0, o, 0).status().IsInvalidArgument());
  o.k_modes = 64;  // clamped to head_dim
  EXPECT_EQ(OkDmdStream::Create(8, o, 0)->modes(), 8);
}

TEST(ScoreOkDmdTest, ScoresAreSurvivalOfEachHeadsPrefillAndForcedSinksRecent) {
  testing::CacheShape shape;
  shape.W = 0;  // needs no queries
  shape.d = 8;
  const PreparedCache c = testing::RandomCache(shape, 71);
  OkDmdOptions o;
  o.k_modes = 3;
  o.sinks = 2;
  o.recent = 5;
  Result<ScoreSet> s = ScoreOkDmd(c, o, 1234);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->forced, (std::vector<int64_t>{0, 1, 35, 36, 37, 38, 39}));
  for (int l = 0; l < shape.L; ++l) {
    for (int h = 0; h < shape.H; ++h) {
      Result<OkDmdStream> fit =
          OkDmdStream::Prefill(c.K(l, h), shape.T, shape.d, o, OkDmdHeadSeed(1234, l, h));
      for (int64_t i = 0; i < shape.T; ++i) {
        const double want = fit->Score(c.K(l, h) + i * shape.d);
        EXPECT_NEAR(s->at(l, h)[i], want, 1e-4 * std::max(1.0, want));
      }
    }
  }
  // Same seed, same scores; the head seeds differ between heads.
  EXPECT_EQ(ScoreOkDmd(c, o, 1234)->scores, s->scores);
  EXPECT_NE(OkDmdHeadSeed(1234, 0, 1), OkDmdHeadSeed(1234, 1, 0));
  EXPECT_NE(OkDmdHeadSeed(1234, 0, 0), OkDmdHeadSeed(1235, 0, 0));
}

}  // namespace
}  // namespace kvc::cpu
