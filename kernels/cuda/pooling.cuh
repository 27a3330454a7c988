// Epilogues of the attention column sums (attention_sums.cuh) that turn per-query-head sums into
// per-KV-head scores or layer statistics, each the GPU twin of a CPU reference loop:
//
//   PooledGroupMean (SnapKV, PyramidKV, DynamicKV; cpu::WindowPooledScores):
//     raw_g[t]    = float(colsum[b, g, t] * row_scale)
//     pooled_g[t] = Pool1d(raw_g over the prefix [0, prefix))[t]  for t < prefix, raw_g[t] after
//                   (cpu::Pool1d: stride 1, padding kernel/2, avg = in-range sum / kernel, max
//                   ignores the padding)
//     out[b, t]   = sum over g = 0..G-1 of pooled_g[t] / float(G), accumulated in f32 in g order
//   GroupSum (H2O, D2O scores):
//     kDouble: out[b, t] = float(sum_g colsum[b, g, t])        (H2O: one double accumulator)
//     kFloat:  out[b, t] = sum_g float(colsum[b, g, t]) in f32  (D2O: f32 accumulation)
//   MinMaxVariance (D2O layer statistics; d2o.cc's MinMaxVariance), per row q of colsum:
//     var[q] = population variance over t of (colsum[q, t] - lo) / (hi - lo), 0 when hi == lo.
//
// Shapes: colsum [B, G, T] double; out [B, T] float; var [B * G] double.
// Reductions are deterministic (fixed trees, no atomics).
// Stream semantics: queued on `stream`; nothing synchronises.
// Thread safety: stateless.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace kvc::cuda {

struct PoolSpec {
  int64_t prefix = 0;      // pooled positions [0, prefix); the rest keep their raw value
  int kernel = 1;          // >= 1
  bool max_pool = false;   // max pooling instead of avg
  double row_scale = 1.0;  // raw = colsum * row_scale (1 / rows for a mean over the rows)
};

enum class GroupSumMode : uint8_t { kDouble = 0, kFloat = 1 };

// ---- Launchers (no validation) -----------------------------------------------------------------

cudaError_t LaunchPooledGroupMean(const double* colsum, int64_t batch, int64_t group,
                                  int64_t tokens, const PoolSpec& pool, float* out,
                                  cudaStream_t stream);

cudaError_t LaunchGroupSum(const double* colsum, int64_t batch, int64_t group, int64_t tokens,
                           GroupSumMode mode, float* out, cudaStream_t stream);

cudaError_t LaunchMinMaxVariance(const double* colsum, int64_t rows, int64_t tokens, double* var,
                                 cudaStream_t stream);

// ---- Validated entry points --------------------------------------------------------------------
// REQUIRES (else InvalidArgument): 1 <= batch <= 65535, group >= 1, tokens >= 1, non-null
// pointers; for pooling 0 <= prefix <= tokens and kernel >= 1; for the variance
// 1 <= rows <= INT32_MAX.

Status PooledGroupMean(const double* colsum, int64_t batch, int64_t group, int64_t tokens,
                       const PoolSpec& pool, float* out, cudaStream_t stream);

Status GroupSum(const double* colsum, int64_t batch, int64_t group, int64_t tokens,
                GroupSumMode mode, float* out, cudaStream_t stream);

Status MinMaxVariance(const double* colsum, int64_t rows, int64_t tokens, double* var,
                      cudaStream_t stream);

}  // namespace kvc::cuda
