// Attention Matching fitting on the GPU (design §4), batched over (layer, head): highest-
// attention selection, beta by box-constrained NNLS, values by ridge least squares.
//
// For each batch entry b (one KV head of one layer) with keys K_b, values V_b (T x d), pooled
// reference queries Q_b (n x d; the GQA group's query heads concatenated) and budget t_b:
//   1. S = Q K^T / sqrt(d); a_i = softmax(S_i); score_j = sqrt(mean_i a_ij^2); Y = a V;
//      keep the t_b highest scores (ties: lower position), positions ascending; C_k = K[kept].
//   2. Phi_ij = exp(s_ij - m_i) over the kept keys (m_i = max over all T keys),
//      z_i = sum_j exp(s_ij - m_i) over all keys; w = NNLS(Phi, z) in [lower, upper] started
//      from clamp(least squares) (or the best uniform scale); beta = log w.
//   3. X = softmax(Q C_k^T / sqrt(d) + beta); C_v = argmin ||X C - Y||^2 (+ ridge).
// Every product and solve is f32; options.score_math = kTf32 lets the score products
// (QK^T, PV, Q C_k^T) use TF32 tensor cores. options.selection = kOmp / kOmpFast replaces step 1's
// top-k by am_omp.h's greedy selection on Phi = exp(S - m) (selector must then be null).
//
// Memory: the score matrix of the whole batch is materialised (4 * batch * n * T bytes, e.g.
// 8 GiB for 8 heads, n = 4096, T = 61440), plus about 8 * n * sum(t_b) bytes for the kept-key
// scores and Phi / X and the Gram matrices; callers split a layer's heads into smaller batches
// when that does not fit (AmFit returns ResourceExhausted).
// Stream semantics: work runs on ctx.stream(); AmFit returns once everything is queued, except
// that the least-squares solves synchronise (pivot checks) and timings (if asked) synchronise at
// the end. Results are device buffers from ctx.pool() and valid once the stream reaches them.
// Thread safety: one call at a time per GpuContext.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/cuda/am_omp.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/lstsq.cuh"
#include "kernels/cuda/nnls.cuh"
#include "kernels/cuda/ragged.h"

