// Row statistics, row softmax and the highest-attention column score over ragged batches of
// score matrices (see ragged.h for the layout). All f32; exp and log are the accurate expf/logf.
//
//   RowStats:            m_i = max_j (x_ij + bias_j),  lse_i = log sum_j exp(x_ij + bias_j)
//   RowExpShift:         y_ij = exp(x_ij + bias_j - shift_i)         (y may alias x)
//   RowSoftmax:          y = softmax_j(x_ij + bias_j), lse out       (RowStats + RowExpShift)
//   SoftmaxColumnScores: in place a_ij = exp(s_ij - lse_i); score_j = sqrt(mean_i a_ij^2)
//   RowMass:             z_i = exp(lse_i - m_i) = sum_j exp(x_ij - m_i)
//
// Row vectors (m, lse, shift, z) are [batch, rows]; column vectors (bias, score) follow the
// layout's offsets. A matrix with no columns has m = lse = -inf.
// Reductions are deterministic: fixed trees, no atomics.
//
// Stream semantics: everything is queued on `stream`; nothing synchronises.
// Thread safety: stateless; concurrent calls on different data are safe.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"
#include "kernels/cuda/memory_pool.h"
#include "kernels/cuda/ragged.h"

namespace kvc::cuda {

// ---- Launchers (no validation) -----------------------------------------------------------------

// col_bias and row_max may be null.
cudaError_t LaunchRowStats(const float* x, const float* col_bias, const RaggedView& v,
                           float* row_max, float* row_lse, cudaStream_t stream);

// col_bias may be null. With colsq_partial non-null, also writes per row tile t the column sums
// colsq_partial[t * total_cols + c] = sum_{i in tile t} y_ic^2. REQUIRES: row_tile >= 1 and
// ceil(rows / row_tile) <= 65535.
cudaError_t LaunchRowExpShift(const float* x, float* y, const float* col_bias,
                              const float* row_shift, const RaggedView& v, int64_t row_tile,
                              float* colsq_partial, cudaStream_t stream);

// score[c] = sqrt(sum_t partial[t * total_cols + c] / rows).
cudaError_t LaunchColumnScoreFinalize(const float* partial, int64_t num_tiles, int64_t total_cols,
                                      int64_t rows, float* score, cudaStream_t stream);

// out[i] = exp(a[i] - b[i]); a[i] = b[i] = -inf gives 0.
cudaError_t LaunchExpDifference(const float* a, const float* b, int64_t count, float* out,
                                cudaStream_t stream);

// ---- Validated entry points --------------------------------------------------------------------
// REQUIRES (else InvalidArgument): CheckRagged(layout, rows) and non-null required pointers.

Status RowStats(const float* x, const float* col_bias, const RaggedLayout& layout, int64_t rows,
                float* row_max, float* row_lse, cudaStream_t stream);

Status RowExpShift(const float* x, float* y, const float* col_bias, const float* row_shift,
                   const RaggedLayout& layout, int64_t rows, cudaStream_t stream);

// row_lse receives the log-sum-exp of every row (of x + bias).
Status RowSoftmax(const float* x, float* y, const float* col_bias, const RaggedLayout& layout,
                  int64_t rows, float* row_lse, cudaStream_t stream);

// s (in: scores; out: softmax probabilities) with its precomputed row_lse (from RowStats);
// score gets layout.total() entries. Scratch comes from `pool`.
Status SoftmaxColumnScores(float* s, const RaggedLayout& layout, int64_t rows, const float* row_lse,
                           float* score, DeviceMemoryPool& pool, cudaStream_t stream);

// z [count] = exp(row_lse - row_max).
Status RowMass(const float* row_lse, const float* row_max, int64_t count, float* z,
               cudaStream_t stream);

// Rows per tile used by SoftmaxColumnScores for `rows` rows (at most 64 tiles).
int64_t ColumnScoreRowTile(int64_t rows);

}  // namespace kvc::cuda
