// OK-DMD cases and a plain CPU reference for the comparison harness (gpu_compare_okdmd_test.cc).
//
// The GPU op (okdmd.h) is compared against kvc::cpu::ScoreOkDmd / OkDmdStream themselves (the
// algorithm the project ships). This file adds what checks those on every machine: a reference
// written straight from design §4 with loops in double and different factorisations (Gauss-Jordan
// for P, Gram-Schmidt twice for the basis), so RefChecks can test that the CPU implementation
// computes the design's scores, and measure how far reordering and f32 projections move them.
// Scores depend only on the subspace span(Q), not on the QR convention, which is what makes the
// two comparable; basis matrices are compared through their projectors Q Q^T.
//
// Synthetic keys: per head, a latent linear dynamical system z_t = 0.97 R z_{t-1} + 0.3 eps
// (R a rotation in planes, 8 latent dimensions) read out as k_t = U z_t + 0.4 eta + bias, with a
// different read-out U' over the middle third of the positions (a domain shift and a return, as in
// design §4's stress test); `outlier` puts +-outlier on two coordinates of the bias (the massive
// activations of real keys).
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cpu/pipeline.h"
#include "kernels/spec.h"

namespace kvc::cuda {

struct OkDmdCase {
  std::string name;
  int layers = 1;
  int heads = 1;       // KV heads per layer
  int group = 1;       // query heads per KV head (OK-DMD is query-free; the layout carries it)
  int64_t tokens = 1;  // T
  int head_dim = 8;
  OkDmdOptions options;
  uint64_t seed = 1;
  float outlier = 0.f;
  // Streaming: keys pushed after a prefill over the first prefill_tokens keys, in two calls
  // (first_push keys, then the rest). stream_steps = 0 skips the streaming comparison.
  int64_t prefill_tokens = 0;
  int64_t first_push = 0;
  int64_t stream_steps = 0;

  int64_t batch() const { return int64_t(layers) * heads; }
};

// Odd sizes, several layers and heads, GQA layouts, T of no particular form (1, below d, chunk
// edges, with padding), k = d, k_modes > d, power_iters = 0, outlier coordinates, streaming with
// refreshes inside and across calls, from an empty model and with other lambda / refresh values.
std::vector<OkDmdCase> OkDmdComparisonCases();

// Llama-3.1-8B-shaped cache for the benchmark: 32 layers x 8 KV heads (group 4), d = 128.
OkDmdCase OkDmdBenchmarkCase(int layers, int64_t tokens);

// The synthetic cache of a case (K as above, V standard normal; no queries).
cpu::PreparedCache MakeOkDmdCache(const OkDmdCase& c);

// Row-major keys [batch, T, d] of the cache (layer-major), and the per-head basis seeds
// cpu::OkDmdHeadSeed(seed, l, h) in the same order.
std::vector<float> FlattenKeys(const cpu::PreparedCache& c);
std::vector<uint64_t> HeadSeeds(const OkDmdCase& c);

namespace ref {

// One head's OK-DMD model in double (row-major d x d, d x d, d x k).
struct OkDmdModel {
  int d = 0;
  int k = 0;
  std::vector<double> a, p, q;
  std::vector<double> prev;  // k_{t-1}; empty before the first key
  int64_t updates = 0;
};

// Design §4's prefill on keys [T, d]: moments by loops, P by Gauss-Jordan with partial pivoting,
// Q0 from the seeded Gaussian (the CPU's generator) orthonormalised by Gram-Schmidt twice, then
// power_iters rounds of the same. A zero A Q (T < 2) gives the basis LAPACK's QR gives a zero
// matrix, the first k unit vectors.
OkDmdModel OkDmdPrefill(const float* keys, int64_t T, int d, const OkDmdOptions& o,
                        uint64_t head_seed);
// Design §4's streaming update of one key (the first key only becomes k_{t-1}).
void OkDmdPush(OkDmdModel* m, const float* key, const OkDmdOptions& o);
// ||Q^T k_i||^2 in double for keys [count, d].
std::vector<float> OkDmdScores(const OkDmdModel& m, const float* keys, int64_t count);

// Q Q^T (d x d) of a row-major d x k basis.
std::vector<double> Projector(const std::vector<double>& q, int d, int k);

// Nmse of double arrays (ref::Nmse's definition): infinite on a size mismatch or non-finite got.
double NmseD(const std::vector<double>& got, const std::vector<double>& want);

// |top(a) n top(b)| / budget, where top(x) are the positions SelectTopK keeps for `budget`
// (highest scores, ties to the lower position), per head of [heads, T] arrays; the minimum over
// heads.
double MinTopKOverlap(const std::vector<float>& a, const std::vector<float>& b, int64_t heads,
                      int64_t T, int64_t budget);

}  // namespace ref
}  // namespace kvc::cuda
