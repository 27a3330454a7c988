// OMP / OMP-fast key selection for Attention Matching on the GPU (design §4, step 1), batched
// over (layer, KV head) with ragged budgets.
//
// For each batch entry b with Phi_b (n x T, Phi_ij = exp(s_ij - m_i)), target z_b (n) and budget
// t_b, the selection S_b grows in rounds. The round sizes p_1, p_2, ... depend only on t_b and the
// schedule (OmpRoundSizes): a round is the keys that the CPU reference (kernels/cpu/am_omp.cc)
// picks between two refits, i.e. keys_per_step x refit_every keys of the current stage (clipped
// at a stage change and at t_b). One round:
//   1. corr = Phi^T r                               (r = z before the first round)
//   2. p times: j* = argmax over unselected j of corr_j (ties: lower position; NaN counts as
//      -inf), added to S. The new weight is w_j = clamp(corr_j / (p ||Phi_:j||^2)) (lower when
//      the column is zero) and its power-iteration entry 1 / sqrt(|S|).
//   3. Refit (skipped after the last round: it cannot change the selection):
//        power_iters warm-started power iterations  v <- G v / ||G v||, L = ||G v||  (G = Phi_S^T
//        Phi_S; v carries over between rounds);
//        refit_pg_steps projected-gradient steps   w <- clamp(w + (1/L) Phi_S^T (z - Phi_S w));
//        r = z - Phi_S w.
// The output is every head's S, positions ascending. Budgets t_b = T select every key directly.
//
// Difference from the CPU reference: kernels/cpu refits with an exact Cholesky solve of the
// (delta-ridged) Gram system, then clamps and runs projected gradient; here the refit is the
// warm-started projected gradient alone (the previous round's w is the start), which needs no
// growing factorisation and maps onto batched matrix-vector products. The double-precision twin
// of this algorithm is ref::OmpFastSelect (reference_ops.h); RefChecksOmp compares it with
// kernels/cpu on small cases (selection overlap and held-out fidelity).
//
// Cost per round and head: one pass over Phi (n T) for corr, plus 2 (power_iters +
// refit_pg_steps) + 1 passes over Phi_S (n |S|). All of it is memory bound.
// Memory: Phi [batch, n, T] is the caller's; scratch is about 4 (n + 3) sum(t_b) + 5 batch T
// + 4 * 64 * batch * T bytes (the Phi_S columns, weights, correlations and their partial sums).
//
// Stream semantics: everything is queued on `stream`; OmpFastSelect returns without
// synchronising (the round plan is computed on the host from the budgets alone).
// Thread safety: stateless; concurrent calls on different streams and data are safe.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "common/status.h"
#include "kernels/cuda/memory_pool.h"
#include "kernels/cuda/ragged.h"

