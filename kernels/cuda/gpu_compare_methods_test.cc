// The selection methods on the GPU (methods.h) against the CPU reference (kvc::cpu): SnapKV,
// DynamicKV, H2O and D2O scores, D2O and DynamicKV budgets, the selection, and D2O's merge, on
// cases with odd sizes, GQA groups and several layers and heads; normalised error with a per-op
// tolerance, a NaN check, and selected-set agreement.
//
// RefChecksMethods.* run everywhere: host mirrors of the device data layouts and kernels
// (written from the .cu files) against the CPU reference, and the host halves of the GPU
// algorithms (reduced candidate sets, marked-score selection, chunk planning).
// GpuCompareMethods.* skip, saying so, when there is no CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/attention_scores.h"
#include "kernels/cpu/budgets.h"
#include "kernels/cpu/d2o.h"
#include "kernels/cpu/methods_test_util.h"
#include "kernels/cuda/compare_util.h"
#include "kernels/cuda/methods.h"
#include "kernels/cuda/window_attention.h"

namespace kvc::cuda::test {
namespace {

// Scores: f32 GEMM scores (|s| < 20, d <= 32: absolute error ~1e-6) through f32 exp, summed in
// double: relative error per entry ~1e-6, Nmse ~1e-12; 1e-9 leaves three orders of margin.
constexpr double kTolMethodScores = 1e-9;
// D2O layer ratios: variances of those sums (relative error ~1e-6), through exp and a clamp.
constexpr double kTolD2oRatios = 1e-9;
// D2O merge: f32 cosines (d <= 32) weight the merged rows; no assignment may flip (the cases are
// random normal keys: near-ties within 1e-6 are rare enough at these sizes).
constexpr double kTolD2oMerge = 1e-9;
// Selections from GPU scores vs CPU scores: only near-ties (within rounding) may differ.
constexpr double kMinSelectionAgreement = 0.98;

struct MethodCase {
  std::string name;
  cpu::testing::CacheShape shape;
  int64_t head_budget = 8;
  uint64_t seed = 1;
};

std::vector<MethodCase> MethodCases() {
  std::vector<MethodCase> v;
  v.push_back({"odd_gqa3", {3, 2, 6, 24, 157, 13, 0}, 31, 11});
  v.push_back({"mha_with_fit", {2, 3, 3, 16, 61, 5, 9}, 12, 12});
  v.push_back({"deep_gqa4", {5, 2, 8, 32, 300, 32, 0}, 40, 13});
  v.push_back({"window_is_all", {2, 1, 2, 8, 7, 7, 0}, 3, 14});
  v.push_back({"fit_only", {3, 2, 4, 12, 83, 0, 17}, 9, 15});
  return v;
}

std::string MethodCaseName(const testing::TestParamInfo<MethodCase>& info) {
  return info.param.name;
}

cpu::PreparedCache MakeCache(const MethodCase& m) {
  return cpu::testing::RandomCache(m.shape, m.seed);
}

bool HasWindow(const MethodCase& m) { return m.shape.W > 0; }

// Fraction of the CPU's kept positions the GPU keeps too.
double Agreement(const cpu::Selection& got, const cpu::Selection& want) {
  int64_t same = 0, total = 0;
  for (size_t l = 0; l < want.size(); ++l) {
    for (size_t h = 0; h < want[l].size(); ++h) {
      const std::vector<int64_t>& a = want[l][h];
      const std::vector<int64_t>& b = got[l][h];
      std::vector<int64_t> both;
      std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(both));
      same += int64_t(both.size());
      total += int64_t(a.size());
    }
  }
  return total == 0 ? 1.0 : double(same) / double(total);
}

cpu::Budgets Uniform(int L, int H, int64_t b) {
  return cpu::Budgets(size_t(L), std::vector<int64_t>(size_t(H), b));
}

std::vector<float> Flatten(const cpu::LayerResults& r, bool keys) {
  std::vector<float> out;
  for (const auto& layer : r) {
    for (const cpu::HeadResult& h : layer) {
      const std::vector<float>& x = keys ? h.k : h.v;
      out.insert(out.end(), x.begin(), x.end());
    }
  }
  return out;
}

// ---- Host mirrors of the device code
// --------------------------------------------------------------

// window_attention.cc + attention_sums.cu for layer l: queries packed as UploadChunk does, scores
// of each chunk of plan_rows rows as the G GEMMs write them, lse as MaskedRowLse, column sums as
// ColumnSumsKernel (its first-visible-row start included). Returns [H, G, T].
std::vector<double> MirrorColumnSums(const cpu::PreparedCache& c, int l, int64_t rows,
                                     int64_t plan_rows) {
  const int64_t H = c.layout.n_kv_heads, G = c.layout.group(), T = c.T(), d = c.d();
  const Tensor& qw = *c.layers[size_t(l)].q_window;
  const int64_t W = qw.dim(1), first_pos = T - rows;
  std::vector<float> packed(size_t(H * G * rows * d));  // [b, g, r, x]
  for (int64_t j = 0; j < H * G; ++j) {
    std::copy_n(qw.data<float>() + (j * W + W - rows) * d, rows * d, packed.begin() + j * rows * d);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<double> colsum(size_t(H * G * T), 0.0);
  for (int64_t r0 = 0; r0 < rows; r0 += plan_rows) {
    const int64_t rc = std::min(plan_rows, rows - r0);
    std::vector<float> s(size_t(H * G * rc * T));
    std::vector<double> lse(size_t(H * G * rc));
    for (int64_t b = 0; b < H; ++b) {
      for (int64_t i = 0; i < G * rc; ++i) {  // row i = g * rc + rr
        const int64_t g = i / rc, rr = i % rc;
        const float* q = packed.data() + ((b * G + g) * rows + r0 + rr) * d;
        const int64_t vis = std::min(T, first_pos + r0 + rr + 1);
        double mx = -INFINITY, z = 0.0;
        for (int64_t t = 0; t < T; ++t) {
          double dot = 0.0;
          for (int64_t x = 0; x < d; ++x) dot += double(q[x]) * c.K(l, int(b))[t * d + x];
          s[size_t((b * G * rc + i) * T + t)] = scale * float(dot);
          if (t < vis) mx = std::max(mx, double(s[size_t((b * G * rc + i) * T + t)]));
        }
        for (int64_t t = 0; t < vis; ++t) z += std::exp(s[size_t((b * G * rc + i) * T + t)] - mx);
        lse[size_t(b * G * rc + i)] = mx + std::log(z);
      }
    }
    for (int64_t b = 0; b < H; ++b) {
      for (int64_t g = 0; g < G; ++g) {
        const int64_t base = (b * G + g) * rc;
        for (int64_t t = 0; t < T; ++t) {
          const int64_t first = t - first_pos - r0;
          double acc = 0.0;
          for (int64_t rr = std::max<int64_t>(first, 0); rr < rc; ++rr) {
            acc += std::exp(double(s[size_t((base + rr) * T + t)]) - lse[size_t(base + rr)]);
          }
          colsum[size_t((b * G + g) * T + t)] += acc;
        }
      }
    }
  }
  return colsum;
}

// The CPU's own column sums in the device layout [L * H, G, T].
std::vector<double> CpuColumnSums(const cpu::PreparedCache& c, int64_t rows) {
  const int L = c.layout.n_layers, NQ = c.layout.n_q_heads;
  const int64_t T = c.T();
  std::vector<double> out;
  for (int l = 0; l < L; ++l) {
    for (int j = 0; j < NQ; ++j) {
      const std::vector<double> s = cpu::WindowColumnSums(c, l, j, rows);
      out.insert(out.end(), s.begin(), s.begin() + T);
    }
  }
  return out;
}

// pooling.cu's PoolAt / PooledGroupMeanKernel, loop for loop.
std::vector<float> MirrorPooledGroupMean(const std::vector<double>& colsum, int64_t B, int64_t G,
                                         int64_t T, const PoolSpec& p) {
  std::vector<float> out(size_t(B * T));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      float acc = 0.f;
      for (int64_t g = 0; g < G; ++g) {
        const double* row = colsum.data() + (b * G + g) * T;
        float pooled = float(row[t] * p.row_scale);
        if (t < p.prefix) {
          const int64_t pad = p.kernel / 2;
          const int64_t lo = std::max<int64_t>(t - pad, 0);
          const int64_t hi = std::min<int64_t>(t - pad + p.kernel - 1, p.prefix - 1);
          double sum = 0.0;
          float m = -INFINITY;
          for (int64_t j = lo; j <= hi; ++j) {
            sum += double(float(row[j] * p.row_scale));
            m = std::max(m, float(row[j] * p.row_scale));
          }
          pooled = p.max_pool ? m : float(sum / double(p.kernel));
        }
        acc += pooled / float(G);
      }
      out[size_t(b * T + t)] = acc;
    }
  }
  return out;
}

