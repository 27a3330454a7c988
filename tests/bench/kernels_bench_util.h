// Shared setup of the kernel benchmarks (kernels_bench.cc, Google Benchmark) and the comparison
// program (kernels_compare.cc): an 8B-like synthetic cache (8 KV heads, 32 query heads,
// head_dim 128, F16) with few layers, one AM head problem extracted from it, FLOP models of AM's
// dominant products and a reference OpenBLAS sgemm timer. Header-only, benchmarks only.
#pragma once

#include <cblas.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include "common/kv_cache.h"
#include "kernels/compactor.h"
#include "kernels/cpu/attention_matching.h"
#include "kernels/cpu/compact_stages.h"
#include "tests/synth/synth_kv.h"

namespace kvc::bench {

inline constexpr int64_t kRefRows = 128;  // q_ref rows per query head
inline constexpr double kRatio = 10.0;    // compaction ratio of every benchmark

// Llama-3.1-8B layout with `layers` layers and T tokens, q_ref of kRefRows, q_window of 32.
inline Result<KvCache> MakeBenchCache(int64_t T, int layers, uint64_t seed = 7) {
  SynthOptions o = SynthLlama31_8B(T);
  o.layout.n_layers = layers;
  o.n_ref = kRefRows;
  o.window = 32;
  o.seed = seed;
  o.threads = 0;
  return GenerateSyntheticKv(o);
}

// The AM problem of (layer 0, kv head 0) as Compact sees it (default 20% held out).
struct HeadProblem {
  cpu::PreparedCache prepared;
  cpu::AmHead head;
  int64_t t = 0;  // kept keys at kRatio
};

inline HeadProblem MakeHeadProblem(const KvCache& cache) {
  HeadProblem p;
  const std::vector<int64_t> held = HeldoutRows(cache.layers[0].q_ref->dim(1), 0.2, 0);
  p.prepared = *cpu::Prepare(cache, held, false);
  p.head = cpu::MakeAmHead(p.prepared, 0, 0);
  p.t = std::max<int64_t>(1, std::llround(double(cache.layout.tokens) / kRatio));
  return p;
}

// FLOPs of a least-squares solve of A (m x n) X = B (m x k) the way linalg.cc solves it.
inline double LeastSquaresFlops(double m, double n, double k) {
  if (m >= n) return 2 * m * n * n - 2.0 / 3 * n * n * n + 4 * m * n * k;  // QR + Q^T B + solve
  return m * m * n + m * m * m / 3 + 2 * m * m * k + 2 * m * n * k;        // A A^T, Cholesky, A^T U
}

// Scores: S = Q K^T (the exp that follows is not counted).
inline double ScoresFlops(double n, double T, double d) { return 2 * n * T * d; }

// Values: Y = softmax(s) V, X = Q K_S^T, X V_S, and the least squares for C_v.
inline double ValuesFlops(double n, double t, double T, double d) {
  return 2 * n * T * d + 2 * n * t * d + 2 * n * t * d + LeastSquaresFlops(n, t, d);
}

// Beta: the least squares on Phi_S (one right-hand side); the projected-gradient matvecs are not
// counted (memory bound by design).
inline double BetaFlops(double n, double t) { return LeastSquaresFlops(n, t, 1); }

// CPU time of the calling thread in seconds. Every benchmark runs on one thread (one BLAS thread,
// spec.threads = 1), so this measures the work itself and not the waits of a shared machine.
inline double ThreadCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// Thread CPU seconds per call of a single-threaded OpenBLAS sgemm C (m x n) = A (m x k) B (k x n),
// best of `reps` after one warm-up call.
inline double SgemmSeconds(int64_t m, int64_t n, int64_t k, bool trans_b, int reps = 3) {
  std::vector<float> a(size_t(m * k), 0.5f), b(size_t(k * n), 0.25f), c(size_t(m * n));
  double best = 1e30;
  for (int r = 0; r <= reps; ++r) {
    const double t0 = ThreadCpuSeconds();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, int(m), int(n),
                int(k), 1.f, a.data(), int(k), b.data(), trans_b ? int(k) : int(n), 0.f, c.data(),
                int(n));
    const double s = ThreadCpuSeconds() - t0;
    if (r > 0) best = std::min(best, s);
  }
  return best;
}

}  // namespace kvc::bench
