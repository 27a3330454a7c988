// D2O's merge of evicted tokens (design §4; the GPU twin of cpu::D2oMergeRound, d2o.h), batched
// over whole layers of (layer, KV head) pairs. Per head b (layer l = b / heads), with kept
// positions P_b (sorted) and evicted positions E_b (the others; empty when P_b is empty):
//
//   1. MatchEvicted: s_i = max_j cos(k_e, k_j) over the kept keys, target_i = its argmax (ties:
//      the earlier kept key), for every evicted entry i (position e). Rows are divided by their
//      L2 norm (double sum, f32 scale; zero rows stay zero), the cosines are one f32 GEMM per head
//      (chunked over evicted rows to bound the similarity buffer).
//   2. EvictedMeanSimilarity: m_l[e] = mean of s over the heads of layer l that evicted e (double,
//      heads in order; NaN where none did), and per layer (sum_e m_l[e], #e with a mean).
//      The caller turns these into the threshold tau_l (cpu::D2oThreshold) on the host.
//   3. MergeEvicted: entry i merges into kept key j = target_i iff m_l[e] >= tau_l;
//      k_j <- (k_j + sum_{i -> j} s_i k_e) / (1 + n_j), the same weights for values, summed in
//      double in ascending position order (the CPU's order): the (target, i) pairs are sorted
//      stably with CUB, so the result is deterministic.
//
// Layouts: K, V [layers * heads, T, d]; kept / evicted positions are int32 lists ragged by their
// RaggedLayout (batch = layers * heads, offsets over entries); s and target follow the evicted
// layout; outputs follow the kept layout ([kept total, d]).
// Stream semantics: queued on `stream`; nothing synchronises. Scratch comes from `pool`.
// Thread safety: stateless; one cuBLAS handle per thread (as cuBLAS requires).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "kernels/cuda/memory_pool.h"
#include "kernels/cuda/ragged.h"

namespace kvc::cuda {

// Device inputs of one batch (not owned).
struct D2oMergeBatch {
  const float* k = nullptr;  // [layers * heads, T, d]
  const float* v = nullptr;  // [layers * heads, T, d]
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t tokens = 0;
  int64_t dim = 0;
  const int32_t* kept = nullptr;                 // positions, sorted per head
  const int32_t* evicted = nullptr;              // positions, sorted per head
  const RaggedLayout* kept_layout = nullptr;     // batch = layers * heads
  const RaggedLayout* evicted_layout = nullptr;  // batch = layers * heads
};

// ---- Launchers (no validation) -----------------------------------------------------------------

// out[r, :] = in[r, :] / ||in[r, :]|| (0 for a zero row); out may alias in.
cudaError_t LaunchUnitRows(const float* in, int64_t rows, int64_t d, float* out,
                           cudaStream_t stream);
// best[r] = max_c x[r, c], arg[r] = the first c reaching it (x is rows x cols, dense).
cudaError_t LaunchRowMaxArgmax(const float* x, int64_t rows, int64_t cols, float* best,
                               int32_t* arg, cudaStream_t stream);
// dense[b * T + evicted[i]] = s[i] for every evicted entry i of head b (dense is pre-filled NaN).
cudaError_t LaunchScatterEvicted(const float* s, const int32_t* evicted, const RaggedView& ev,
                                 int64_t tokens, float* dense, cudaStream_t stream);
// mean[l, e] = mean over h of the non-NaN dense[(l * heads + h) * T + e], NaN when none.
cudaError_t LaunchMeanSimilarity(const float* dense, int64_t layers, int64_t heads, int64_t tokens,
                                 double* mean, cudaStream_t stream);
// stats[2 l] = sum of the non-NaN mean[l, :], stats[2 l + 1] = their count.
cudaError_t LaunchLayerMeanStats(const double* mean, int64_t layers, int64_t tokens, double* stats,
                                 cudaStream_t stream);
// keys[i] = kept offset of head b + target[i] when mean[l, evicted[i]] >= tau[l], else INT32_MAX;
// vals[i] = i.
cudaError_t LaunchMergeKeys(const int32_t* target, const int32_t* evicted, const RaggedView& ev,
                            const int64_t* kept_offsets, int64_t heads, int64_t tokens,
                            const double* mean, const double* tau, int32_t* keys, int32_t* vals,
                            cudaStream_t stream);
// start[k] / end[k] = the run of key k in the sorted keys (both pre-filled 0).
cudaError_t LaunchSegmentBounds(const int32_t* keys, int64_t n, int32_t* start, int32_t* end,
                                cudaStream_t stream);
// Step 3's update for every kept entry, given the sorted runs.
cudaError_t LaunchMergeRows(const D2oMergeBatch& m, const RaggedView& kept, const int32_t* start,
                            const int32_t* end, const int32_t* order, const float* s, float* out_k,
                            float* out_v, cudaStream_t stream);

// ---- Validated entry points --------------------------------------------------------------------
// REQUIRES (else InvalidArgument) for every entry point: layers, heads >= 1, layers * heads <=
// 65535, 1 <= T and layers * heads * T < 2^31, 1 <= d <= 65536, both layouts of batch
// layers * heads with no head over T entries, non-null pointers. Positions are not range-checked
// on the device (methods.h's D2oMergeGpu builds them from a checked selection).

// s, target: [evicted total].
Status MatchEvicted(const D2oMergeBatch& m, float* s, int32_t* target, cublasHandle_t cublas,
                    DeviceMemoryPool& pool, cudaStream_t stream);

// mean: [layers, T]; stats: [layers, 2].
Status EvictedMeanSimilarity(const D2oMergeBatch& m, const float* s, double* mean, double* stats,
                             DeviceMemoryPool& pool, cudaStream_t stream);

// tau: [layers] (device); out_k, out_v: [kept total, d].
Status MergeEvicted(const D2oMergeBatch& m, const float* s, const int32_t* target,
                    const double* mean, const double* tau, float* out_k, float* out_v,
                    DeviceMemoryPool& pool, cudaStream_t stream);

}  // namespace kvc::cuda