std::vector<float> MirrorGroupSum(const std::vector<double>& colsum, int64_t B, int64_t G,
                                  int64_t T, bool in_double) {
  std::vector<float> out(size_t(B * T));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t < T; ++t) {
      double ds = 0.0;
      float fs = 0.f;
      for (int64_t g = 0; g < G; ++g) {
        ds += colsum[size_t((b * G + g) * T + t)];
        fs += float(colsum[size_t((b * G + g) * T + t)]);
      }
      out[size_t(b * T + t)] = in_double ? float(ds) : fs;
    }
  }
  return out;
}

double MirrorMinMaxVariance(const double* row, int64_t T) {
  const double lo = *std::min_element(row, row + T), hi = *std::max_element(row, row + T);
  const double range = hi - lo;
  if (!(range > 0.0)) return 0.0;
  double mean = 0.0, sq = 0.0;
  for (int64_t t = 0; t < T; ++t) mean += (row[t] - lo) / range;
  mean /= double(T);
  for (int64_t t = 0; t < T; ++t)
    sq += ((row[t] - lo) / range - mean) * ((row[t] - lo) / range - mean);
  return sq / double(T);
}

// select_topk.cu's RankValues + MarkForced, then the top-k order of topk.cuh (ref::TopK).
cpu::Selection MirrorSelect(const cpu::ScoreSet& s, const cpu::Budgets& budgets) {
  const int L = s.n_layers, H = s.n_kv_heads;
  const int64_t T = s.T;
  const std::vector<int32_t> prio = ForcedPriority(s.forced, T);
  std::vector<float> x(s.scores);
  std::vector<int64_t> counts;
  for (size_t i = 0; i < x.size(); ++i) {
    float v = std::isnan(x[i]) ? -INFINITY : x[i];
    if (v == 0.f) v = 0.f;
    if (v == INFINITY) v = FLT_MAX;
    x[i] = v;
  }
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) {
      const int64_t b = std::clamp<int64_t>(budgets[size_t(l)][size_t(h)], 0, T);
      counts.push_back(b);
      for (int64_t i = 0; i < std::min<int64_t>(b, int64_t(prio.size())); ++i) {
        x[size_t((int64_t(l) * H + h) * T + prio[size_t(i)])] = INFINITY;
      }
    }
  }
  const ref::Offsets out_off = ref::OffsetsFromCounts(counts);
  const std::vector<int32_t> idx = ref::TopK(x, ref::UniformOffsets(int64_t(L) * H, T), out_off);
  cpu::Selection sel(static_cast<size_t>(L),
                     std::vector<std::vector<int64_t>>(static_cast<size_t>(H)));
  for (int64_t b = 0; b < int64_t(L) * H; ++b) {
    sel[size_t(b / H)][size_t(b % H)].assign(idx.begin() + out_off[size_t(b)],
                                             idx.begin() + out_off[size_t(b + 1)]);
  }
  return sel;
}

