// Comparison run of the compaction kernels (design §7, "CPU compaction throughput"): on an
// 8B-like layout (8 KV heads, 32 query heads, head_dim 128, F16), one layer, T = 8k and 32k
// (or the T values given as arguments), it prints
//   1. AM's stages on one head: ms, achieved GFLOP/s and the ratio to single-threaded OpenBLAS
//      sgemm of the same shapes measured in the same run;
//   2. every method through Compact(): ms per (layer, kv head), AM's GFLOP/s over its fit stage
//      and the ratio to sgemm, and the held-out mean cosine.
// Everything runs on one core (one BLAS thread, spec.threads = 1) and is timed in thread CPU
// time, so a busy shared machine slows the run down without skewing the figures much.
//
// Usage: kernels_compare [T ...]
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/cpu/linalg.h"
#include "tests/bench/kernels_bench_util.h"

namespace kvc::bench {
namespace {

template <typename F>
double BestSeconds(F&& f, int reps) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = ThreadCpuSeconds();
    f();
    best = std::min(best, ThreadCpuSeconds() - t0);
  }
  return best;
}

struct Rates {
  double scores = 0;  // sgemm GFLOP/s on the scores shape
  double values = 0;  // sgemm GFLOP/s on the values shapes
};

Rates MeasureSgemm(const cpu::AmHead& h, int64_t t) {
  Rates r;
  r.scores = ScoresFlops(h.n, h.T, h.d) / SgemmSeconds(h.n, h.T, h.d, true) * 1e-9;
  const int64_t gm = std::min(h.n, t), gk = std::max(h.n, t);
  const double secs = SgemmSeconds(h.n, h.d, h.T, false) + 2 * SgemmSeconds(h.n, t, h.d, true) +
                      SgemmSeconds(gm, gm, gk, true);
  r.values =
      2.0 * (double(h.n) * h.d * h.T + 2.0 * h.n * t * h.d + double(gm) * gm * gk) / secs * 1e-9;
  return r;
}

void Row(const char* name, double ms, double gflops, double ref) {
  if (gflops > 0) {
    std::printf("  %-22s %10.2f %10.1f %9.2f\n", name, ms, gflops, gflops / ref);
  } else {
    std::printf("  %-22s %10.2f %10s %9s\n", name, ms, "-", "-");
  }
}

// Stage table on head (0, 0). Returns the sgemm rates for the method table.
Rates StageTable(const HeadProblem& p) {
  const cpu::AmHead& h = p.head;
  const Rates ref = MeasureSgemm(h, p.t);
  std::printf("AM stages on one head: n = %lld pooled fit queries, T = %lld, t = %lld, d = %d\n",
              (long long)h.n, (long long)h.T, (long long)p.t, h.d);
  std::printf("  sgemm reference: scores shape %.1f GFLOP/s, values shapes %.1f GFLOP/s\n",
              ref.scores, ref.values);
  std::printf("  %-22s %10s %10s %9s\n", "stage", "ms", "GFLOP/s", "vs sgemm");
  cpu::AttentionStats st;
  // The pipeline reuses the stats buffers across heads; so does this (best of 3).
  const double s_scores = BestSeconds([&] { cpu::ComputeAttentionStats(h, st); }, 3);
  Row("scores (QK^T + exp)", s_scores * 1e3, ScoresFlops(h.n, h.T, h.d) / s_scores * 1e-9,
      ref.scores);
  const std::vector<int64_t> sel = cpu::TopPositions(cpu::HighestAttentionScores(st), p.t, {});
  std::vector<float> beta;
  const double s_beta = BestSeconds(
      [&] { beta = *cpu::FitBeta(st, sel, cpu::kBetaLoHighest, cpu::kBetaHiHighest, 30); }, 2);
  Row("beta (NNLS)", s_beta * 1e3, BetaFlops(h.n, double(p.t)) / s_beta * 1e-9, ref.values);
  const double s_values = BestSeconds([&] { (void)cpu::FitValues(h, st, sel, beta, 0.0); }, 2);
  Row("values (least squares)", s_values * 1e3,
      ValuesFlops(h.n, double(p.t), h.T, h.d) / s_values * 1e-9, ref.values);
  return ref;
}

