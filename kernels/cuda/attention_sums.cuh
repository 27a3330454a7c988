// Attention column sums of the query-based eviction methods (design §4: H2O, SnapKV, PyramidKV,
// DynamicKV, D2O): for every query head, sum over its query rows of the (causal) softmax
// attention each key receives. The GPU twin of kvc::cpu::AccumulateAttention.
//
// A batch of B KV heads, each with G query heads of `rows` query rows over T keys. The scores of
// one chunk of R rows per query head (rows r0 .. r0 + R - 1) are stored as
//   S [B, G, R, T] row-major (matrix b, row g * R + rr, leading dimension T),
// e.g. from G strided-batched GEMMs (gemm.h). Row r sits at position first_pos + r and sees
//   visible(r) = causal ? min(T, first_pos + r + 1) : T   keys (0 .. visible - 1).
//
//   MaskedRowLse:         lse[b, g, rr] = log sum_{t < visible(r0 + rr)} exp(S[b, g, rr, t])
//   AccumulateColumnSums: colsum[b, g, t] += sum_{rr : t < visible(r0 + rr)}
//                                              exp(S[b, g, rr, t] - lse[b, g, rr])
// colsum is double (as the CPU's accumulators); the probabilities are f32 (expf). Calling
// AccumulateColumnSums once per row chunk (same stream) accumulates over all rows.
// Reductions are deterministic: fixed trees, each output owned by one thread, no atomics.
//
// Stream semantics: queued on `stream`; nothing synchronises.
// Thread safety: stateless; concurrent calls on different data are safe.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace kvc::cuda {

// Geometry of one chunk of query rows; a plain struct passed to kernels by value.
struct AttentionChunk {
  int64_t batch = 0;       // B: KV heads
  int64_t group = 0;       // G: query heads per KV head
  int64_t chunk_rows = 0;  // R: rows of this chunk per query head
  int64_t row0 = 0;        // r0: index of the chunk's first row among the query head's rows
  int64_t tokens = 0;      // T
  int64_t first_pos = 0;   // position of row 0 (causal only)
  bool causal = false;
};

// ---- Launchers (no validation) -----------------------------------------------------------------

// lse has B * G * R entries ([b, g, rr]).
cudaError_t LaunchMaskedRowLse(const float* s, const AttentionChunk& c, float* lse,
                               cudaStream_t stream);

// colsum has B * G * T entries ([b, g, t]); it is read and updated.
cudaError_t LaunchAccumulateColumnSums(const float* s, const float* lse, const AttentionChunk& c,
                                       double* colsum, cudaStream_t stream);

// ---- Validated entry points --------------------------------------------------------------------
// REQUIRES (else InvalidArgument): 1 <= B <= 65535, 1 <= G <= 65535, R >= 1, G * R <= INT32_MAX,
// r0 >= 0, T >= 1; when causal, first_pos >= 0 and first_pos + r0 + R <= T (every row sees at
// least one key); non-null pointers. Scores must be finite.
Status CheckAttentionChunk(const AttentionChunk& c, const char* op);

Status MaskedRowLse(const float* s, const AttentionChunk& c, float* lse, cudaStream_t stream);

Status AccumulateColumnSums(const float* s, const float* lse, const AttentionChunk& c,
                            double* colsum, cudaStream_t stream);

}  // namespace kvc::cuda
