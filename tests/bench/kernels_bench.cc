// Google Benchmark of the compaction kernels on an 8B-like layout (8 KV heads, 32 query heads,
// head_dim 128, F16) at T = 8k and 32k, one layer:
//   - AM's dominant products per head (scores Q K^T, beta least squares, values least squares)
//     with their achieved GFLOP/s, next to OpenBLAS sgemm of the same shapes in the same run;
//   - every method through Compact(), reported as ms per (layer, kv head).
// Single BLAS thread everywhere; methods run with one worker thread so times are per core.
// Google Benchmark reports CPU time of the benchmark thread; the method counter is thread CPU time
// as well, so a busy shared machine does not skew the figures much.
#include <benchmark/benchmark.h>

#include <map>
#include <memory>

#include "kernels/cpu/linalg.h"
#include "tests/bench/kernels_bench_util.h"

namespace kvc::bench {
namespace {

const KvCache& Cache(int64_t T) {
  static std::map<int64_t, KvCache> caches;
  auto it = caches.find(T);
  if (it == caches.end()) it = caches.emplace(T, *MakeBenchCache(T, 1)).first;
  return it->second;
}

const HeadProblem& Problem(int64_t T) {
  static std::map<int64_t, std::unique_ptr<HeadProblem>> problems;
  auto& p = problems[T];
  if (!p) p = std::make_unique<HeadProblem>(MakeHeadProblem(Cache(T)));
  return *p;
}

void SetRate(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_SgemmScores(benchmark::State& state) {
  const HeadProblem& p = Problem(state.range(0));
  const cpu::AmHead& h = p.head;
  cpu::ScopedBlasThreads blas(1);
  std::vector<float> s(size_t(h.n * h.T));
  for (auto _ : state) {
    cpu::Gemm(false, true, h.n, h.T, h.d, 1.f, h.q, h.d, h.k, h.d, 0.f, s.data(), h.T);
    benchmark::DoNotOptimize(s.data());
  }
  SetRate(state, ScoresFlops(h.n, h.T, h.d));
}

void BM_AmScores(benchmark::State& state) {
  const HeadProblem& p = Problem(state.range(0));
  cpu::ScopedBlasThreads blas(1);
  cpu::AttentionStats st;  // reused across iterations, as the pipeline reuses it across heads
  for (auto _ : state) {
    cpu::ComputeAttentionStats(p.head, st);
    benchmark::DoNotOptimize(st.z.data());
  }
  SetRate(state, ScoresFlops(p.head.n, p.head.T, p.head.d));
}

void BM_AmBeta(benchmark::State& state) {
  const HeadProblem& p = Problem(state.range(0));
  cpu::ScopedBlasThreads blas(1);
  const cpu::AttentionStats st = cpu::ComputeAttentionStats(p.head);
  const std::vector<int64_t> sel = cpu::TopPositions(cpu::HighestAttentionScores(st), p.t, {});
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        cpu::FitBeta(st, sel, cpu::kBetaLoHighest, cpu::kBetaHiHighest, AmOptions{}.nnls_pg_steps));
  }
  SetRate(state, BetaFlops(p.head.n, double(p.t)));
}

void BM_AmValues(benchmark::State& state) {
  const HeadProblem& p = Problem(state.range(0));
  cpu::ScopedBlasThreads blas(1);
  const cpu::AttentionStats st = cpu::ComputeAttentionStats(p.head);
  const std::vector<int64_t> sel = cpu::TopPositions(cpu::HighestAttentionScores(st), p.t, {});
  const std::vector<float> beta(sel.size(), 0.f);
  for (auto _ : state) benchmark::DoNotOptimize(cpu::FitValues(p.head, st, sel, beta, 0.0));
  SetRate(state, ValuesFlops(p.head.n, double(p.t), p.head.T, p.head.d));
}

// The same GEMM shapes as the values step: Y = P V (n x d x T), X and X V_S (n x t x d, twice),
// and the Gram matrix of the least squares (n x n x t when n < t, else t x t x n).
void BM_SgemmValuesShapes(benchmark::State& state) {
  const HeadProblem& p = Problem(state.range(0));
  const cpu::AmHead& h = p.head;
  const int64_t n = h.n, t = p.t, d = h.d, T = h.T;
  cpu::ScopedBlasThreads blas(1);
  std::vector<float> big(size_t(n * T), 0.5f), x(size_t(n * t), 0.5f), y(size_t(n * d));
  std::vector<float> g(size_t(std::max(n, t) * std::max(n, t)));
  const int64_t gm = std::min(n, t), gk = std::max(n, t);
  for (auto _ : state) {
    cpu::Gemm(false, false, n, d, T, 1.f, big.data(), T, h.v, d, 0.f, y.data(), d);
    cpu::Gemm(false, true, n, t, d, 1.f, h.q, d, h.k, d, 0.f, x.data(), t);
    cpu::Gemm(false, false, n, d, t, 1.f, x.data(), t, h.v, d, 0.f, y.data(), d);
    cpu::Gemm(false, true, gm, gm, gk, 1.f, x.data(), gk, x.data(), gk, 0.f, g.data(), gm);
    benchmark::DoNotOptimize(g.data());
  }
  SetRate(state, 2.0 * (n * d * T + 2 * n * t * d + gm * gm * gk));
}

struct MethodCase {
  const char* name;
  Method method;
  AmSelection selection;
  Allocator allocator;
};
const MethodCase kMethods[] = {
    {"am", Method::kAttentionMatching, AmSelection::kHighestAttention, Allocator::kDefault},
    {"am_omp_fast", Method::kAttentionMatching, AmSelection::kOmpFast, Allocator::kDefault},
    {"am_alloc_am", Method::kAttentionMatching, AmSelection::kHighestAttention, Allocator::kAm},
    {"streamingllm", Method::kStreamingLlm, AmSelection::kHighestAttention, Allocator::kDefault},
    {"h2o", Method::kH2o, AmSelection::kHighestAttention, Allocator::kDefault},
    {"snapkv", Method::kSnapKv, AmSelection::kHighestAttention, Allocator::kDefault},
    {"pyramidkv", Method::kPyramidKv, AmSelection::kHighestAttention, Allocator::kDefault},
    {"okdmd", Method::kOkDmd, AmSelection::kHighestAttention, Allocator::kDefault},
    {"dynamickv", Method::kDynamicKv, AmSelection::kHighestAttention, Allocator::kDefault},
    {"d2o", Method::kD2o, AmSelection::kHighestAttention, Allocator::kDefault},
};

void BM_Method(benchmark::State& state) {
  const MethodCase& m = kMethods[state.range(0)];
  const KvCache& cache = Cache(state.range(1));
  CompactionSpec spec;
  spec.method = m.method;
  spec.am.selection = m.selection;
  spec.allocator = m.allocator;
  spec.ratio = kRatio;
  spec.threads = 1;
  state.SetLabel(m.name);
  double ms = 0;
  for (auto _ : state) {
    const double t0 = ThreadCpuSeconds();
    Result<CompactionResult> r = Compact(cache, spec);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      return;
    }
    // Thread CPU time without the fidelity measurement (split by the stages' wall times).
    ms += (ThreadCpuSeconds() - t0) * 1e3 * (1.0 - r->timings.fidelity_ms / r->timings.total_ms);
  }
  const double heads = double(cache.layout.n_layers) * cache.layout.n_kv_heads;
  state.counters["ms_per_layer_head"] = ms / double(state.iterations()) / heads;
}

void MethodArgs(benchmark::internal::Benchmark* b) {
  for (int i = 0; i < int(std::size(kMethods)); ++i) {
    b->Args({i, 8192});
    // OMP-fast and the AM allocator are the slow paths: 8k only, to keep the run short.
    if (kMethods[i].selection != AmSelection::kOmpFast && kMethods[i].allocator != Allocator::kAm) {
      b->Args({i, 32768});
    }
  }
}

BENCHMARK(BM_SgemmScores)->Arg(8192)->Arg(32768)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_AmScores)->Arg(8192)->Arg(32768)->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK(BM_AmBeta)->Arg(8192)->Arg(32768)->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_SgemmValuesShapes)
    ->Arg(8192)
    ->Arg(32768)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);
BENCHMARK(BM_AmValues)->Arg(8192)->Arg(32768)->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_Method)->Apply(MethodArgs)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace
}  // namespace kvc::bench

BENCHMARK_MAIN();