// A ScoreSet with ties (values on a coarse grid) and a few NaNs.
cpu::ScoreSet TiedScores(int L, int H, int64_t T, uint64_t seed, std::vector<int64_t> forced) {
  cpu::ScoreSet s = cpu::ScoreSet::Zeros(L, H, T);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> grid(0, 20);
  for (size_t i = 0; i < s.scores.size(); ++i) s.scores[i] = 0.05f * float(grid(rng));
  for (size_t i = 3; i < s.scores.size(); i += 37) s.scores[i] = NAN;
  s.forced = std::move(forced);
  return s;
}

cpu::Budgets RaggedBudgets(int L, int H, int64_t T, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(0, T);
  cpu::Budgets b = Uniform(L, H, 0);
  for (auto& row : b) {
    for (int64_t& x : row) x = dist(rng);
  }
  b[0][0] = 0;
  if (H > 1) b[0][1] = T;
  return b;
}

// ---- RefChecksMethods: run everywhere
// ------------------------------------------------------------

class RefChecksMethods : public testing::TestWithParam<MethodCase> {};

TEST_P(RefChecksMethods, ColumnSumLayoutMatchesCpu) {
  const MethodCase& m = GetParam();
  if (!HasWindow(m)) GTEST_SKIP() << "no q_window in this case";
  const cpu::PreparedCache c = MakeCache(m);
  const int64_t W = m.shape.W;
  for (int64_t rows : {W, std::max<int64_t>(1, W - 2)}) {
    for (int64_t plan_rows : {rows, int64_t(3)}) {
      std::vector<double> got, want;
      for (int l = 0; l < m.shape.L; ++l) {
        const std::vector<double> g = MirrorColumnSums(c, l, rows, plan_rows);
        got.insert(got.end(), g.begin(), g.end());
      }
      want = CpuColumnSums(c, rows);
      const double nmse = ref::Nmse(std::vector<float>(got.begin(), got.end()),
                                    std::vector<float>(want.begin(), want.end()));
      EXPECT_LT(nmse, 1e-10) << "rows " << rows << " plan_rows " << plan_rows;
    }
  }
}

