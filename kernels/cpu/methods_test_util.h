// Test helpers for the eviction methods: small random PreparedCache inputs (seeded) and plain,
// loop-by-loop reference computations written straight from design §4.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/pipeline.h"

namespace kvc::cpu::testing {

struct CacheShape {
  int L = 2;
  int H = 2;
  int NQ = 4;
  int d = 8;
  int64_t T = 40;
  int64_t W = 6;      // q_window rows; 0 = none
  int64_t n_fit = 0;  // q_fit rows; 0 = none
};

inline Tensor RandomTensor(Shape shape, std::mt19937_64* rng, float scale = 1.0f) {
  Tensor t = Tensor::Empty(DType::kF32, std::move(shape));
  std::normal_distribution<float> nd(0.0f, scale);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = nd(*rng);
  return t;
}

inline PreparedCache RandomCache(const CacheShape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  PreparedCache c;
  c.layout.n_layers = s.L;
  c.layout.n_kv_heads = s.H;
  c.layout.n_q_heads = s.NQ;
  c.layout.head_dim = s.d;
  c.layout.tokens = s.T;
  for (int l = 0; l < s.L; ++l) {
    PreparedLayer layer;
    layer.k = RandomTensor({s.H, s.T, s.d}, &rng, 1.5f);
    layer.v = RandomTensor({s.H, s.T, s.d}, &rng);
    if (s.W > 0) layer.q_window = RandomTensor({s.NQ, s.W, s.d}, &rng, 1.5f);
    if (s.n_fit > 0) layer.q_fit = RandomTensor({s.NQ, s.n_fit, s.d}, &rng, 1.5f);
    c.layers.push_back(std::move(layer));
  }
  return c;
}

// Reference attention of one query row over keys [0, visible) of a [T, d] block:
// a_j = exp(q.k_j / sqrt(d)) / sum_{i < visible} exp(q.k_i / sqrt(d)), zero for j >= visible.
inline std::vector<double> RefAttention(const float* q, const float* k, int64_t T, int d,
                                        int64_t visible) {
  std::vector<double> a(T, 0.0);
  double mx = -INFINITY, z = 0.0;
  for (int64_t j = 0; j < visible; ++j) {
    double s = 0.0;
    for (int x = 0; x < d; ++x) s += double(q[x]) * k[j * d + x];
    a[j] = s / std::sqrt(double(d));
    mx = std::max(mx, a[j]);
  }
  for (int64_t j = 0; j < visible; ++j) z += (a[j] = std::exp(a[j] - mx));
  for (int64_t j = 0; j < visible; ++j) a[j] /= z;
  return a;
}

// Row r of q_window (W rows) of query head qh in layer l.
inline const float* WindowRow(const PreparedCache& c, int l, int qh, int64_t r) {
  const Tensor& q = *c.layers[l].q_window;
  return q.data<float>() + (size_t(qh) * q.dim(1) + r) * c.d();
}

// Sum over rows r in [W - rows, W) of the causal attention of query head qh (row r sits at
// position T - W + r and sees keys 0..T-W+r).
inline std::vector<double> RefWindowSums(const PreparedCache& c, int l, int qh, int64_t rows) {
  const int64_t W = c.layers[l].q_window->dim(1), T = c.T();
  const int kv = qh / c.layout.group();
  std::vector<double> sum(T, 0.0);
  for (int64_t r = W - rows; r < W; ++r) {
    const std::vector<double> a =
        RefAttention(WindowRow(c, l, qh, r), c.K(l, kv), T, c.d(), T - W + r + 1);
    for (int64_t j = 0; j < T; ++j) sum[j] += a[j];
  }
  return sum;
}

inline int64_t Total(const Budgets& b) {
  int64_t t = 0;
  for (const auto& row : b) {
    for (int64_t x : row) t += x;
  }
  return t;
}

}  // namespace kvc::cpu::testing
