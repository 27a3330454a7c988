// The case table shared by the comparison harness and the GPU benchmark (design §10: the same
// cases drive both), and the deterministic synthetic inputs they run on.
//
// Synthetic data: keys and queries are standard normal per coordinate, so plain scores q.k/sqrt(d)
// are about N(0, 1); each head has a random unit direction u, every `heavy_every`-th key gets
// +a u and every query +a u with a^2 / sqrt(d) = 3, so a few keys draw markedly more attention
// (as attention sinks and heavy hitters do). Values are standard normal.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/am_fit.h"

namespace kvc::cuda {

struct AmCase {
  std::string name;
  int64_t batch = 1;             // (layer, kv head) pairs
  int64_t group = 1;             // query heads per kv head (GQA group)
  int64_t queries = 1;           // reference queries per query head; pooled n = group * queries
  int64_t tokens = 1;            // T
  int64_t head_dim = 1;          // d
  std::vector<int64_t> budgets;  // per batch entry, in [0, T]
  int64_t heavy_every = 50;
  uint64_t seed = 1;

  int64_t n() const { return group * queries; }
  int64_t total_budget() const;
  // True when every head has 0 < budget < T and n >= 2 * budget: the regime in which fitted
  // beta and values generalise to held-out queries (with n < t the value fit is underdetermined
  // and interpolates the fit queries).
  bool well_determined() const;
};

// Odd sizes, GQA groups, ragged and zero budgets, a head keeping every key, both least-squares
// forms and both Cholesky paths, and well-determined fits (n >= 2 t). Small enough for the CPU
// reference.
std::vector<AmCase> ComparisonCases();

// Llama-3.1-8B-shaped heads (8 KV heads per layer, 32 query heads: group 4, d = 128), one case
// per entry of `tokens` (default T = 32768 and 61440), ratio 10, with `queries_per_kv_head`
// pooled reference queries (4096-8192). One case is one layer (8 heads); the benchmark repeats
// it per layer.
std::vector<AmCase> BenchmarkCases(int64_t queries_per_kv_head,
                                   const std::vector<int64_t>& tokens = {32768, 61440});

// The inputs of a case: q [batch, n, d], k and v [batch, T, d], budgets.
AmFitHostProblem MakeProblem(const AmCase& c);

// Held-out queries from the same distribution: [batch, n_eval, d], a different seed stream.
std::vector<float> MakeHeldOutQueries(const AmCase& c, int64_t n_eval);

// Standard normal floats from a counter-based generator (splitmix64 + Box-Muller):
// reproducible on every machine.
std::vector<float> NormalVector(size_t count, uint64_t seed);

}  // namespace kvc::cuda