TEST_P(RefChecksMethods, EpiloguesMatchCpuScores) {
  const MethodCase& m = GetParam();
  if (!HasWindow(m)) GTEST_SKIP() << "no q_window in this case";
  const cpu::PreparedCache c = MakeCache(m);
  const int64_t B = int64_t(m.shape.L) * m.shape.H, G = c.layout.group(), T = c.T();
  const int64_t W = m.shape.W;
  const std::vector<double> colsum = CpuColumnSums(c, W);
  for (Pooling pooling : {Pooling::kAvg, Pooling::kMax}) {
    SnapKvOptions so;
    so.pooling = pooling;
    so.kernel = 5;
    const cpu::ScoreSet want = *cpu::ScoreSnapKv(c, so);
    const PoolSpec p{T - W, so.kernel, pooling == Pooling::kMax, 1.0 / double(W)};
    EXPECT_EQ(MirrorPooledGroupMean(colsum, B, G, T, p), want.scores);
    DynamicKvOptions dyo;
    dyo.pooling = pooling;
    dyo.window = int(W);
    const cpu::ScoreSet dyn = *cpu::ScoreDynamicKv(c, dyo);
    const PoolSpec pd{T - W, dyo.kernel, pooling == Pooling::kMax, 1.0};
    EXPECT_EQ(MirrorPooledGroupMean(colsum, B, G, T, pd), dyn.scores);
  }
  EXPECT_EQ(MirrorGroupSum(colsum, B, G, T, true), cpu::ScoreH2o(c, {}, m.head_budget)->scores);
  EXPECT_EQ(MirrorGroupSum(colsum, B, G, T, false), cpu::ScoreD2o(c, {}, m.head_budget)->scores);
  std::vector<double> sigma(size_t(m.shape.L), 0.0);
  for (int l = 0; l < m.shape.L; ++l) {
    for (int j = 0; j < m.shape.NQ; ++j) {
      sigma[size_t(l)] +=
          MirrorMinMaxVariance(colsum.data() + (int64_t(l) * m.shape.NQ + j) * T, T);
    }
    sigma[size_t(l)] /= m.shape.NQ;
  }
  const std::vector<double> want = *cpu::D2oLayerRatios(c, {});
  const std::vector<double> got = cpu::D2oRatiosFromSigma(sigma, {});
  ASSERT_EQ(got.size(), want.size());
  for (size_t l = 0; l < got.size(); ++l) EXPECT_NEAR(got[l], want[l], 1e-12);
}

