#include "kernels/cpu/attention_scores.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace kvc::cpu {
namespace {

// Query rows scored per GEMM: bounds the [rows, T] score buffer.
constexpr int64_t kRowChunk = 64;

// softmax over s[0..n) in place, then adds each probability to col_sums.
void SoftmaxAccumulate(float* s, int64_t n, double* col_sums) {
  if (n <= 0) return;
  const float mx = *std::max_element(s, s + n);
  double total = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - mx);
    total += s[j];
  }
  const double inv = 1.0 / total;
  for (int64_t j = 0; j < n; ++j) col_sums[j] += s[j] * inv;
}

}  // namespace

void AccumulateAttention(const float* q, int64_t n_rows, int64_t first_pos, bool causal,
                         const float* k, int64_t T, int d, double* col_sums) {
  if (n_rows <= 0 || T <= 0) return;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<float> s(static_cast<size_t>(std::min(n_rows, kRowChunk)) * T);
  for (int64_t r0 = 0; r0 < n_rows; r0 += kRowChunk) {
    const int64_t n = std::min(kRowChunk, n_rows - r0);
    // s[n, T] = scale * Q[r0:r0+n] K^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(T),
                d, scale, q + r0 * d, d, k, d, 0.0f, s.data(), static_cast<int>(T));
    for (int64_t r = 0; r < n; ++r) {
      const int64_t visible = causal ? std::min(T, first_pos + r0 + r + 1) : T;
      SoftmaxAccumulate(s.data() + r * T, visible, col_sums);
    }
  }
}

void Pool1d(const float* in, int64_t n, int kernel, Pooling pooling, float* out) {
  const int64_t pad = kernel / 2;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t lo = std::max<int64_t>(0, i - pad);
    const int64_t hi = std::min<int64_t>(n - 1, i - pad + kernel - 1);
    if (pooling == Pooling::kMax) {
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t j = lo; j <= hi; ++j) m = std::max(m, in[j]);
      out[i] = m;
    } else {
      double sum = 0.0;
      for (int64_t j = lo; j <= hi; ++j) sum += in[j];
      out[i] = static_cast<float>(sum / kernel);
    }
  }
}

Result<int64_t> WindowRows(const PreparedCache& c, int requested, std::string_view method) {
  if (c.layers.empty() || !c.layers[0].q_window.has_value()) {
    return Status::InvalidArgument(std::string(method) + " needs q_window");
  }
  const Tensor& qw = *c.layers[0].q_window;
  if (qw.rank() != 3 || qw.dim(0) != c.layout.n_q_heads || qw.dim(2) != c.d()) {
    return Status::InvalidArgument(std::string(method) + ": q_window has shape " +
                                   ShapeToString(qw.shape()) + ", want [n_q, W, d]");
  }
  const int64_t W = qw.dim(1);
  if (W <= 0 || W > c.T()) {
    return Status::InvalidArgument(std::string(method) + ": q_window has " + std::to_string(W) +
                                   " rows; need 1..T=" + std::to_string(c.T()));
  }
  for (const PreparedLayer& layer : c.layers) {
    if (!layer.q_window.has_value() || layer.q_window->shape() != qw.shape()) {
      return Status::InvalidArgument(std::string(method) +
                                     ": every layer needs a q_window of the same shape");
    }
  }
  return requested <= 0 ? W : std::min<int64_t>(requested, W);
}

std::vector<double> WindowColumnSums(const PreparedCache& c, int l, int q_head, int64_t rows) {
  const Tensor& qw = *c.layers[l].q_window;
  const int64_t W = qw.dim(1);
  const int d = c.d();
  const float* q = qw.data<float>() + (static_cast<size_t>(q_head) * W + (W - rows)) * d;
  std::vector<double> sums(c.T(), 0.0);
  const int kv = q_head / c.layout.group();
  AccumulateAttention(q, rows, c.T() - rows, /*causal=*/true, c.K(l, kv), c.T(), d, sums.data());
  return sums;
}

ScoreSet WindowPooledScores(const PreparedCache& c, int64_t rows, int kernel, Pooling pooling,
                            bool mean_over_rows) {
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads, G = c.layout.group();
  const int64_t T = c.T(), prefix = T - rows;
  ScoreSet out = ScoreSet::Zeros(L, H, T);
  std::vector<float> raw(T), pooled(T);
  const double row_scale = mean_over_rows ? 1.0 / static_cast<double>(rows) : 1.0;
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) {
      float* dst = out.at(l, h);
      for (int j = h * G; j < (h + 1) * G; ++j) {
        const std::vector<double> sums = WindowColumnSums(c, l, j, rows);
        for (int64_t t = 0; t < T; ++t) raw[t] = static_cast<float>(sums[t] * row_scale);
        Pool1d(raw.data(), prefix, kernel, pooling, pooled.data());
        for (int64_t t = prefix; t < T; ++t) pooled[t] = raw[t];
        for (int64_t t = 0; t < T; ++t) dst[t] += pooled[t] / static_cast<float>(G);
      }
    }
  }
  out.forced = SinksAndRecent(T, 0, rows);
  return out;
}

std::vector<int64_t> SinksAndRecent(int64_t T, int64_t sinks, int64_t recent) {
  std::vector<int64_t> pos;
  const int64_t s = std::clamp<int64_t>(sinks, 0, T);
  const int64_t r0 = std::max<int64_t>(s, T - std::max<int64_t>(recent, 0));
  for (int64_t i = 0; i < s; ++i) pos.push_back(i);
  for (int64_t i = r0; i < T; ++i) pos.push_back(i);
  return pos;
}

Status CheckPrepared(const PreparedCache& c) {
  const KvLayout& lay = c.layout;
  if (lay.n_layers <= 0 || lay.n_kv_heads <= 0 || lay.head_dim <= 0 || lay.tokens <= 0 ||
      lay.n_q_heads < lay.n_kv_heads || lay.n_q_heads % lay.n_kv_heads != 0) {
    return Status::InvalidArgument("prepared cache has an invalid layout: " + lay.ToString());
  }
  if (static_cast<int>(c.layers.size()) != lay.n_layers) {
    return Status::InvalidArgument("prepared cache has " + std::to_string(c.layers.size()) +
                                   " layers, layout says " + std::to_string(lay.n_layers));
  }
  const Shape want = {lay.n_kv_heads, lay.tokens, lay.head_dim};
  for (size_t l = 0; l < c.layers.size(); ++l) {
    const PreparedLayer& pl = c.layers[l];
    if (pl.k.shape() != want || pl.v.shape() != want || pl.k.dtype() != DType::kF32 ||
        pl.v.dtype() != DType::kF32) {
      return Status::InvalidArgument("layer " + std::to_string(l) + ": K/V must be F32 " +
                                     ShapeToString(want));
    }
  }
  return Status::OK();
}

}  // namespace kvc::cpu
