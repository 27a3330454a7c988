// AmFit on half-precision caches: q, k and v arrive as raw f16 or bf16 host data, are uploaded as
// such (half the transfer) and widened to f32 on the device (convert.cuh); the fit itself is
// am_fit.h's, all f32 (design §4 step 3: scores and solves in f32 even for f16 inputs).
//
// Stream semantics and thread safety: as AmFitOnHost (am_fit.h); returns with the result on the
// host (synchronises).
#pragma once

#include <cstdint>
#include <vector>

#include "common/dtype.h"
#include "kernels/cuda/am_fit.h"

namespace kvc::cuda {

// AmFitHostProblem with q, k, v as raw element bits of `dtype` (f32 data as its 4 bytes).
struct AmFitTypedHostProblem {
  DType dtype = DType::kF16;  // f32, f16 or bf16
  const void* q = nullptr;    // [batch, n, d]
  const void* k = nullptr;    // [batch, T, d]
  const void* v = nullptr;    // [batch, T, d]
  int64_t batch = 0;
  int64_t n = 0;
  int64_t tokens = 0;
  int64_t head_dim = 0;
  std::vector<int64_t> budgets;
};

// REQUIRES (else InvalidArgument / NotSupported for other dtypes): positive sizes, non-null
// arrays, AmFit's requirements. Results are f32 (narrow them with ConvertOnDevice if needed).
Result<AmFitHostResult> AmFitOnHostTyped(const AmFitTypedHostProblem& problem,
                                         const AmFitOptions& options, GpuContext& ctx);

}  // namespace kvc::cuda