TEST_P(RefChecksMethods, ReducedCandidateSetKeepsDynamicKvBudgets) {
  const MethodCase& m = GetParam();
  const int L = m.shape.L, H = m.shape.H;
  const int64_t T = m.shape.T;
  const cpu::ScoreSet s = TiedScores(L, H, T, m.seed, {});
  for (int64_t w : {int64_t(0), std::min<int64_t>(3, T - 1)}) {
    for (int64_t cap : {w + 1, w + 2, T / 3 + w}) {
      for (bool progressive : {false, true}) {
        DynamicKvOptions o;
        o.progressive = progressive;
        o.every_m = 2;
        o.radio_max = 1.5;
        const int64_t prefix = T - w;
        const int64_t size =
            std::clamp<int64_t>(int64_t(std::floor(o.radio_max * double(cap - w))), 0, prefix);
        if (cap <= w || size == 0) continue;
        std::vector<float> ranked(size_t(int64_t(L) * H * prefix));
        for (int64_t b = 0; b < int64_t(L) * H; ++b) {
          for (int64_t t = 0; t < prefix; ++t) {
            const float v = s.scores[size_t(b * T + t)];
            ranked[size_t(b * prefix + t)] = std::isnan(v) ? -INFINITY : v;
          }
        }
        const ref::Offsets top = ref::UniformOffsets(int64_t(L) * H, size);
        const std::vector<int32_t> idx =
            ref::TopK(ranked, ref::UniformOffsets(int64_t(L) * H, prefix), top);
        std::vector<float> values(idx.size());
        for (size_t i = 0; i < idx.size(); ++i) {
          values[i] = ranked[size_t(int64_t(i / size_t(size)) * prefix + idx[i])];
        }
        EXPECT_EQ(cpu::DynamicKvLayerBudgets(ReducedCandidateSet(L, H, values, size, w), o, w, cap),
                  cpu::DynamicKvLayerBudgets(s, o, w, cap))
            << "w " << w << " cap " << cap << " progressive " << progressive;
      }
    }
  }
}

TEST_P(RefChecksMethods, MarkedScoresReproduceSelectTopK) {
  const MethodCase& m = GetParam();
  const int L = m.shape.L, H = m.shape.H;
  const int64_t T = m.shape.T;
  const std::vector<std::vector<int64_t>> forced_sets = {{},
                                                         cpu::SinksAndRecent(T, 4, 5),
                                                         cpu::SinksAndRecent(T, 0, T / 2),
                                                         {1, 2, T - 1},
                                                         {0, 1, 2, T / 2, T / 2 + 1}};
  for (size_t f = 0; f < forced_sets.size(); ++f) {
    const cpu::ScoreSet s = TiedScores(L, H, T, m.seed + f, forced_sets[f]);
    for (const cpu::Budgets& b : {Uniform(L, H, m.head_budget), RaggedBudgets(L, H, T, m.seed)}) {
      EXPECT_EQ(MirrorSelect(s, b), cpu::SelectTopK(s, b)) << "forced set " << f;
    }
  }
}