void MethodTable(const KvCache& cache, const HeadProblem& p, const Rates& ref) {
  struct Case {
    const char* name;
    Method m;
    AmSelection sel;
  };
  const Case cases[] = {{"am", Method::kAttentionMatching, AmSelection::kHighestAttention},
                        {"streamingllm", Method::kStreamingLlm, AmSelection::kHighestAttention},
                        {"h2o", Method::kH2o, AmSelection::kHighestAttention},
                        {"snapkv", Method::kSnapKv, AmSelection::kHighestAttention},
                        {"pyramidkv", Method::kPyramidKv, AmSelection::kHighestAttention},
                        {"okdmd", Method::kOkDmd, AmSelection::kHighestAttention},
                        {"dynamickv", Method::kDynamicKv, AmSelection::kHighestAttention},
                        {"d2o", Method::kD2o, AmSelection::kHighestAttention}};
  const double heads = double(cache.layout.n_layers) * cache.layout.n_kv_heads;
  // AM's counted work per head: scores, beta, values (the dominant products).
  const double am_flops = ScoresFlops(p.head.n, p.head.T, p.head.d) + BetaFlops(p.head.n, p.t) +
                          ValuesFlops(p.head.n, double(p.t), p.head.T, p.head.d);
  const double am_ref =
      am_flops / (ScoresFlops(p.head.n, p.head.T, p.head.d) / ref.scores +
                  (am_flops - ScoresFlops(p.head.n, p.head.T, p.head.d)) / ref.values);
  std::printf("methods through Compact() at %.0fx, one thread:\n", kRatio);
  std::printf("  %-22s %10s %10s %9s %10s\n", "method", "ms/l-head", "GFLOP/s", "vs sgemm",
              "cos_mean");
  for (const Case& c : cases) {
    CompactionSpec spec;
    spec.method = c.m;
    spec.am.selection = c.sel;
    spec.ratio = kRatio;
    spec.threads = 1;
    const double t0 = ThreadCpuSeconds();
    Result<CompactionResult> r = Compact(cache, spec);
    const double cpu_ms = (ThreadCpuSeconds() - t0) * 1e3;
    if (!r.ok()) {
      std::printf("  %-22s error: %s\n", c.name, r.status().ToString().c_str());
      continue;
    }
    // CPU time without the fidelity measurement (scaled by the wall-clock split of the stages).
    const double work = 1.0 - r->timings.fidelity_ms / r->timings.total_ms;
    const double ms = cpu_ms * work / heads;
    const double post_share = r->timings.post_ms / r->timings.total_ms;
    const double gf = c.m == Method::kAttentionMatching
                          ? am_flops / (cpu_ms * post_share / heads * 1e-3) * 1e-9
                          : 0.0;
    if (gf > 0) {
      std::printf("  %-22s %10.2f %10.1f %9.2f %10.5f\n", c.name, ms, gf, gf / am_ref,
                  r->fidelity->overall.cosine.mean);
    } else {
      std::printf("  %-22s %10.2f %10s %9s %10.5f\n", c.name, ms, "-", "-",
                  r->fidelity->overall.cosine.mean);
    }
  }
}

}  // namespace
}  // namespace kvc::bench

int main(int argc, char** argv) {
  std::vector<int64_t> tokens = {8192, 32768};
  if (argc > 1) {
    tokens.clear();
    for (int i = 1; i < argc; ++i) tokens.push_back(std::atoll(argv[i]));
  }
  kvc::cpu::ScopedBlasThreads blas(1);
  for (int64_t T : tokens) {
    kvc::Result<kvc::KvCache> cache = kvc::bench::MakeBenchCache(T, 1);
    if (!cache.ok()) {
      std::fprintf(stderr, "error: %s\n", cache.status().ToString().c_str());
      return 1;
    }
    std::printf("== %s, q_ref %lld rows per query head\n", cache->layout.ToString().c_str(),
                (long long)kvc::bench::kRefRows);
    const kvc::bench::HeadProblem p = kvc::bench::MakeHeadProblem(*cache);
    const kvc::bench::Rates ref = kvc::bench::StageTable(p);
    kvc::bench::MethodTable(*cache, p, ref);
  }
  return 0;
}
