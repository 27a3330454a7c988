#include "kernels/cuda/cases.h"

#include <cmath>
#include <numeric>

namespace kvc::cuda {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

double Uniform01(uint64_t seed, uint64_t i) {
  // 53 random bits in (0, 1): never 0, so log() below is finite.
  return (double(SplitMix64(seed * 0x100000001b3ull + i) >> 11) + 0.5) * 0x1.0p-53;
}

// Unit direction per head.
std::vector<float> Directions(const AmCase& c) {
  std::vector<float> u = NormalVector(size_t(c.batch * c.head_dim), c.seed * 7 + 3);
  for (int64_t b = 0; b < c.batch; ++b) {
    double ss = 0;
    for (int64_t j = 0; j < c.head_dim; ++j)
      ss += double(u[b * c.head_dim + j]) * u[b * c.head_dim + j];
    const float inv = float(1.0 / std::sqrt(ss));
    for (int64_t j = 0; j < c.head_dim; ++j) u[b * c.head_dim + j] *= inv;
  }
  return u;
}

// Adds a * u_b to every row r (of `rows` per head) with r % every == 0 (every = 1: all rows).
void AddDirection(std::vector<float>& x, const std::vector<float>& u, const AmCase& c, int64_t rows,
                  int64_t every) {
  const float a = float(std::sqrt(3.0 * std::sqrt(double(c.head_dim))));
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int64_t r = 0; r < rows; r += every) {
      float* row = x.data() + (b * rows + r) * c.head_dim;
      for (int64_t j = 0; j < c.head_dim; ++j) row[j] += a * u[b * c.head_dim + j];
    }
  }
}

}  // namespace

int64_t AmCase::total_budget() const {
  return std::accumulate(budgets.begin(), budgets.end(), int64_t{0});
}

bool AmCase::well_determined() const {
  for (int64_t b : budgets) {
    if (b <= 0 || b >= tokens || n() < 2 * b) return false;
  }
  return true;
}

std::vector<float> NormalVector(size_t count, uint64_t seed) {
  std::vector<float> out(count);
  for (size_t i = 0; i < count; i += 2) {
    const double r = std::sqrt(-2.0 * std::log(Uniform01(seed, i)));
    const double th = 6.283185307179586 * Uniform01(seed, i + 1);
    out[i] = float(r * std::cos(th));
    if (i + 1 < count) out[i + 1] = float(r * std::sin(th));
  }
  return out;
}

std::vector<AmCase> ComparisonCases() {
  std::vector<AmCase> cases;
  // name, batch, group, queries, T, d, budgets, heavy_every, seed
  cases.push_back({"tiny", 2, 1, 5, 17, 8, {3, 1}, 5, 11});
  cases.push_back({"n37_T1000_d72_ragged", 3, 1, 37, 1000, 72, {100, 37, 250}, 50, 12});
  cases.push_back({"gqa4_T1000_d128", 2, 4, 16, 1000, 128, {100, 100}, 50, 13});
  cases.push_back({"zero_budget_head", 4, 1, 37, 1000, 128, {10, 100, 0, 333}, 40, 14});
  cases.push_back({"wide_n_both_forms", 2, 8, 40, 777, 72, {50, 400}, 30, 15});
  cases.push_back(
      {"uniform_batched_cholesky", 6, 2, 24, 300, 64, {40, 40, 40, 40, 40, 40}, 25, 16});
  cases.push_back({"gqa8_budget_T", 1, 8, 3, 33, 16, {33}, 7, 17});
  // Well-determined fits (n several times every budget), where AM must beat plain selection.
  cases.push_back({"overdetermined_gqa4_d64", 2, 4, 64, 2000, 64, {40, 64}, 50, 18});
  cases.push_back({"llama_like_ratio10", 4, 4, 96, 1500, 128, {150, 150, 100, 120}, 64, 19});
  return cases;
}

std::vector<AmCase> BenchmarkCases(int64_t queries_per_kv_head,
                                   const std::vector<int64_t>& tokens) {
  std::vector<AmCase> cases;
  const int64_t group = 4;  // Llama-3.1-8B: 32 query heads over 8 KV heads
  for (int64_t T : tokens) {
    AmCase c;
    c.name = "llama3_8b_layer_T" + std::to_string(T);
    c.batch = 8;
    c.group = group;
    c.queries = queries_per_kv_head / group;
    c.tokens = T;
    c.head_dim = 128;
    c.budgets.assign(8, T / 10);
    c.heavy_every = 64;
    c.seed = uint64_t(T);
    cases.push_back(c);
  }
  return cases;
}

AmFitHostProblem MakeProblem(const AmCase& c) {
  AmFitHostProblem p;
  p.batch = c.batch;
  p.n = c.n();
  p.tokens = c.tokens;
  p.head_dim = c.head_dim;
  p.budgets = c.budgets;
  const std::vector<float> u = Directions(c);
  p.k = NormalVector(size_t(c.batch * c.tokens * c.head_dim), c.seed * 7 + 1);
  AddDirection(p.k, u, c, c.tokens, c.heavy_every);
  p.v = NormalVector(size_t(c.batch * c.tokens * c.head_dim), c.seed * 7 + 2);
  p.q = NormalVector(size_t(c.batch * p.n * c.head_dim), c.seed * 7 + 4);
  AddDirection(p.q, u, c, p.n, 1);
  return p;
}

std::vector<float> MakeHeldOutQueries(const AmCase& c, int64_t n_eval) {
  std::vector<float> q = NormalVector(size_t(c.batch * n_eval * c.head_dim), c.seed * 7 + 5);
  AddDirection(q, Directions(c), c, n_eval, 1);
  return q;
}

}  // namespace kvc::cuda