TEST(RefChecksMethodsPlan, ColumnSumsPlanRespectsBounds) {
  struct Shape {
    int64_t L, H, G, T, d, rows;
    size_t bytes;
  };
  const std::vector<Shape> shapes = {{32, 8, 4, 32768, 128, 32, size_t(1) << 30},
                                     {32, 8, 4, 32768, 128, 4096, size_t(1) << 30},
                                     {3, 2, 3, 157, 24, 13, 4 * 2 * 3 * 157 * 3},
                                     {1, 70000, 1, 10, 4, 2, size_t(1) << 30},
                                     {4, 2, 2, 1 << 20, 128, 8, 1}};
  for (const Shape& s : shapes) {
    const ColumnSumsPlan p = PlanColumnSums(s.L, s.H, s.G, s.T, s.d, s.rows, s.bytes);
    EXPECT_GE(p.rows, 1);
    EXPECT_LE(p.rows, s.rows);
    EXPECT_GE(p.layers, 1);
    EXPECT_LE(p.layers, s.L);
    EXPECT_TRUE(p.layers == 1 || p.layers * s.H <= 65535);
    EXPECT_LE(s.G * p.rows, INT_MAX);
    const size_t score_bytes = size_t(4 * p.layers * s.H * s.G * p.rows * s.T);
    EXPECT_TRUE(score_bytes <= s.bytes || (p.layers == 1 && p.rows == 1)) << score_bytes;
  }
  const ColumnSumsPlan small = PlanColumnSums(3, 2, 3, 157, 24, 13, 4 * 2 * 3 * 157 * 3);
  EXPECT_EQ(small.rows, 3);
  EXPECT_EQ(small.layers, 1);
}

INSTANTIATE_TEST_SUITE_P(Cases, RefChecksMethods, testing::ValuesIn(MethodCases()), MethodCaseName);

// ---- GpuCompareMethods: GPU against the CPU reference
// ---------------------------------------------

#define EXPECT_SCORES_CLOSE(got, want)                                                  \
  do {                                                                                  \
    EXPECT_TRUE(ref::AllFinite((got).scores)) << "NaN or Inf in GPU scores";            \
    const double nmse_ = ref::Nmse((got).scores, (want).scores);                        \
    EXPECT_LT(nmse_, kTolMethodScores) << "scores nmse " << nmse_;                      \
    EXPECT_EQ((got).forced, (want).forced);                                             \
    EXPECT_GE(Agreement(cpu::SelectTopK(got, budgets), cpu::SelectTopK(want, budgets)), \
              kMinSelectionAgreement);                                                  \
  } while (0)

class GpuCompareMethods : public testing::TestWithParam<MethodCase> {
 protected:
  // Default chunking, and a tiny budget that forces row chunks of 3 and one layer per chunk.
  std::vector<GpuMethodsOptions> Chunkings() const {
    const cpu::testing::CacheShape& s = GetParam().shape;
    GpuMethodsOptions tiny;
    tiny.score_bytes = size_t(4) * s.H * (s.NQ / s.H) * s.T * 3;
    tiny.merge_bytes = 1;
    return {GpuMethodsOptions{}, tiny};
  }
};

TEST_P(GpuCompareMethods, SnapKvAndDynamicKvScores) {
  KVC_REQUIRE_GPU(ctx);
  const MethodCase& m = GetParam();
  if (!HasWindow(m)) GTEST_SKIP() << "no q_window in this case";
  const cpu::PreparedCache c = MakeCache(m);
  const cpu::Budgets budgets = Uniform(m.shape.L, m.shape.H, m.head_budget);
  for (const GpuMethodsOptions& mo : Chunkings()) {
    for (Pooling pooling : {Pooling::kAvg, Pooling::kMax}) {
      SnapKvOptions so;
      so.pooling = pooling;
      so.window = int(std::max<int64_t>(1, m.shape.W - 2));
      Result<cpu::ScoreSet> got = ScoreSnapKvGpu(c, so, ctx, mo);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_SCORES_CLOSE(*got, *cpu::ScoreSnapKv(c, so));
      DynamicKvOptions dyo;
      dyo.pooling = pooling;
      Result<cpu::ScoreSet> dyn = ScoreDynamicKvGpu(c, dyo, ctx, mo);
      ASSERT_TRUE(dyn.ok()) << dyn.status().ToString();
      EXPECT_SCORES_CLOSE(*dyn, *cpu::ScoreDynamicKv(c, dyo));
    }
  }
}

