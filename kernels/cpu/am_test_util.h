// Test helpers for the AM / front tests: small seeded caches with peaked attention and plain
// double-precision references. Header-only, tests only.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "common/kv_cache.h"
#include "kernels/cpu/attention_matching.h"
#include "kernels/cpu/pipeline.h"

namespace kvc::testing {

struct CacheShape {
  int layers = 2;
  int kv_heads = 2;
  int q_heads = 4;
  int head_dim = 16;
  int64_t tokens = 96;
  int64_t n_ref = 40;    // 0: no q_ref
  int64_t n_window = 0;  // 0: no q_window
  DType dtype = DType::kF32;
};

// Keys and values N(0, 1); each query is 2.5 * (a key of its head) + N(0, 1), so every query
// attends strongly to a few keys (peaked, as real attention). With probability 0.8 that key is
// one of T / 8 "hot" keys of the head (shared by fit and held-out queries), else any key.
inline KvCache MakeCache(const CacheShape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_int_distribution<int64_t> pick(0, s.tokens - 1);
  KvCache c;
  c.layout = {s.layers, s.kv_heads, s.q_heads, s.head_dim, s.dtype, s.tokens};
  const int g = s.q_heads / s.kv_heads;
  const int64_t kv_n = int64_t{s.kv_heads} * s.tokens * s.head_dim;
  std::uniform_real_distribution<float> coin(0.f, 1.f);
  std::vector<int64_t> hot(static_cast<size_t>(std::max<int64_t>(1, s.tokens / 8)));
  auto queries = [&](const std::vector<float>& k, int64_t n) {
    std::vector<float> q(size_t(s.q_heads) * n * s.head_dim);
    for (int hq = 0; hq < s.q_heads; ++hq) {
      const float* kh = k.data() + size_t(hq / g) * s.tokens * s.head_dim;
      if (hq % g == 0) {
        for (int64_t& j : hot) j = pick(rng);
      }
      std::uniform_int_distribution<size_t> pick_hot(0, hot.size() - 1);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t j = coin(rng) < 0.8f ? hot[pick_hot(rng)] : pick(rng);
        for (int c2 = 0; c2 < s.head_dim; ++c2) {
          q[(size_t(hq) * n + i) * s.head_dim + c2] = 2.5f * kh[j * s.head_dim + c2] + normal(rng);
        }
      }
    }
    return Tensor::FromVector(q, {s.q_heads, n, s.head_dim});
  };
  for (int l = 0; l < s.layers; ++l) {
    std::vector<float> k(kv_n), v(kv_n);
    for (float& x : k) x = normal(rng);
    for (float& x : v) x = normal(rng);
    LayerKv layer;
    layer.k = Tensor::FromVector(k, {s.kv_heads, s.tokens, s.head_dim});
    layer.v = Tensor::FromVector(v, {s.kv_heads, s.tokens, s.head_dim});
    if (s.n_ref > 0) layer.q_ref = queries(k, s.n_ref);
    if (s.n_window > 0) layer.q_window = queries(k, s.n_window);
    if (s.dtype != DType::kF32) {
      layer.k = *layer.k.To(s.dtype);
      layer.v = *layer.v.To(s.dtype);
    }
    c.layers.push_back(std::move(layer));
  }
  c.metadata["model"] = "test";
  return c;
}

// Row-major dense matrix in double, for references.
struct Mat {
  int64_t rows = 0, cols = 0;
  std::vector<double> a;
  Mat(int64_t r, int64_t c) : rows(r), cols(c), a(size_t(r * c), 0.0) {}
  double& operator()(int64_t i, int64_t j) { return a[size_t(i * cols + j)]; }
  double operator()(int64_t i, int64_t j) const { return a[size_t(i * cols + j)]; }
};

inline Mat MatMul(const Mat& x, const Mat& y) {
  Mat out(x.rows, y.cols);
  for (int64_t i = 0; i < x.rows; ++i)
    for (int64_t k = 0; k < x.cols; ++k)
      for (int64_t j = 0; j < y.cols; ++j) out(i, j) += x(i, k) * y(k, j);
  return out;
}

inline Mat Transpose(const Mat& x) {
  Mat out(x.cols, x.rows);
  for (int64_t i = 0; i < x.rows; ++i)
    for (int64_t j = 0; j < x.cols; ++j) out(j, i) = x(i, j);
  return out;
}