namespace kvc::cuda {

// One stage of the schedule (kvc::OmpStage of kernels/spec.h): while fewer than `up_to` keys are
// selected, add `keys_per_step` keys per step and refit every `refit_every` steps.
struct OmpFastStage {
  int64_t up_to = std::numeric_limits<int64_t>::max();
  int keys_per_step = 1;
  int refit_every = 1;
};

struct OmpFastOptions {
  // Default: design §4's progressive schedule (300: k=1, m=1), (1500: k=2, m=2), (rest: k=4,
  // m=2). Plain OMP is the single stage {max, 1, 1} (PlainOmpSchedule()).
  std::vector<OmpFastStage> schedule = {
      {300, 1, 1}, {1500, 2, 2}, {std::numeric_limits<int64_t>::max(), 4, 2}};
  int refit_pg_steps = 30;  // projected-gradient steps per refit. Default: 30.
  int power_iters = 2;      // warm-started power iterations per refit. Default: 2.
  // Box on w during selection and for the beta fit that follows OMP (design §4: [1e-12, e^7]).
  float lower = 1e-12f;
  float upper = 1096.6332f;
};

std::vector<OmpFastStage> PlainOmpSchedule();

// Keys picked in each round for a budget t (sums to t; empty for t <= 0). Same step/refit rule
// as kernels/cpu's OmpSelect. REQUIRES: a valid schedule (see CheckOmpFastOptions).
std::vector<int64_t> OmpRoundSizes(int64_t t, const std::vector<OmpFastStage>& schedule);

// InvalidArgument unless the schedule is non-empty with keys_per_step >= 1, refit_every >= 1,
// refit_pg_steps >= 0, power_iters >= 1 and 0 < lower <= upper (finite).
Status CheckOmpFastOptions(const OmpFastOptions& o);

// ---- Launchers (no validation) -----------------------------------------------------------------
// Per-round plan arrays are [batch] int32 slices of the uploaded [rounds, batch] plan: picks (keys
// this round), before (keys selected before it) and refit (1 when a refit follows). Phi_S is
// stored column by column: column c of head b is cols[(sel_off[b] + c) * n, + n).

// corr[x] = sum_{t < tiles} partial[t * count + x] for x < count (the row-tile sums of Phi^T r).
cudaError_t LaunchOmpCorrFinalize(const float* partial, int64_t tiles, int64_t count, float* corr,
                                  cudaStream_t stream);
// One block per head with picks[b] > 0: picks[b] greedy argmax picks of corr [batch, T] among
// taken == 0 (marks them taken, appends them to `order` after the `before[b]` earlier ones).
cudaError_t LaunchOmpPick(const float* corr, int64_t batch, int64_t tokens, const int32_t* picks,
                          const int32_t* before, const int64_t* sel_off, uint8_t* taken,
                          int32_t* order, cudaStream_t stream);
// Copies the new columns Phi[b, :, j] into cols and sets their w and v entries.
cudaError_t LaunchOmpAddColumns(const float* phi, const float* corr, int64_t batch, int64_t n,
                                int64_t tokens, int32_t max_picks, const int32_t* picks,
                                const int32_t* before, const int64_t* sel_off, const int32_t* order,
                                float lower, float upper, float* cols, float* w, float* v,
                                cudaStream_t stream);
// out_i = (z ? z_i : 0) + sign * sum_{c < count_b} cols_c[i] x_c, for heads with active[b] != 0
// (count_b = before[b] + picks[b]); sign = -1 with z, +1 without.
cudaError_t LaunchOmpColsMatVec(const float* cols, const float* x, const float* z, int64_t batch,
                                int64_t n, const int32_t* active, const int32_t* picks,
                                const int32_t* before, const int64_t* sel_off, float* out,
                                cudaStream_t stream);
// g_c = sum_i cols_c[i] u_i for c < count_b; step == nullptr: y_c = g_c; otherwise
// w_c = clamp(w_c + step_b g_c). max_count bounds count_b (grid size).
cudaError_t LaunchOmpColsMatTVec(const float* cols, const float* u, int64_t batch, int64_t n,
                                 int64_t max_count, const int32_t* active, const int32_t* picks,
                                 const int32_t* before, const int64_t* sel_off, const float* step,
                                 float lower, float upper, float* y, cudaStream_t stream);
// One block per active head: L = ||y_b||, v_b = y_b / L, step_b = 1 / L (0 when L = 0).
cudaError_t LaunchOmpNormalize(const float* y, int64_t batch, const int32_t* active,
                               const int32_t* picks, const int32_t* before, const int64_t* sel_off,
                               float* v, float* step, cudaStream_t stream);
// One block per head: indices[sel_off[b] + r] = the r-th position j with taken[b T + j] != 0.
cudaError_t LaunchOmpCompact(const uint8_t* taken, int64_t batch, int64_t tokens,
                             const int64_t* sel_off, int32_t* indices, cudaStream_t stream);

// ---- Validated entry point ---------------------------------------------------------------------
// phi: [batch, n, T] dense; z: [batch, n]; out.cols(b) = t_b <= T. Writes out.total() positions,
// ascending per head, to `indices`. Scratch comes from `pool`.
// REQUIRES (else InvalidArgument): CheckOmpFastOptions(o), CheckRagged(out, n), T in
// [1, INT32_MAX], every t_b <= T, non-null pointers. Inputs must be finite.
Status OmpFastSelect(const float* phi, const float* z, int64_t batch, int64_t n, int64_t tokens,
                     const RaggedLayout& out, const OmpFastOptions& o, int32_t* indices,
                     DeviceMemoryPool& pool, cudaStream_t stream);

}  // namespace kvc::cuda