TEST_P(GpuCompareMethods, H2oAndD2oScores) {
  KVC_REQUIRE_GPU(ctx);
  const MethodCase& m = GetParam();
  const cpu::PreparedCache c = MakeCache(m);
  const cpu::Budgets budgets = Uniform(m.shape.L, m.shape.H, m.head_budget);
  for (const GpuMethodsOptions& mo : Chunkings()) {
    Result<cpu::ScoreSet> h2o = ScoreH2oGpu(c, {}, m.head_budget, ctx, mo);
    ASSERT_TRUE(h2o.ok()) << h2o.status().ToString();
    EXPECT_SCORES_CLOSE(*h2o, *cpu::ScoreH2o(c, {}, m.head_budget));
    if (!HasWindow(m)) continue;
    Result<cpu::ScoreSet> d2o = ScoreD2oGpu(c, {}, m.head_budget, ctx, mo);
    ASSERT_TRUE(d2o.ok()) << d2o.status().ToString();
    EXPECT_SCORES_CLOSE(*d2o, *cpu::ScoreD2o(c, {}, m.head_budget));
  }
}

TEST_P(GpuCompareMethods, D2oAndDynamicKvBudgets) {
  KVC_REQUIRE_GPU(ctx);
  const MethodCase& m = GetParam();
  if (!HasWindow(m)) GTEST_SKIP() << "no q_window in this case";
  const cpu::PreparedCache c = MakeCache(m);
  Result<std::vector<double>> ratios = D2oLayerRatiosGpu(c, {}, ctx);
  ASSERT_TRUE(ratios.ok()) << ratios.status().ToString();
  const std::vector<double> want = *cpu::D2oLayerRatios(c, {});
  EXPECT_LT(ref::Nmse({ratios->begin(), ratios->end()}, {want.begin(), want.end()}), kTolD2oRatios);
  for (Method method : {Method::kD2o, Method::kDynamicKv, Method::kPyramidKv}) {
    CompactionSpec spec;
    spec.method = method;
    const cpu::ScoreSet scores = *cpu::ScoreDynamicKv(c, spec.dynamickv);
    Result<cpu::Budgets> got = AllocateBudgetsGpu(c, scores, spec, m.head_budget, ctx);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    const cpu::Budgets cpu_b = *cpu::AllocateBudgets(c, scores, spec, m.head_budget);
    EXPECT_EQ(cpu::testing::Total(*got), cpu::testing::Total(cpu_b)) << MethodName(method);
    if (method == Method::kD2o) {  // ratios within rounding: a unit may move between heads
      for (size_t l = 0; l < cpu_b.size(); ++l) {
        for (size_t h = 0; h < cpu_b[l].size(); ++h)
          EXPECT_LE(std::abs((*got)[l][h] - cpu_b[l][h]), 1);
      }
    } else {  // same scores in: the same integers out
      EXPECT_EQ(*got, cpu_b) << MethodName(method);
    }
  }
}

TEST_P(GpuCompareMethods, SelectTopKMatchesCpuExactly) {
  KVC_REQUIRE_GPU(ctx);
  const MethodCase& m = GetParam();
  const int L = m.shape.L, H = m.shape.H;
  const int64_t T = m.shape.T;
  for (const std::vector<int64_t>& forced :
       {std::vector<int64_t>{}, cpu::SinksAndRecent(T, 4, 5), cpu::SinksAndRecent(T, 0, T / 2)}) {
    const cpu::ScoreSet s = TiedScores(L, H, T, m.seed, forced);
    for (const cpu::Budgets& b : {Uniform(L, H, m.head_budget), RaggedBudgets(L, H, T, m.seed)}) {
      Result<cpu::Selection> got = SelectTopKGpu(s, b, ctx);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(*got, cpu::SelectTopK(s, b));
    }
  }
}