// Solves A X = B (A square, nonsingular) by Gaussian elimination with partial pivoting.
inline Mat Solve(Mat a, Mat b) {
  const int64_t n = a.rows;
  for (int64_t c = 0; c < n; ++c) {
    int64_t p = c;
    for (int64_t r = c + 1; r < n; ++r)
      if (std::fabs(a(r, c)) > std::fabs(a(p, c))) p = r;
    for (int64_t j = 0; j < n; ++j) std::swap(a(c, j), a(p, j));
    for (int64_t j = 0; j < b.cols; ++j) std::swap(b(c, j), b(p, j));
    for (int64_t r = 0; r < n; ++r) {
      if (r == c) continue;
      const double f = a(r, c) / a(c, c);
      for (int64_t j = 0; j < n; ++j) a(r, j) -= f * a(c, j);
      for (int64_t j = 0; j < b.cols; ++j) b(r, j) -= f * b(c, j);
    }
  }
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < b.cols; ++j) b(r, j) /= a(r, r);
  return b;
}

inline Mat FromFloats(const float* p, int64_t rows, int64_t cols) {
  Mat m(rows, cols);
  for (int64_t i = 0; i < rows * cols; ++i) m.a[size_t(i)] = p[i];
  return m;
}

// Exact box-constrained least squares min_{lo <= w <= hi} ||A w - z||^2 by enumerating, for every
// variable, {at lo, at hi, free} and solving the free ones exactly (KKT check by feasibility and
// objective). For n <= 7.
inline std::vector<double> ExhaustiveBoxLs(const Mat& A, const std::vector<double>& z, double lo,
                                           double hi) {
  const int64_t n = A.cols;
  int64_t combos = 1;
  for (int64_t i = 0; i < n; ++i) combos *= 3;
  std::vector<double> best;
  double best_obj = INFINITY;
  for (int64_t code = 0; code < combos; ++code) {
    std::vector<int> state(static_cast<size_t>(n));
    int64_t c = code;
    std::vector<int64_t> free;
    for (int64_t i = 0; i < n; ++i) {
      state[size_t(i)] = int(c % 3);
      c /= 3;
      if (state[size_t(i)] == 2) free.push_back(i);
    }
    std::vector<double> w(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) w[size_t(i)] = state[size_t(i)] == 0 ? lo : hi;
    if (!free.empty()) {
      const int64_t f = int64_t(free.size());
      Mat G(f, f), r(f, 1);
      for (int64_t a = 0; a < f; ++a) {
        for (int64_t b = 0; b < f; ++b)
          for (int64_t i = 0; i < A.rows; ++i) G(a, b) += A(i, free[a]) * A(i, free[b]);
        for (int64_t i = 0; i < A.rows; ++i) {
          double zi = z[size_t(i)];
          for (int64_t j = 0; j < n; ++j)
            if (state[size_t(j)] != 2) zi -= A(i, j) * w[size_t(j)];
          r(a, 0) += A(i, free[a]) * zi;
        }
      }
      const Mat x = Solve(G, r);
      bool feasible = true;
      for (int64_t a = 0; a < f; ++a) {
        w[size_t(free[a])] = x(a, 0);
        if (x(a, 0) < lo - 1e-12 || x(a, 0) > hi + 1e-12) feasible = false;
      }
      if (!feasible) continue;
    }
    double obj = 0;
    for (int64_t i = 0; i < A.rows; ++i) {
      double e = -z[size_t(i)];
      for (int64_t j = 0; j < n; ++j) e += A(i, j) * w[size_t(j)];
      obj += e * e;
    }
    if (obj < best_obj) {
      best_obj = obj;
      best = w;
    }
  }
  return best;
}

// Plain double-precision attention statistics of one head: s = Q K^T / sqrt(d),
// Phi = exp(s - rowmax), z = row sums.
struct PlainStats {
  Mat phi{0, 0};
  std::vector<double> z;
};
inline PlainStats PlainAttention(const cpu::AmHead& h) {
  PlainStats p;
  p.phi = Mat(h.n, h.T);
  p.z.assign(size_t(h.n), 0.0);
  for (int64_t i = 0; i < h.n; ++i) {
    double mx = -INFINITY;
    for (int64_t j = 0; j < h.T; ++j) {
      double s = 0;
      for (int c = 0; c < h.d; ++c) s += double(h.q[i * h.d + c]) * h.k[j * h.d + c];
      p.phi(i, j) = s / std::sqrt(double(h.d));
      mx = std::max(mx, p.phi(i, j));
    }
    for (int64_t j = 0; j < h.T; ++j) {
      p.phi(i, j) = std::exp(p.phi(i, j) - mx);
      p.z[size_t(i)] += p.phi(i, j);
    }
  }
  return p;
}

}  // namespace kvc::testing
