// Device helpers of the selection stage (cpu::SelectTopK, pipeline.h) on top of the ragged top-k
// (topk.cuh):
//
//   RankValues: y[i] = x[i] with NaN -> -inf and -0 -> +0 (the CPU ranks NaN lowest and treats
//               the zeros as equal; CUB's radix order would not), and, when cap_infinity,
//               +inf -> FLT_MAX (so the +inf that MarkForced writes ranks above every score).
//   MarkForced: for every head b, y[b * T + priority[i]] = +inf for i < min(budget[b], n):
//               the forced positions a head of that budget keeps before anything else.
//
// With RankValues(cap_infinity) then MarkForced, the top budget[b] of head b under "higher value
// first, then lower position" (SegmentedTopK's order) are exactly cpu::SelectTopK's choice: the
// forced positions first, then the best others, ties to the lower position. The one difference:
// a score of +inf ties with FLT_MAX here.
//
// Stream semantics: queued on `stream`; nothing synchronises.
// Thread safety: stateless.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/status.h"

namespace kvc::cuda {

cudaError_t LaunchRankValues(const float* x, float* y, int64_t count, bool cap_infinity,
                             cudaStream_t stream);

// budgets: device int64 [batch]; priority: device int32 [n], each in [0, tokens), unique.
cudaError_t LaunchMarkForced(float* y, int64_t batch, int64_t tokens, const int32_t* priority,
                             int64_t n, const int64_t* budgets, cudaStream_t stream);

// REQUIRES (else InvalidArgument): count >= 0; non-null pointers when count > 0 (y may alias x).
Status RankValues(const float* x, float* y, int64_t count, bool cap_infinity, cudaStream_t stream);

// REQUIRES (else InvalidArgument): 1 <= batch <= 65535, tokens >= 1, n >= 0, non-null pointers
// when n > 0. The device does not check priority's range or uniqueness.
Status MarkForced(float* y, int64_t batch, int64_t tokens, const int32_t* priority, int64_t n,
                  const int64_t* budgets, cudaStream_t stream);

}  // namespace kvc::cuda