TEST_P(GpuCompareMethods, D2oMergeMatchesCpu) {
  KVC_REQUIRE_GPU(ctx);
  const MethodCase& m = GetParam();
  if (!HasWindow(m)) GTEST_SKIP() << "no q_window in this case";
  const cpu::PreparedCache c = MakeCache(m);
  CompactionSpec spec;
  spec.method = Method::kD2o;
  const cpu::ScoreSet scores = *cpu::ScoreD2o(c, spec.d2o, m.head_budget);
  const cpu::Selection sel =
      cpu::SelectTopK(scores, *cpu::AllocateBudgets(c, scores, spec, m.head_budget));
  for (const GpuMethodsOptions& mo : Chunkings()) {
    for (bool merge : {true, false}) {
      D2oOptions o;
      o.merge = merge;
      std::vector<cpu::D2oThreshold> cpu_tau, gpu_tau;
      for (int round = 0; round < 2; ++round) {  // the second round uses the EMA
        const cpu::LayerResults want = *cpu::D2oMergeRound(c, sel, o, &cpu_tau);
        Result<cpu::LayerResults> got = D2oMergeRoundGpu(c, sel, o, &gpu_tau, ctx, mo);
        ASSERT_TRUE(got.ok()) << got.status().ToString();
        for (size_t l = 0; l < want.size(); ++l) {
          for (size_t h = 0; h < want[l].size(); ++h) {
            EXPECT_EQ((*got)[l][h].positions, want[l][h].positions);
            EXPECT_EQ((*got)[l][h].beta, want[l][h].beta);
          }
        }
        const std::vector<float> gk = Flatten(*got, true), gv = Flatten(*got, false);
        EXPECT_TRUE(ref::AllFinite(gk) && ref::AllFinite(gv));
        EXPECT_LT(ref::Nmse(gk, Flatten(want, true)), merge ? kTolD2oMerge : 1e-30);
        EXPECT_LT(ref::Nmse(gv, Flatten(want, false)), merge ? kTolD2oMerge : 1e-30);
        ASSERT_EQ(gpu_tau.size(), cpu_tau.size());
        for (size_t l = 0; l < cpu_tau.size(); ++l) {
          EXPECT_EQ(gpu_tau[l].initialised(), cpu_tau[l].initialised());
          EXPECT_NEAR(gpu_tau[l].tau(), cpu_tau[l].tau(), 1e-6 * std::abs(cpu_tau[l].tau()) + 1e-9);
        }
      }
    }
  }
}

TEST_P(GpuCompareMethods, ErrorsMatchCpu) {
  KVC_REQUIRE_GPU(ctx);
  const MethodCase& m = GetParam();
  cpu::PreparedCache c = MakeCache(m);
  for (cpu::PreparedLayer& layer : c.layers) layer.q_window.reset();
  const Status want = cpu::ScoreSnapKv(c, {}).status();
  const Status got = ScoreSnapKvGpu(c, {}, ctx).status();
  EXPECT_EQ(got.code(), want.code());
  EXPECT_EQ(got.ToString(), want.ToString());
  EXPECT_EQ(ScoreD2oGpu(c, {}, 4, ctx).status().ToString(),
            cpu::ScoreD2o(c, {}, 4).status().ToString());
  for (cpu::PreparedLayer& layer : c.layers) layer.q_fit.reset();
  EXPECT_EQ(ScoreH2oGpu(c, {}, 4, ctx).status().ToString(),
            cpu::ScoreH2o(c, {}, 4).status().ToString());
  const cpu::Selection bad(size_t(m.shape.L) + 1);
  EXPECT_EQ(D2oMergeGpu(c, bad, {}, ctx).status().ToString(),
            cpu::D2oMerge(c, bad, {}).status().ToString());
}

INSTANTIATE_TEST_SUITE_P(Cases, GpuCompareMethods, testing::ValuesIn(MethodCases()),
                         MethodCaseName);

}  // namespace
}  // namespace kvc::cuda::test
