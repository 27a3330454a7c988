#include "kernels/cuda/compare_util.h"

#include <cmath>

namespace kvc::cuda::test {

const GpuState& Gpu() {
  // Never destroyed: tearing a context down after the CUDA runtime's own exit handlers is unsafe.
  static const GpuState* state = [] {
    auto* s = new GpuState();
    if (DeviceCount() == 0) {
      s->status = Status::Unavailable(NoDeviceReason());
      return s;
    }
    Result<std::unique_ptr<GpuContext>> r = GpuContext::Create(0);
    if (r.ok()) {
      s->ctx = std::move(*r);
    } else {
      s->status = r.status();
    }
    return s;
  }();
  return *state;
}

AmFitOptions StrictAmOptions() {
  AmFitOptions o;
  o.beta_init = BetaInit::kUniform;
  o.beta_lstsq.min_relative_ridge = 1e-3;
  o.values_lstsq.min_relative_ridge = 1e-3;
  return o;
}

DeviceBuffer ToDevice(const std::vector<float>& host) {
  GpuContext& ctx = *Gpu().ctx;
  Result<DeviceBuffer> r = Upload(host, ctx.pool(), ctx.stream());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(*r) : DeviceBuffer();
}

DeviceBuffer ToDeviceInt(const std::vector<int32_t>& host) {
  GpuContext& ctx = *Gpu().ctx;
  Result<DeviceBuffer> r = Upload(host, ctx.pool(), ctx.stream());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(*r) : DeviceBuffer();
}

std::vector<float> ToHost(const DeviceBuffer& buf, size_t count) {
  Result<std::vector<float>> r = Download(buf.as<float>(), count, Gpu().ctx->stream());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(*r) : std::vector<float>();
}

std::vector<int32_t> ToHostInt(const DeviceBuffer& buf, size_t count) {
  Result<std::vector<int32_t>> r = Download(buf.as<int32_t>(), count, Gpu().ctx->stream());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(*r) : std::vector<int32_t>();
}

RaggedLayout Layout(const std::vector<int64_t>& offsets) {
  GpuContext& ctx = *Gpu().ctx;
  Result<RaggedLayout> r = RaggedLayout::FromOffsets(offsets, ctx.pool(), ctx.stream());
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(*r) : RaggedLayout();
}

CaseData MakeCaseData(const AmCase& c) {
  CaseData d;
  d.c = c;
  d.p = MakeProblem(c);
  const int64_t B = c.batch, n = c.n(), T = c.tokens, hd = c.head_dim;
  d.full = ref::UniformOffsets(B, T);
  d.kept = ref::OffsetsFromCounts(c.budgets);
  d.s = ref::Scores(d.p.q, d.p.k, B, n, T, hd, float(1.0 / std::sqrt(double(hd))));
  d.stats = ref::RowStats(d.s, d.full, n, nullptr);
  d.col_scores = ref::ColumnScores(d.s, d.full, n, d.stats.lse);
  d.idx = ref::TopK(d.col_scores, d.full, d.kept);
  const ref::Vec keys = ref::GatherRows(d.p.k, T, hd, d.idx, d.kept);
  d.sc.assign(size_t(n * d.kept.back()), 0.f);
  for (int64_t b = 0; b < B; ++b) {  // kept-key scores from the full score matrix
    const int64_t t = d.kept[b + 1] - d.kept[b];
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < t; ++j) {
        d.sc[n * d.kept[b] + i * t + j] = d.s[(b * n + i) * T + d.idx[d.kept[b] + j]];
      }
    }
  }
  d.phi = ref::RowExpShift(d.sc, d.kept, n, nullptr, d.stats.max);
  d.z = ref::RowMass(d.stats.lse, d.stats.max);
  return d;
}

std::string CaseName(const testing::TestParamInfo<AmCase>& info) { return info.param.name; }

std::vector<float> Exp(const std::vector<float>& beta) {
  std::vector<float> w(beta.size());
  for (size_t i = 0; i < beta.size(); ++i) w[i] = std::exp(beta[i]);
  return w;
}

}  // namespace kvc::cuda::test

namespace kvc::cuda {

void PrintTo(const AmCase& c, std::ostream* os) {
  *os << c.name << " (batch " << c.batch << ", n " << c.n() << " = " << c.group << " x "
      << c.queries << ", T " << c.tokens << ", d " << c.head_dim << ")";
}

}  // namespace kvc::cuda
