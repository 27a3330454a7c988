// Plain CPU reference functions for every op of kernels/cuda, used by the comparison harness.
// Straightforward loops over std::vector, written for clarity rather than speed, with the same
// definitions as the GPU ops (see each op's header). Accumulations run in double by default;
// Accum::kFloat runs the same loops with float accumulators, which lets CPU-only tests measure
// how far f32 arithmetic alone moves each result (the budget the GPU tolerances must cover).
//
// Layout conventions follow ragged.h: `offsets` has batch + 1 entries; matrix b is rows x
// (offsets[b+1] - offsets[b]), row-major, at element rows * offsets[b]; row vectors are
// [batch, rows]; column vectors follow offsets.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cuda/am_fit.h"
#include "kernels/cuda/lstsq.cuh"
#include "kernels/cuda/nnls.cuh"

namespace kvc::cuda::ref {

enum class Accum { kDouble, kFloat };

using Vec = std::vector<float>;
using Offsets = std::vector<int64_t>;

// offsets[b] = b * cols.
Offsets UniformOffsets(int64_t batch, int64_t cols);
// Running sum of counts.
Offsets OffsetsFromCounts(const std::vector<int64_t>& counts);

// S[b] (n x T) = scale * Q[b] K[b]^T.
Vec Scores(const Vec& q, const Vec& k, int64_t batch, int64_t n, int64_t T, int64_t d, float scale);
// Y[b] (n x d) = P[b] (n x T) V[b].
Vec AttentionOutputs(const Vec& p, const Vec& v, int64_t batch, int64_t n, int64_t T, int64_t d);

struct RowStatsResult {
  Vec max;  // [batch, rows]
  Vec lse;  // [batch, rows]
};
// Over x_ij + bias_j (bias may be null); empty rows give -inf.
RowStatsResult RowStats(const Vec& x, const Offsets& offsets, int64_t rows, const Vec* bias);
// y_ij = exp(x_ij + bias_j - shift_i).
Vec RowExpShift(const Vec& x, const Offsets& offsets, int64_t rows, const Vec* bias,
                const Vec& shift);
// score_j = sqrt(mean_i exp(s_ij - lse_i)^2).
Vec ColumnScores(const Vec& s, const Offsets& offsets, int64_t rows, const Vec& lse);
// z_i = exp(lse_i - max_i) (0 when lse_i = -inf).
Vec RowMass(const Vec& lse, const Vec& max);

// Positions of the out_offsets-sized top entries of each segment, ascending; ties broken by the
// lower position.
std::vector<int32_t> TopK(const Vec& scores, const Offsets& seg_offsets,
                          const Offsets& out_offsets);
// out[(off_b + r) * d + c] = src[(b * src_rows + idx[off_b + r]) * d + c].
Vec GatherRows(const Vec& src, int64_t src_rows, int64_t d, const std::vector<int32_t>& idx,
               const Offsets& offsets);

// nnls.cuh's algorithm. lipschitz (optional) receives L_b.
Vec NnlsProjectedGradient(const Vec& phi, const Offsets& offsets, int64_t rows, const Vec& z,
                          const NnlsOptions& o, Vec w, Vec* lipschitz = nullptr,
                          Accum acc = Accum::kDouble);
Vec NnlsUniformInit(const Vec& phi, const Offsets& offsets, int64_t rows, const Vec& z, float lower,
                    float upper);
// 0.5 ||Phi_b w_b - z_b||^2 per head, in double.
std::vector<double> NnlsObjective(const Vec& phi, const Offsets& offsets, int64_t rows,
                                  const Vec& z, const Vec& w);
// Largest eigenvalue of Phi_b^T Phi_b per head by `iters` power iterations, in double.
std::vector<double> GramLambdaMax(const Vec& phi, const Offsets& offsets, int64_t rows, int iters);

// lstsq.cuh's definition (same lambda, same form choice, retries on a failed factorisation).
// c has offsets.back() * r entries.
Vec RidgeLeastSquares(const Vec& a, const Offsets& offsets, int64_t rows, const Vec& b, int64_t r,
                      const LstsqOptions& o, Accum acc = Accum::kDouble);

// am_omp.h's OMP / OMP-fast selection in double (same rounds, picks, tie rule and refits).
// phi [batch, n, T], z [batch, n]; returns every head's positions ascending, heads concatenated.
std::vector<int32_t> OmpFastSelect(const Vec& phi, const Vec& z, int64_t batch, int64_t n,
                                   int64_t T, const std::vector<int64_t>& budgets,
                                   const OmpFastOptions& o);

// am_fit.h's pipeline on the CPU (o.selection included). selector empty or [batch, T].
AmFitHostResult AmFit(const AmFitHostProblem& p, const AmFitOptions& o, Accum acc = Accum::kDouble);

// Held-out fidelity of a compacted result (design §4), averaged over heads: per head the mean
// over queries of cos(o, o_c), the relative Frobenius error ||O - O_c|| / ||O||, and the mean
// mass error |exp(lse_c - lse) - 1|, with o = softmax(q K^T / sqrt(d)) V and
// o_c = softmax(q C_k^T / sqrt(d) + beta) C_v. q_eval is [batch, n_eval, d].
struct Fidelity {
  double cosine = 0;
  double min_cosine = 0;  // worst head
  double rel_l2 = 0;
  double mass_error = 0;
};
Fidelity EvaluateFidelity(const Vec& q_eval, int64_t n_eval, const AmFitHostProblem& p,
                          const AmFitHostResult& r);

// Comparison helpers. Nmse = sum (got - want)^2 / sum want^2 (plain squared error when want is
// all zero); infinite when the sizes differ or got has a NaN or an infinity.
double Nmse(const Vec& got, const Vec& want);
bool AllFinite(const Vec& v);

}  // namespace kvc::cuda::ref