namespace kvc::cuda {

enum class BetaInit : uint8_t {
  kLeastSquares = 0,  // clamp(argmin ||Phi w - z||), design §4 step 2
  kUniform = 1,       // clamp(best uniform scale): no Gram matrix, much cheaper
};

// Which keys AmFit keeps (design §4 step 1). OMP modes run am_omp.h's selection on
// Phi = exp(S - m) (one more batch x n x T f32 buffer while selecting) and fit beta within
// AmFitOptions::omp's bounds instead of nnls.lower / nnls.upper.
enum class AmFitSelection : uint8_t {
  kHighestAttention = 0,  // top budget of the highest-attention scores (or problem.selector)
  kOmp = 1,               // OMP: one key per step, refit after each (omp.schedule is ignored)
  kOmpFast = 2,           // OMP-fast: omp.schedule
};

struct AmFitOptions {
  AmFitSelection selection = AmFitSelection::kHighestAttention;  // Default: highest attention.
  OmpFastOptions omp;                    // OMP / OMP-fast parameters. Default: OmpFastOptions{}.
  MathMode score_math = MathMode::kF32;  // QK^T, PV and Q C_k^T products. Default: f32.
  bool fit_beta = true;                  // Default: true. False keeps beta = 0.
  bool fit_values = true;                // Default: true. False keeps the selected values.
  BetaInit beta_init = BetaInit::kLeastSquares;  // Default: least squares.
  NnlsOptions nnls;                              // Default: 30 steps, bounds [e^-3, e^3].
  LstsqOptions beta_lstsq;    // the least-squares start of w. Default: LstsqOptions{}.
  LstsqOptions values_lstsq;  // C_v; .ridge is AmOptions::ridge. Default: LstsqOptions{}.
  // Where the values ridge pulls: false, towards 0 (C_v = argmin ||X C - Y||^2 + lambda ||C||^2,
  // design §4); true, towards the kept values V_S (C_v = V_S + argmin ||X D - (Y - X V_S)||^2 +
  // lambda ||D||^2), as the CPU front does (kernels/spec.h AmOptions::ridge). Default: false.
  bool values_toward_kept = false;
  bool collect_timings = false;  // fill AmFitResult::timings (synchronises). Default: false.
};

// Device inputs (not owned). Dense row-major arrays.
struct AmFitProblem {
  const float* q = nullptr;  // [batch, n, d]
  const float* k = nullptr;  // [batch, T, d]
  const float* v = nullptr;  // [batch, T, d]
  int64_t batch = 0;
  int64_t n = 0;       // reference queries per KV head (group size x queries per query head)
  int64_t tokens = 0;  // T
  int64_t head_dim = 0;
  std::vector<int64_t> budgets;  // [batch], each in [0, T]
  // Optional [batch, T]: when set, the kept keys are the top budgets of these scores (another
  // method's scores, AmSelection::kScores) instead of the highest-attention scores; the
  // highest-attention scores are still computed and returned. Default: null.
  const float* selector = nullptr;
};

struct AmFitTimings {
  float select_ms = 0;  // scores, statistics, column scores, PV, top-k, gathers
  float beta_ms = 0;    // Q C_k^T, Phi, least-squares start, projected gradient
  float values_ms = 0;  // X and the values solve
  float total_ms = 0;
};

struct AmFitResult {
  RaggedLayout layout;   // kept entries per head (offsets = running sum of budgets)
  DeviceBuffer indices;  // int32 [total]: positions within the head, ascending
  DeviceBuffer keys;     // f32 [total, d]: C_k
  DeviceBuffer values;   // f32 [total, d]: C_v
  DeviceBuffer beta;     // f32 [total]
  DeviceBuffer scores;   // f32 [batch, T]: highest-attention scores
  AmFitTimings timings;
  LstsqReport values_report;
};

// REQUIRES (else InvalidArgument): batch in [1, 65535], n >= 1, 1 <= T <= INT32_MAX,
// 1 <= d <= 65536, budgets.size() == batch with every budget in [0, T], non-null pointers.
// Inputs must be finite (checked by the caller on the host, as KvCache::Validate does).
Result<AmFitResult> AmFit(const AmFitProblem& problem, const AmFitOptions& options,
                          GpuContext& ctx);

// Host-side results, for tests and tools.
struct AmFitHostResult {
  std::vector<int64_t> offsets;  // batch + 1
  std::vector<int32_t> indices;
  std::vector<float> keys;
  std::vector<float> values;
  std::vector<float> beta;
  std::vector<float> scores;
};

// Host arrays with AmFitProblem's shapes; selector empty or [batch, T].
struct AmFitHostProblem {
  std::vector<float> q;
  std::vector<float> k;
  std::vector<float> v;
  int64_t batch = 0;
  int64_t n = 0;
  int64_t tokens = 0;
  int64_t head_dim = 0;
  std::vector<int64_t> budgets;
  std::vector<float> selector;
};

// Copies a finished AmFit result of `batch` heads to the host (synchronises `stream`).
Result<AmFitHostResult> DownloadAmFit(const AmFitResult& r, int64_t batch, int64_t tokens,
                                      int64_t head_dim, cudaStream_t stream);

// Uploads the arrays, runs AmFit and downloads the result. InvalidArgument when an array's size
// does not match the shape.
Result<AmFitHostResult> AmFitOnHost(const AmFitHostProblem& problem, const AmFitOptions& options,
                                    GpuContext& ctx);

// Which GPU ops exist (design §10's capability table). Ops reported false are "not supported"
// on this backend; the comparison harness reports them so rather than failing.
enum class GpuOp : uint8_t {
  kScores,
  kRowStats,
  kSoftmaxColumnScores,
  kTopK,
  kGather,
  kNnls,
  kLstsq,
  kAmHighestAttention,
  kAmOmp,
  kAmOmpFast,
  kOkDmd,  // okdmd.h: prefill fit, streaming update, basis refresh, scores
  // methods.h: the selection methods
  kWindowAttention,   // attention_sums.cuh: masked softmax column sums (H2O, SnapKV, D2O, ...)
  kSnapKvPool,        // pooling.cuh: pooled group mean (SnapKV, PyramidKV, DynamicKV)
  kH2oAccumulate,     // pooling.cuh: group sums of the accumulated attention (H2O, D2O)
  kD2oLayerStats,     // pooling.cuh: min-max variance behind D2O's layer ratios
  kDynamicKvBudgets,  // methods.h: per-head top candidates of DynamicKV's re-normalisation
  kSelectTopK,        // select_topk.cuh + topk.cuh: forced positions, then top scores
  kD2oMerge,          // d2o_merge.cuh: match, EMA threshold, merge of evicted tokens
};
const char* GpuOpName(GpuOp op);
bool GpuSupports(GpuOp op);

}  // namespace kvc::cuda
