// OK-DMD in the comparison harness: RefChecksOkDmd.* (CPU only, always run) check that
// kvc::cpu::ScoreOkDmd / OkDmdStream compute design §4's model, against the loop reference of
// reference_okdmd.h; GpuCompareOkDmd.* run okdmd.h on the GPU against the CPU implementation on the
// same cases (skipped with "no CUDA device" when there is none).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>

#include "kernels/cpu/attention_scores.h"
#include "kernels/cpu/okdmd.h"
#include "kernels/cuda/compare_util.h"
#include "kernels/cuda/okdmd.h"
#include "kernels/cuda/reference_okdmd.h"

namespace kvc::cuda::test {
namespace {

// Scores, GPU or loop reference against the CPU: the fit is f64 on every side (reordered sums,
// other factorisations); what is left is the f32 projection K Q, relative error ~sqrt(d) 2^-24
// per projection. Measured here (RefChecks): loop reference (f64 projections) against the CPU
// (f32 projections) at Nmse <= 2e-14 on every case; the GPU's f32 projections differ from the
// CPU's by the same order, so 1e-10 leaves four orders of margin.
constexpr double kTolOkDmdScores = 1e-10;
// f64 state (A, P, the projector Q Q^T) after the prefill and after streaming updates. G is
// ill-conditioned when T < d (eigenvalues sigma = 1e-5 next to ~T): there Gauss-Jordan and
// Cholesky give P's that differ by Nmse 5e-16 (tokens_below_d); elsewhere <= 1e-19.
constexpr double kTolOkDmdState = 1e-10;
// Share of the top T/8 positions both sides keep (a near-tie at the cut may swap one position).
constexpr double kMinTopKOverlap = 0.99;

class RefChecksOkDmd : public testing::TestWithParam<OkDmdCase> {};
class GpuCompareOkDmd : public testing::TestWithParam<OkDmdCase> {};

std::string OkDmdCaseName(const testing::TestParamInfo<OkDmdCase>& info) { return info.param.name; }

std::string Sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.3g", v);
  return buf;
}

int64_t TopBudget(const OkDmdCase& c) { return std::max<int64_t>(1, c.tokens / 8); }

// Rows [r0, r1) of every head of keys [batch, T, d].
std::vector<float> SliceRows(const std::vector<float>& keys, int64_t batch, int64_t T, int d,
                             int64_t r0, int64_t r1) {
  std::vector<float> out;
  for (int64_t b = 0; b < batch; ++b) {
    out.insert(out.end(), keys.begin() + (b * T + r0) * d, keys.begin() + (b * T + r1) * d);
  }
  return out;
}

std::vector<double> Slice(const std::vector<double>& v, size_t per, int64_t b) {
  return std::vector<double>(v.begin() + b * per, v.begin() + (b + 1) * per);
}

// The CPU streams of a case: prefill on the first prefill_tokens keys, then stream_steps pushes.
std::vector<cpu::OkDmdStream> CpuStreams(const OkDmdCase& c, const cpu::PreparedCache& pc) {
  std::vector<cpu::OkDmdStream> out;
  const std::vector<uint64_t> seeds = HeadSeeds(c);
  for (int l = 0; l < c.layers; ++l) {
    for (int h = 0; h < c.heads; ++h) {
      Result<cpu::OkDmdStream> s = cpu::OkDmdStream::Prefill(
          pc.K(l, h), c.prefill_tokens, c.head_dim, c.options, seeds[l * c.heads + h]);
      EXPECT_TRUE(s.ok()) << s.status().ToString();
      for (int64_t t = 0; t < c.stream_steps; ++t) {
        s->Push(pc.K(l, h) + (c.prefill_tokens + t) * c.head_dim);
      }
      out.push_back(std::move(*s));
    }
  }
  return out;
}

TEST_P(RefChecksOkDmd, CaseIsWellPosed) {
  const OkDmdCase& c = GetParam();
  const int k = std::min(c.options.k_modes, c.head_dim);
  // T - 1 >= k: A has rank >= k, so no basis column is set by rounding alone.
  EXPECT_TRUE(c.tokens <= 1 || c.tokens - 1 >= k) << "T " << c.tokens << ", k " << k;
  if (c.stream_steps > 0) {
    EXPECT_LE(c.prefill_tokens + c.stream_steps, c.tokens);
    EXPECT_TRUE(c.first_push >= 0 && c.first_push <= c.stream_steps);
    EXPECT_TRUE(c.prefill_tokens == 0 || c.prefill_tokens - 1 >= k);
  }
}

TEST_P(RefChecksOkDmd, CpuScoreOkDmdMatchesLoopReference) {
  const OkDmdCase& c = GetParam();
  const cpu::PreparedCache pc = MakeOkDmdCache(c);
  Result<cpu::ScoreSet> cpu_scores = cpu::ScoreOkDmd(pc, c.options, c.seed);
  ASSERT_TRUE(cpu_scores.ok()) << cpu_scores.status().ToString();
  EXPECT_EQ(cpu_scores->forced, cpu::SinksAndRecent(c.tokens, c.options.sinks, c.options.recent));
  const std::vector<uint64_t> seeds = HeadSeeds(c);
  std::vector<float> want;
  double worst_state = 0.0;
  for (int l = 0; l < c.layers; ++l) {
    for (int h = 0; h < c.heads; ++h) {
      const uint64_t seed = seeds[l * c.heads + h];
      const ref::OkDmdModel m =
          ref::OkDmdPrefill(pc.K(l, h), c.tokens, c.head_dim, c.options, seed);
      const std::vector<float> s = ref::OkDmdScores(m, pc.K(l, h), c.tokens);
      want.insert(want.end(), s.begin(), s.end());
      Result<cpu::OkDmdStream> cs =
          cpu::OkDmdStream::Prefill(pc.K(l, h), c.tokens, c.head_dim, c.options, seed);
      ASSERT_TRUE(cs.ok());
      worst_state =
          std::max({worst_state, ref::NmseD(cs->A(), m.a), ref::NmseD(cs->P(), m.p),
                    ref::NmseD(ref::Projector(cs->Q(), m.d, m.k), ref::Projector(m.q, m.d, m.k))});
    }
  }
  ASSERT_TRUE(ref::AllFinite(want));
  const double nmse = ref::Nmse(cpu_scores->scores, want);
  EXPECT_LT(nmse, kTolOkDmdScores * 1e-3) << "scores: CPU vs loop reference";
  EXPECT_LT(worst_state, kTolOkDmdState * 1e-3) << "A, P or Q Q^T: CPU vs loop reference";
  EXPECT_GE(ref::MinTopKOverlap(cpu_scores->scores, want, c.batch(), c.tokens, TopBudget(c)),
            kMinTopKOverlap);
  RecordProperty("scores_nmse", Sci(nmse));
  RecordProperty("state_nmse", Sci(worst_state));
}

TEST_P(RefChecksOkDmd, CpuStreamMatchesLoopReference) {
  const OkDmdCase& c = GetParam();
  if (c.stream_steps == 0) GTEST_SKIP() << "no streaming in this case";
  const cpu::PreparedCache pc = MakeOkDmdCache(c);
  const std::vector<cpu::OkDmdStream> streams = CpuStreams(c, pc);
  const std::vector<uint64_t> seeds = HeadSeeds(c);
  for (int64_t b = 0; b < c.batch(); ++b) {
    const float* keys = pc.K(int(b / c.heads), int(b % c.heads));
    ref::OkDmdModel m = ref::OkDmdPrefill(keys, c.prefill_tokens, c.head_dim, c.options, seeds[b]);
    for (int64_t t = 0; t < c.stream_steps; ++t) {
      ref::OkDmdPush(&m, keys + (c.prefill_tokens + t) * c.head_dim, c.options);
    }
    const cpu::OkDmdStream& s = streams[b];
    EXPECT_EQ(s.updates(), m.updates);
    EXPECT_LT(ref::NmseD(s.A(), m.a), kTolOkDmdState * 1e-3) << "head " << b;
    EXPECT_LT(ref::NmseD(s.P(), m.p), kTolOkDmdState * 1e-3) << "head " << b;
    EXPECT_LT(ref::NmseD(ref::Projector(s.Q(), m.d, m.k), ref::Projector(m.q, m.d, m.k)),
              kTolOkDmdState * 1e-3)
        << "head " << b;
    std::vector<float> got(size_t(c.tokens));
    for (int64_t i = 0; i < c.tokens; ++i) got[i] = float(s.Score(keys + i * c.head_dim));
    EXPECT_LT(ref::Nmse(got, ref::OkDmdScores(m, keys, c.tokens)), kTolOkDmdScores * 1e-3);
  }
}

TEST_P(GpuCompareOkDmd, ScoresMatchCpu) {
  KVC_REQUIRE_GPU(ctx);
  const OkDmdCase& c = GetParam();
  const cpu::PreparedCache pc = MakeOkDmdCache(c);
  Result<cpu::ScoreSet> want = cpu::ScoreOkDmd(pc, c.options, c.seed);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  Result<std::vector<float>> got = OkDmdScoresOnHost(FlattenKeys(pc), c.batch(), c.tokens,
                                                     c.head_dim, HeadSeeds(c), c.options, ctx);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(ref::AllFinite(*got)) << "NaN or infinity in the GPU scores";
  const double nmse = ref::Nmse(*got, want->scores);
  EXPECT_LT(nmse, kTolOkDmdScores);
  const double overlap = ref::MinTopKOverlap(*got, want->scores, c.batch(), c.tokens, TopBudget(c));
  EXPECT_GE(overlap, kMinTopKOverlap);
  RecordProperty("scores_nmse", Sci(nmse));
  RecordProperty("topk_overlap", Sci(overlap));
}

TEST_P(GpuCompareOkDmd, ScoreSetMatchesCpuScoreOkDmd) {
  KVC_REQUIRE_GPU(ctx);
  const OkDmdCase& c = GetParam();
  const cpu::PreparedCache pc = MakeOkDmdCache(c);
  Result<cpu::ScoreSet> want = cpu::ScoreOkDmd(pc, c.options, c.seed);
  Result<cpu::ScoreSet> got = ScoreOkDmdGpu(pc, c.options, c.seed, ctx);
  ASSERT_TRUE(want.ok() && got.ok()) << got.status().ToString();
  EXPECT_EQ(got->n_layers, want->n_layers);
  EXPECT_EQ(got->n_kv_heads, want->n_kv_heads);
  EXPECT_EQ(got->T, want->T);
  EXPECT_EQ(got->forced, want->forced);
  ASSERT_TRUE(ref::AllFinite(got->scores));
  EXPECT_LT(ref::Nmse(got->scores, want->scores), kTolOkDmdScores);
}

TEST_P(GpuCompareOkDmd, PrefillStateMatchesCpu) {
  KVC_REQUIRE_GPU(ctx);
  const OkDmdCase& c = GetParam();
  const cpu::PreparedCache pc = MakeOkDmdCache(c);
  const std::vector<uint64_t> seeds = HeadSeeds(c);
  DeviceBuffer keys = ToDevice(FlattenKeys(pc));
  OkDmdDeviceProblem p{keys.as<float>(), c.batch(), c.tokens, c.head_dim, seeds};
  Result<OkDmdDeviceState> s = OkDmdPrefill(p, c.options, ctx);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  Result<OkDmdHostState> h = DownloadOkDmdState(*s, ctx);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  const int d = c.head_dim, k = s->modes;
  EXPECT_TRUE(h->has_prev);
  for (int64_t b = 0; b < c.batch(); ++b) {
    Result<cpu::OkDmdStream> cs = cpu::OkDmdStream::Prefill(
        pc.K(int(b / c.heads), int(b % c.heads)), c.tokens, d, c.options, seeds[b]);
    ASSERT_TRUE(cs.ok());
    ASSERT_EQ(cs->modes(), k);
    EXPECT_LT(ref::NmseD(Slice(h->a, size_t(d) * d, b), cs->A()), kTolOkDmdState) << "A " << b;
    EXPECT_LT(ref::NmseD(Slice(h->p, size_t(d) * d, b), cs->P()), kTolOkDmdState) << "P " << b;
    EXPECT_LT(ref::NmseD(ref::Projector(Slice(h->q, size_t(d) * k, b), d, k),
                         ref::Projector(cs->Q(), d, k)),
              kTolOkDmdState)
        << "Q Q^T " << b;
  }
}

TEST_P(GpuCompareOkDmd, StreamMatchesCpu) {
  KVC_REQUIRE_GPU(ctx);
  const OkDmdCase& c = GetParam();
  if (c.stream_steps == 0) GTEST_SKIP() << "no streaming in this case";
  const cpu::PreparedCache pc = MakeOkDmdCache(c);
  const std::vector<float> all = FlattenKeys(pc);
  const int64_t B = c.batch(), T = c.tokens, T0 = c.prefill_tokens;
  const int d = c.head_dim;
  DeviceBuffer prefix = ToDevice(SliceRows(all, B, T, d, 0, T0));
  OkDmdDeviceProblem p{prefix.as<float>(), B, T0, d, HeadSeeds(c)};
  Result<OkDmdDeviceState> s = OkDmdPrefill(p, c.options, ctx);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const int64_t cut = T0 + c.first_push, end = T0 + c.stream_steps;
  DeviceBuffer first = ToDevice(SliceRows(all, B, T, d, T0, cut));
  DeviceBuffer rest = ToDevice(SliceRows(all, B, T, d, cut, end));
  ASSERT_TRUE(OkDmdPush(*s, first.as<float>(), cut - T0, ctx).ok());
  ASSERT_TRUE(OkDmdPush(*s, rest.as<float>(), end - cut, ctx).ok());
  DeviceBuffer dall = ToDevice(all), dscores = ToDevice(ref::Vec(size_t(B * T)));
  ASSERT_TRUE(OkDmdScoreKeys(*s, dall.as<float>(), T, dscores.as<float>(), ctx).ok());
  const ref::Vec got_scores = ToHost(dscores, size_t(B * T));
  Result<OkDmdHostState> h = DownloadOkDmdState(*s, ctx);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  const std::vector<cpu::OkDmdStream> streams = CpuStreams(c, pc);
  const int k = s->modes;
  ref::Vec want_scores;
  for (int64_t b = 0; b < B; ++b) {
    const cpu::OkDmdStream& cs = streams[b];
    EXPECT_EQ(h->updates, cs.updates());
    EXPECT_LT(ref::NmseD(Slice(h->a, size_t(d) * d, b), cs.A()), kTolOkDmdState) << "A " << b;
    EXPECT_LT(ref::NmseD(Slice(h->p, size_t(d) * d, b), cs.P()), kTolOkDmdState) << "P " << b;
    EXPECT_LT(ref::NmseD(ref::Projector(Slice(h->q, size_t(d) * k, b), d, k),
                         ref::Projector(cs.Q(), d, k)),
              kTolOkDmdState)
        << "Q Q^T " << b;
    const float* keys = pc.K(int(b / c.heads), int(b % c.heads));
    for (int64_t i = 0; i < T; ++i) want_scores.push_back(float(cs.Score(keys + i * d)));
  }
  ASSERT_TRUE(ref::AllFinite(got_scores));
  EXPECT_LT(ref::Nmse(got_scores, want_scores), kTolOkDmdScores);
}

INSTANTIATE_TEST_SUITE_P(Cases, RefChecksOkDmd, testing::ValuesIn(OkDmdComparisonCases()),
                         OkDmdCaseName);
INSTANTIATE_TEST_SUITE_P(Cases, GpuCompareOkDmd, testing::ValuesIn(OkDmdComparisonCases()),
                         OkDmdCaseName);

TEST(GpuCompareOkDmdOps, RejectsBadInputLikeTheCpu) {
  KVC_REQUIRE_GPU(ctx);
  const OkDmdCase c = OkDmdComparisonCases()[1];
  const cpu::PreparedCache pc = MakeOkDmdCache(c);
  DeviceBuffer keys = ToDevice(FlattenKeys(pc));
  OkDmdDeviceProblem p{keys.as<float>(), c.batch(), c.tokens, c.head_dim, HeadSeeds(c)};
  OkDmdDeviceProblem bad = p;
  bad.seeds.pop_back();
  EXPECT_EQ(OkDmdPrefill(bad, c.options, ctx).status().code(), Code::kInvalidArgument);
  bad = p;
  bad.head_dim = 2048;
  EXPECT_EQ(OkDmdPrefill(bad, c.options, ctx).status().code(), Code::kInvalidArgument);
  OkDmdOptions o = c.options;
  o.k_modes = 0;
  EXPECT_EQ(OkDmdPrefill(p, o, ctx).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ScoreOkDmdGpu(pc, o, c.seed, ctx).status().code(),
            cpu::ScoreOkDmd(pc, o, c.seed).status().code());
  Result<OkDmdDeviceState> s = OkDmdPrefill(p, c.options, ctx);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(OkDmdPush(*s, keys.as<float>(), -1, ctx).code(), Code::kInvalidArgument);
  EXPECT_TRUE(OkDmdPush(*s, keys.as<float>(), 0, ctx).ok());
  EXPECT_TRUE(GpuSupports(GpuOp::kOkDmd));
  EXPECT_STREQ(GpuOpName(GpuOp::kOkDmd), "okdmd");
}

}  // namespace
}  // namespace kvc::cuda::test

namespace kvc::cuda {
// gtest prints OK-DMD cases with this (instead of a byte dump).
void PrintTo(const OkDmdCase& c, std::ostream* os) {
  *os << c.name << " (" << c.layers << " x " << c.heads << " heads, T " << c.tokens << ", d "
      << c.head_dim << ", k_modes " << c.options.k_modes << ")";
}
}  // namespace kvc::cuda
