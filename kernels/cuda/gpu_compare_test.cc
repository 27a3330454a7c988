// GPU side of the comparison harness: every op of kernels/cuda on every case, against the CPU
// reference on identical inputs (normalised error with a per-op tolerance, plus a NaN check).
// Skips, saying so, when there is no CUDA device.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cuda/am_fit.h"
#include "kernels/cuda/compare_util.h"
#include "kernels/cuda/gather.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/lstsq.cuh"
#include "kernels/cuda/nnls.cuh"
#include "kernels/cuda/softmax.cuh"
#include "kernels/cuda/topk.cuh"

namespace kvc::cuda::test {
namespace {

#define EXPECT_CLOSE(got, want, tol)                                          \
  do {                                                                        \
    const double nmse_ = ref::Nmse((got), (want));                            \
    EXPECT_LT(nmse_, (tol)) << #got << " vs " << #want << ": nmse " << nmse_; \
  } while (0)

class GpuCompare : public testing::TestWithParam<AmCase> {};

TEST_P(GpuCompare, ScoresAndOutputs) {
  KVC_REQUIRE_GPU(ctx);
  const CaseData d = MakeCaseData(GetParam());
  const int64_t B = d.c.batch, n = d.c.n(), T = d.c.tokens, hd = d.c.head_dim;
  const float scale = float(1.0 / std::sqrt(double(hd)));
  DeviceBuffer q = ToDevice(d.p.q), k = ToDevice(d.p.k), v = ToDevice(d.p.v);
  DeviceBuffer s = ToDevice(ref::Vec(size_t(B * n * T)));
  for (MathMode mode : {MathMode::kF32, MathMode::kTf32}) {
    ASSERT_TRUE(AttentionScores(ctx.cublas(), q.as<float>(), k.as<float>(), s.as<float>(), B, n, T,
                                hd, scale, mode)
                    .ok());
    EXPECT_CLOSE(ToHost(s, d.s.size()), d.s, mode == MathMode::kF32 ? kTolProducts : kTolTf32);
  }
  const ref::Vec p = ref::RowExpShift(d.s, d.full, n, nullptr, d.stats.lse);
  const ref::Vec y = ref::AttentionOutputs(p, d.p.v, B, n, T, hd);
  DeviceBuffer dp = ToDevice(p), dy = ToDevice(ref::Vec(y.size()));
  ASSERT_TRUE(AttentionOutputs(ctx.cublas(), dp.as<float>(), v.as<float>(), dy.as<float>(), B, n, T,
                               hd, MathMode::kF32)
                  .ok());
  EXPECT_CLOSE(ToHost(dy, y.size()), y, kTolProducts);
}

TEST_P(GpuCompare, RowStatsSoftmaxAndColumnScores) {
  KVC_REQUIRE_GPU(ctx);
  const CaseData d = MakeCaseData(GetParam());
  const int64_t B = d.c.batch, n = d.c.n();
  RaggedLayout full = Layout(d.full);
  DeviceBuffer s = ToDevice(d.s), mx = ToDevice(ref::Vec(size_t(B * n)));
  DeviceBuffer lse = ToDevice(ref::Vec(size_t(B * n)));
  DeviceBuffer score = ToDevice(ref::Vec(d.col_scores.size()));
  ASSERT_TRUE(
      RowStats(s.as<float>(), nullptr, full, n, mx.as<float>(), lse.as<float>(), ctx.stream())
          .ok());
  EXPECT_CLOSE(ToHost(mx, size_t(B * n)), d.stats.max, kTolSoftmax);
  EXPECT_CLOSE(ToHost(lse, size_t(B * n)), d.stats.lse, kTolSoftmax);
  ASSERT_TRUE(SoftmaxColumnScores(s.as<float>(), full, n, lse.as<float>(), score.as<float>(),
                                  ctx.pool(), ctx.stream())
                  .ok());
  EXPECT_CLOSE(ToHost(score, d.col_scores.size()), d.col_scores, kTolSoftmax);
  EXPECT_CLOSE(ToHost(s, d.s.size()), ref::RowExpShift(d.s, d.full, n, nullptr, d.stats.lse),
               kTolSoftmax);
  DeviceBuffer z = ToDevice(ref::Vec(size_t(B * n)));
  ASSERT_TRUE(RowMass(lse.as<float>(), mx.as<float>(), B * n, z.as<float>(), ctx.stream()).ok());
  EXPECT_CLOSE(ToHost(z, size_t(B * n)), d.z, kTolSoftmax);
}

TEST_P(GpuCompare, RaggedSoftmaxWithColumnBias) {
  KVC_REQUIRE_GPU(ctx);
  const CaseData d = MakeCaseData(GetParam());
  const int64_t B = d.c.batch, n = d.c.n();
  ref::Vec bias = NormalVector(size_t(d.kept.back()), d.c.seed + 7);
  RaggedLayout kept = Layout(d.kept);
  const ref::RowStatsResult st = ref::RowStats(d.sc, d.kept, n, &bias);
  const ref::Vec x = ref::RowExpShift(d.sc, d.kept, n, &bias, st.lse);
  DeviceBuffer sc = ToDevice(d.sc), db = ToDevice(bias), out = ToDevice(ref::Vec(d.sc.size()));
  DeviceBuffer lse = ToDevice(ref::Vec(size_t(B * n)));
  ASSERT_TRUE(RowSoftmax(sc.as<float>(), out.as<float>(), db.as<float>(), kept, n, lse.as<float>(),
                         ctx.stream())
                  .ok());
  EXPECT_CLOSE(ToHost(out, x.size()), x, kTolSoftmax);
  const ref::Vec got_lse = ToHost(lse, size_t(B * n));
  for (int64_t b = 0; b < B; ++b) {  // heads without keys: lse = -inf, compared exactly
    for (int64_t i = 0; i < n; ++i) {
      if (d.kept[b + 1] == d.kept[b]) {
        EXPECT_EQ(got_lse[b * n + i], -INFINITY);
      } else {
        EXPECT_NEAR(got_lse[b * n + i], st.lse[b * n + i], 1e-4);
      }
    }
  }
}

TEST_P(GpuCompare, TopKAndGatherAreExact) {
  KVC_REQUIRE_GPU(ctx);
  const CaseData d = MakeCaseData(GetParam());
  const int64_t T = d.c.tokens, hd = d.c.head_dim;
  RaggedLayout full = Layout(d.full), kept = Layout(d.kept);
  DeviceBuffer scores = ToDevice(d.col_scores);
  DeviceBuffer idx = ToDeviceInt(std::vector<int32_t>(d.idx.size()));
  ASSERT_TRUE(
      SegmentedTopK(scores.as<float>(), full, kept, idx.as<int32_t>(), ctx.pool(), ctx.stream())
          .ok());
  EXPECT_EQ(ToHostInt(idx, d.idx.size()), d.idx);
  DeviceBuffer k = ToDevice(d.p.k), out = ToDevice(ref::Vec(size_t(d.kept.back() * hd)));
  ASSERT_TRUE(
      GatherRows(k.as<float>(), T, hd, idx.as<int32_t>(), kept, out.as<float>(), ctx.stream())
          .ok());
  EXPECT_EQ(ToHost(out, size_t(d.kept.back() * hd)), ref::GatherRows(d.p.k, T, hd, d.idx, d.kept));
}

TEST_P(GpuCompare, NnlsProjectedGradient) {
  KVC_REQUIRE_GPU(ctx);
  const CaseData d = MakeCaseData(GetParam());
  const int64_t B = d.c.batch, n = d.c.n(), total = d.kept.back();
  NnlsOptions o;
  RaggedLayout kept = Layout(d.kept);
  DeviceBuffer phi = ToDevice(d.phi), z = ToDevice(d.z), w = ToDevice(ref::Vec(size_t(total)));
  ASSERT_TRUE(NnlsUniformInit(phi.as<float>(), kept, n, z.as<float>(), o.lower, o.upper,
                              w.as<float>(), ctx.pool(), ctx.stream())
                  .ok());
  const ref::Vec w0 = ref::NnlsUniformInit(d.phi, d.kept, n, d.z, o.lower, o.upper);
  EXPECT_CLOSE(ToHost(w, size_t(total)), w0, kTolNnls);
  DeviceBuffer lip = ToDevice(ref::Vec(size_t(B))), obj = ToDevice(ref::Vec(size_t(B)));
  DeviceBuffer w0d = ToDevice(w0);  // same start on both sides
  ASSERT_TRUE(NnlsProjectedGradient(phi.as<float>(), kept, n, z.as<float>(), o, w0d.as<float>(),
                                    ctx.pool(), ctx.stream(), lip.as<float>())
                  .ok());
  ref::Vec want_lip;
  const ref::Vec want = ref::NnlsProjectedGradient(d.phi, d.kept, n, d.z, o, w0, &want_lip);
  EXPECT_CLOSE(ToHost(w0d, size_t(total)), want, kTolNnls);
  EXPECT_CLOSE(ToHost(lip, size_t(B)), want_lip, kTolNnls);
  ASSERT_TRUE(NnlsObjective(phi.as<float>(), kept, n, z.as<float>(), w0d.as<float>(),
                            obj.as<float>(), ctx.pool(), ctx.stream())
                  .ok());
  const std::vector<double> f = ref::NnlsObjective(d.phi, d.kept, n, d.z, want);
  const ref::Vec got_f = ToHost(obj, size_t(B));
  for (int64_t b = 0; b < B; ++b) {  // relative to 0.5 ||z||^2: a perfect fit has f ~ 0
    double zz = 0;
    for (int64_t i = 0; i < n; ++i) zz += 0.5 * double(d.z[b * n + i]) * d.z[b * n + i];
    EXPECT_NEAR(got_f[b], f[b], 1e-5 * zz) << "head " << b;
  }
}

TEST_P(GpuCompare, RidgeLeastSquaresBothWidths) {
  KVC_REQUIRE_GPU(ctx);
  const AmCase& c = GetParam();
  const int64_t rows = c.n();
  const ref::Offsets off = ref::OffsetsFromCounts(c.budgets);
  const ref::Vec a = NormalVector(size_t(rows * off.back()), c.seed + 200);
  RaggedLayout kept = Layout(off);
  DeviceBuffer da = ToDevice(a);
  LstsqOptions o;
  o.min_relative_ridge = 1e-3;
  for (int64_t r : {int64_t{1}, c.head_dim}) {
    const ref::Vec bm = NormalVector(size_t(c.batch * rows * r), c.seed + 201 + r);
    DeviceBuffer db = ToDevice(bm), dc = ToDevice(ref::Vec(size_t(off.back() * r)));
    LstsqReport report;
    Status st =
        RidgeLeastSquares(ctx.cublas(), ctx.cusolver(), da.as<float>(), kept, rows, db.as<float>(),
                          r, o, dc.as<float>(), ctx.pool(), ctx.stream(), &report);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_CLOSE(ToHost(dc, size_t(off.back() * r)), ref::RidgeLeastSquares(a, off, rows, bm, r, o),
                 kTolLstsq);
    for (int64_t h = 0; h < c.batch; ++h) {
      EXPECT_EQ(report.retries[h], 0) << "head " << h;
      EXPECT_EQ(report.row_form[h], rows < c.budgets[h]) << "head " << h;
    }
  }
}

TEST_P(GpuCompare, AmFitWithFixedSelectionMatchesReference) {
  KVC_REQUIRE_GPU(ctx);
  const CaseData d = MakeCaseData(GetParam());
  AmFitHostProblem p = d.p;
  p.selector = d.col_scores;  // identical selection input on both sides
  const AmFitOptions o = StrictAmOptions();
  Result<AmFitHostResult> got = AmFitOnHost(p, o, ctx);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  const AmFitHostResult want = ref::AmFit(p, o);
  EXPECT_EQ(got->offsets, want.offsets);
  EXPECT_EQ(got->indices, want.indices);
  EXPECT_EQ(got->keys, want.keys);
  EXPECT_CLOSE(got->scores, want.scores, kTolSoftmax);
  EXPECT_CLOSE(Exp(got->beta), Exp(want.beta), kTolAmBeta);
  EXPECT_CLOSE(got->values, want.values, kTolAmValues);
}

// The CPU front's value prior (ridge towards the kept values), with a ridge large enough to
// move the values visibly away from the plain least-squares ones.
TEST_P(GpuCompare, AmFitValuesTowardKeptMatchesReference) {
  KVC_REQUIRE_GPU(ctx);
  const CaseData d = MakeCaseData(GetParam());
  AmFitHostProblem p = d.p;
  p.selector = d.col_scores;
  AmFitOptions o = StrictAmOptions();
  o.values_toward_kept = true;
  o.values_lstsq.ridge = 1e-2;
  Result<AmFitHostResult> got = AmFitOnHost(p, o, ctx);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  const AmFitHostResult want = ref::AmFit(p, o);
  EXPECT_EQ(got->indices, want.indices);
  EXPECT_CLOSE(got->values, want.values, kTolAmValues);
}

TEST_P(GpuCompare, AmFitDefaultMatchesReferenceFidelity) {
  KVC_REQUIRE_GPU(ctx);
  const AmCase& c = GetParam();
  const AmFitHostProblem p = MakeProblem(c);
  Result<AmFitHostResult> got = AmFitOnHost(p, AmFitOptions{}, ctx);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(ref::AllFinite(got->beta) && ref::AllFinite(got->values));
  const AmFitHostResult want = ref::AmFit(p, AmFitOptions{});
  const int64_t n_eval = 64;
  const ref::Vec qe = MakeHeldOutQueries(c, n_eval);
  const ref::Fidelity fg = ref::EvaluateFidelity(qe, n_eval, p, *got);
  const ref::Fidelity fc = ref::EvaluateFidelity(qe, n_eval, p, want);
  std::printf("[ %s ] held-out cosine GPU %.5f CPU %.5f; rel-L2 %.4f / %.4f\n", c.name.c_str(),
              fg.cosine, fc.cosine, fg.rel_l2, fc.rel_l2);
  EXPECT_NEAR(fg.cosine, fc.cosine, kTolFidelityCosine);
  EXPECT_NEAR(fg.rel_l2, fc.rel_l2, 10 * kTolFidelityCosine);
}

TEST_P(GpuCompare, AmFitTf32StaysClose) {
  KVC_REQUIRE_GPU(ctx);
  const AmCase& c = GetParam();
  const AmFitHostProblem p = MakeProblem(c);
  AmFitOptions o;
  o.score_math = MathMode::kTf32;
  Result<AmFitHostResult> got = AmFitOnHost(p, o, ctx);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(ref::AllFinite(got->beta) && ref::AllFinite(got->values));
  const int64_t n_eval = 64;
  const ref::Vec qe = MakeHeldOutQueries(c, n_eval);
  const ref::Fidelity fg = ref::EvaluateFidelity(qe, n_eval, p, *got);
  const ref::Fidelity fc = ref::EvaluateFidelity(qe, n_eval, p, ref::AmFit(p, AmFitOptions{}));
  EXPECT_NEAR(fg.cosine, fc.cosine, 5 * kTolFidelityCosine);
}

INSTANTIATE_TEST_SUITE_P(Cases, GpuCompare, testing::ValuesIn(ComparisonCases()), CaseName);

TEST(GpuCompareOps, TopKTiesGoToTheLowerPosition) {
  KVC_REQUIRE_GPU(ctx);
  const ref::Vec s = {1, 3, 3, 2, 3, 0, 5, 5, 5, 5};
  RaggedLayout seg = Layout({0, 6, 10}), out = Layout({0, 2, 5});
  DeviceBuffer ds = ToDevice(s), idx = ToDeviceInt(std::vector<int32_t>(5));
  ASSERT_TRUE(
      SegmentedTopK(ds.as<float>(), seg, out, idx.as<int32_t>(), ctx.pool(), ctx.stream()).ok());
  EXPECT_EQ(ToHostInt(idx, 5), ref::TopK(s, {0, 6, 10}, {0, 2, 5}));
}

TEST(GpuCompareOps, EntryPointsRejectBadShapes) {
  KVC_REQUIRE_GPU(ctx);
  RaggedLayout seg = Layout({0, 4}), too_many = Layout({0, 5});
  DeviceBuffer s = ToDevice(ref::Vec(4)), idx = ToDeviceInt(std::vector<int32_t>(5));
  EXPECT_TRUE(
      SegmentedTopK(s.as<float>(), seg, too_many, idx.as<int32_t>(), ctx.pool(), ctx.stream())
          .IsInvalidArgument());
  EXPECT_TRUE(RowStats(s.as<float>(), nullptr, seg, 0, s.as<float>(), s.as<float>(), ctx.stream())
                  .IsInvalidArgument());
  AmFitProblem p;
  p.batch = 1;
  p.n = 1;
  p.tokens = 4;
  p.head_dim = 2;
  p.q = p.k = p.v = s.as<float>();
  p.budgets = {5};
  EXPECT_TRUE(AmFit(p, AmFitOptions{}, ctx).status().IsInvalidArgument());
}

}  // namespace
}  // namespace kvc::cuda::test
