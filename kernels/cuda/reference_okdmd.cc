#include "kernels/cuda/reference_okdmd.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <random>
#include <utility>

#include "kernels/cpu/okdmd.h"
#include "kernels/cuda/cases.h"

namespace kvc::cuda {
namespace {

constexpr int kLatent = 8;

OkDmdCase Case(std::string name, int layers, int heads, int group, int64_t T, int d, int k_modes,
               uint64_t seed) {
  OkDmdCase c;
  c.name = std::move(name);
  c.layers = layers;
  c.heads = heads;
  c.group = group;
  c.tokens = T;
  c.head_dim = d;
  c.options.k_modes = k_modes;
  c.seed = seed;
  return c;
}

OkDmdCase WithStream(OkDmdCase c, int64_t prefill, int64_t first, int64_t steps) {
  c.prefill_tokens = prefill;
  c.first_push = first;
  c.stream_steps = steps;
  return c;
}

// Keys [T, d] of one head (see the header for the model).
void FillHeadKeys(const OkDmdCase& c, uint64_t head, float* out) {
  const int d = c.head_dim, m = kLatent;
  const int64_t T = c.tokens;
  const uint64_t base = c.seed * 1000003 + head * 7919 + 11;
  const std::vector<float> u1 = NormalVector(size_t(d) * m, base + 1);
  const std::vector<float> u2 = NormalVector(size_t(d) * m, base + 2);
  std::vector<float> bias = NormalVector(size_t(d), base + 3);
  for (float& b : bias) b *= 0.5f;
  bias[0] += c.outlier;
  bias[size_t(d - 1)] -= c.outlier;
  const std::vector<float> eps = NormalVector(size_t(T) * m, base + 4);
  const std::vector<float> eta = NormalVector(size_t(T) * d, base + 5);
  std::vector<double> z(m, 0.0), zn(m);
  const double scale = 1.0 / std::sqrt(double(m));
  for (int64_t t = 0; t < T; ++t) {
    for (int j = 0; j < m; j += 2) {  // 0.97 R z, R a rotation in the planes (j, j + 1)
      const double th = 0.05 + 0.1 * j, cs = std::cos(th), sn = std::sin(th);
      zn[j] = 0.97 * (cs * z[j] - sn * z[j + 1]) + 0.3 * eps[t * m + j];
      zn[j + 1] = 0.97 * (sn * z[j] + cs * z[j + 1]) + 0.3 * eps[t * m + j + 1];
    }
    z.swap(zn);
    const std::vector<float>& u = (t >= T / 3 && t < 2 * T / 3) ? u2 : u1;
    for (int x = 0; x < d; ++x) {
      double v = bias[x] + 0.4 * eta[t * d + x];
      for (int j = 0; j < m; ++j) v += scale * u[x * m + j] * z[j];
      out[t * d + x] = float(v);
    }
  }
}

}  // namespace

std::vector<OkDmdCase> OkDmdComparisonCases() {
  std::vector<OkDmdCase> cs;
  cs.push_back(Case("one_token", 1, 1, 1, 1, 8, 4, 3));
  cs.push_back(Case("odd_small", 2, 3, 2, 37, 24, 5, 5));
  cs.push_back(Case("k_equals_d", 1, 2, 4, 300, 16, 16, 7));
  cs.push_back(Case("modes_clamped", 1, 2, 1, 129, 12, 40, 9));
  cs.push_back(Case("tokens_below_d", 1, 2, 4, 50, 64, 8, 11));
  cs.push_back(Case("llama_like", 2, 8, 4, 1000, 128, 16, 13));
  cs.push_back(Case("chunk_edges", 3, 2, 2, 2049, 64, 16, 17));
  cs.push_back(Case("padded_chunks", 1, 2, 3, 5003, 32, 16, 19));
  OkDmdCase outliers = Case("outliers", 1, 2, 4, 700, 32, 16, 23);
  outliers.outlier = 40.f;
  cs.push_back(outliers);
  OkDmdCase no_power = Case("no_power_iterations", 1, 2, 2, 200, 16, 4, 29);
  no_power.options.power_iters = 0;
  cs.push_back(no_power);
  cs.push_back(WithStream(Case("stream", 2, 2, 4, 300, 32, 8, 31), 240, 20, 37));
  cs.push_back(WithStream(Case("stream_from_empty", 1, 3, 1, 60, 16, 4, 37), 0, 1, 45));
  OkDmdCase fast = WithStream(Case("stream_refresh_1", 1, 2, 2, 150, 24, 6, 41), 100, 7, 33);
  fast.options.refresh_every = 1;
  fast.options.lambda = 0.9;
  cs.push_back(fast);
  return cs;
}

OkDmdCase OkDmdBenchmarkCase(int layers, int64_t tokens) {
  return Case("llama8b_T" + std::to_string(tokens), layers, 8, 4, tokens, 128, 16, 2026);
}

cpu::PreparedCache MakeOkDmdCache(const OkDmdCase& c) {
  cpu::PreparedCache pc;
  pc.layout.n_layers = c.layers;
  pc.layout.n_kv_heads = c.heads;
  pc.layout.n_q_heads = c.heads * c.group;
  pc.layout.head_dim = c.head_dim;
  pc.layout.tokens = c.tokens;
  for (int l = 0; l < c.layers; ++l) {
    cpu::PreparedLayer layer;
    layer.k = Tensor::Empty(DType::kF32, {c.heads, c.tokens, c.head_dim});
    for (int h = 0; h < c.heads; ++h) {
      FillHeadKeys(c, uint64_t(l) * c.heads + h,
                   layer.k.data<float>() + size_t(h) * c.tokens * c.head_dim);
    }
    layer.v = Tensor::Zeros(DType::kF32, {c.heads, c.tokens, c.head_dim});
    pc.layers.push_back(std::move(layer));
  }
  return pc;
}

std::vector<float> FlattenKeys(const cpu::PreparedCache& c) {
  std::vector<float> keys;
  for (const cpu::PreparedLayer& l : c.layers) {
    keys.insert(keys.end(), l.k.data<float>(), l.k.data<float>() + l.k.numel());
  }
  return keys;
}

std::vector<uint64_t> HeadSeeds(const OkDmdCase& c) {
  std::vector<uint64_t> seeds;
  for (int l = 0; l < c.layers; ++l) {
    for (int h = 0; h < c.heads; ++h) seeds.push_back(cpu::OkDmdHeadSeed(c.seed, l, h));
  }
  return seeds;
}

namespace ref {
namespace {

// The CPU's seeded Gaussian (mt19937_64, Box-Muller), d x k row-major.
std::vector<double> Gaussian(int d, int k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&rng] { return (double(rng() >> 11) + 0.5) * 0x1.0p-53; };
  std::vector<double> g(size_t(d) * k);
  for (size_t i = 0; i < g.size(); i += 2) {
    const double r = std::sqrt(-2.0 * std::log(uniform()));
    const double th = 2.0 * std::numbers::pi * uniform();
    g[i] = r * std::cos(th);
    if (i + 1 < g.size()) g[i + 1] = r * std::sin(th);
  }
  return g;
}

// Columns of m (d x k) orthonormalised by classical Gram-Schmidt, twice per column.
void GramSchmidt(std::vector<double>* m, int d, int k) {
  std::vector<double>& q = *m;
  for (int j = 0; j < k; ++j) {
    for (int pass = 0; pass < 2; ++pass) {
      std::vector<double> dots(j, 0.0);
      for (int i = 0; i < j; ++i) {
        for (int x = 0; x < d; ++x) dots[i] += q[x * k + i] * q[x * k + j];
      }
      for (int i = 0; i < j; ++i) {
        for (int x = 0; x < d; ++x) q[x * k + j] -= dots[i] * q[x * k + i];
      }
    }
    double nn = 0.0;
    for (int x = 0; x < d; ++x) nn += q[x * k + j] * q[x * k + j];
    const double inv = 1.0 / std::sqrt(nn);
    for (int x = 0; x < d; ++x) q[x * k + j] *= inv;
  }
}

// Q <- orth(A Q); a zero A Q gives the first k unit vectors.
void Refresh(OkDmdModel* m) {
  const int d = m->d, k = m->k;
  std::vector<double> aq(size_t(d) * k, 0.0);
  double total = 0.0;
  for (int r = 0; r < d; ++r) {
    for (int c = 0; c < k; ++c) {
      for (int x = 0; x < d; ++x) aq[r * k + c] += m->a[r * d + x] * m->q[x * k + c];
      total += std::abs(aq[r * k + c]);
    }
  }
  if (total == 0.0) {
    for (int r = 0; r < d; ++r) {
      for (int c = 0; c < k; ++c) aq[r * k + c] = r == c ? 1.0 : 0.0;
    }
  } else {
    GramSchmidt(&aq, d, k);
  }
  m->q = std::move(aq);
}

// G^-1 by Gauss-Jordan elimination with partial pivoting.
std::vector<double> Inverse(std::vector<double> g, int d) {
  std::vector<double> inv(size_t(d) * d, 0.0);
  for (int i = 0; i < d; ++i) inv[i * d + i] = 1.0;
  for (int c = 0; c < d; ++c) {
    int piv = c;
    for (int r = c + 1; r < d; ++r) {
      if (std::abs(g[r * d + c]) > std::abs(g[piv * d + c])) piv = r;
    }
    for (int x = 0; x < d; ++x) {
      std::swap(g[c * d + x], g[piv * d + x]);
      std::swap(inv[c * d + x], inv[piv * d + x]);
    }
    const double s = 1.0 / g[c * d + c];
    for (int x = 0; x < d; ++x) {
      g[c * d + x] *= s;
      inv[c * d + x] *= s;
    }
    for (int r = 0; r < d; ++r) {
      const double f = g[r * d + c];
      if (r == c || f == 0.0) continue;
      for (int x = 0; x < d; ++x) {
        g[r * d + x] -= f * g[c * d + x];
        inv[r * d + x] -= f * inv[c * d + x];
      }
    }
  }
  return inv;
}

}  // namespace

OkDmdModel OkDmdPrefill(const float* keys, int64_t T, int d, const OkDmdOptions& o,
                        uint64_t head_seed) {
  OkDmdModel m;
  m.d = d;
  m.k = std::min(o.k_modes, d);
  const size_t dd = size_t(d) * d;
  m.a.assign(dd, 0.0);
  m.p.assign(dd, 0.0);
  for (int i = 0; i < d; ++i) m.p[i * d + i] = 1.0 / o.sigma;
  if (T >= 2) {
    std::vector<double> g(dd, 0.0), yx(dd, 0.0);
    for (int64_t i = 0; i + 1 < T; ++i) {
      const float* x = keys + i * d;
      const float* y = x + d;
      for (int r = 0; r < d; ++r) {
        for (int c = 0; c < d; ++c) {
          g[r * d + c] += double(x[r]) * x[c];
          yx[r * d + c] += double(y[r]) * x[c];
        }
      }
    }
    for (int i = 0; i < d; ++i) g[i * d + i] += o.sigma;
    m.p = Inverse(std::move(g), d);
    for (int r = 0; r < d; ++r) {
      for (int c = 0; c < d; ++c) {
        double v = 0.0;
        for (int x = 0; x < d; ++x) v += yx[r * d + x] * m.p[x * d + c];
        m.a[r * d + c] = v;
      }
    }
  }
  m.q = Gaussian(d, m.k, head_seed);
  GramSchmidt(&m.q, d, m.k);
  for (int it = 0; it < o.power_iters; ++it) Refresh(&m);
  if (T >= 1) m.prev.assign(keys + (T - 1) * d, keys + T * d);
  return m;
}

void OkDmdPush(OkDmdModel* m, const float* key, const OkDmdOptions& o) {
  const int d = m->d;
  if (m->prev.empty()) {
    m->prev.assign(key, key + d);
    return;
  }
  std::vector<double> u(d, 0.0), g(d), e(d);
  double ku = 0.0;
  for (int r = 0; r < d; ++r) {
    for (int c = 0; c < d; ++c) u[r] += m->p[r * d + c] * m->prev[c];
    ku += m->prev[r] * u[r];
  }
  const double denom = o.lambda + ku + 1e-6;
  for (int r = 0; r < d; ++r) g[r] = u[r] / denom;
  std::vector<double> p(m->p);
  for (int r = 0; r < d; ++r) {
    for (int c = 0; c < d; ++c) p[r * d + c] = (m->p[r * d + c] - g[r] * u[c]) / o.lambda;
  }
  for (int r = 0; r < d; ++r) {
    for (int c = 0; c < d; ++c) m->p[r * d + c] = 0.5 * (p[r * d + c] + p[c * d + r]);
    m->p[r * d + r] += o.sigma;
  }
  for (int r = 0; r < d; ++r) {
    double ak = 0.0;
    for (int c = 0; c < d; ++c) ak += m->a[r * d + c] * m->prev[c];
    e[r] = key[r] - ak;
  }
  for (int r = 0; r < d; ++r) {
    for (int c = 0; c < d; ++c) m->a[r * d + c] += e[r] * g[c];
  }
  m->prev.assign(key, key + d);
  if (++m->updates % o.refresh_every == 0) Refresh(m);
}

std::vector<float> OkDmdScores(const OkDmdModel& m, const float* keys, int64_t count) {
  std::vector<float> out(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    double total = 0.0;
    for (int c = 0; c < m.k; ++c) {
      double proj = 0.0;
      for (int x = 0; x < m.d; ++x) proj += m.q[x * m.k + c] * keys[i * m.d + x];
      total += proj * proj;
    }
    out[i] = float(total);
  }
  return out;
}

std::vector<double> Projector(const std::vector<double>& q, int d, int k) {
  std::vector<double> pr(size_t(d) * d, 0.0);
  for (int r = 0; r < d; ++r) {
    for (int c = 0; c < d; ++c) {
      for (int j = 0; j < k; ++j) pr[r * d + c] += q[r * k + j] * q[c * k + j];
    }
  }
  return pr;
}

double NmseD(const std::vector<double>& got, const std::vector<double>& want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return den > 0.0 ? num / den : num;
}

double MinTopKOverlap(const std::vector<float>& a, const std::vector<float>& b, int64_t heads,
                      int64_t T, int64_t budget) {
  auto top = [&](const std::vector<float>& s, int64_t h) {
    std::vector<int64_t> idx(static_cast<size_t>(T));
    for (int64_t i = 0; i < T; ++i) idx[i] = i;
    const float* row = s.data() + h * T;
    std::stable_sort(idx.begin(), idx.end(),
                     [row](int64_t x, int64_t y) { return row[x] > row[y]; });
    idx.resize(size_t(budget));
    std::sort(idx.begin(), idx.end());
    return idx;
  };
  double worst = 1.0;
  for (int64_t h = 0; h < heads; ++h) {
    const std::vector<int64_t> ta = top(a, h), tb = top(b, h);
    std::vector<int64_t> both;
    std::set_intersection(ta.begin(), ta.end(), tb.begin(), tb.end(), std::back_inserter(both));
    worst = std::min(worst, budget > 0 ? double(both.size()) / double(budget) : 1.0);
  }
  return worst;
}

}  // namespace ref
}  // namespace kvc::cuda
