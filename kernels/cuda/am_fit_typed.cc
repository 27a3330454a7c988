#include "kernels/cuda/am_fit_typed.h"

#include "kernels/cuda/convert.cuh"

namespace kvc::cuda {

Result<AmFitHostResult> AmFitOnHostTyped(const AmFitTypedHostProblem& hp,
                                         const AmFitOptions& options, GpuContext& ctx) {
  const int64_t B = hp.batch, n = hp.n, T = hp.tokens, d = hp.head_dim;
  if (B < 1 || n < 1 || T < 1 || d < 1 || hp.q == nullptr || hp.k == nullptr || hp.v == nullptr) {
    return Status::InvalidArgument("AmFitOnHostTyped: bad shape or null array");
  }
  DeviceMemoryPool& pool = ctx.pool();
  cudaStream_t st = ctx.stream();
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dq, UploadAsF32(hp.dtype, hp.q, size_t(B * n * d), pool, st));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dk, UploadAsF32(hp.dtype, hp.k, size_t(B * T * d), pool, st));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dv, UploadAsF32(hp.dtype, hp.v, size_t(B * T * d), pool, st));
  AmFitProblem p{dq.as<float>(), dk.as<float>(), dv.as<float>(), B, n, T, d, hp.budgets, nullptr};
  KVC_ASSIGN_OR_RETURN(AmFitResult r, AmFit(p, options, ctx));
  return DownloadAmFit(r, B, T, d, st);
}

}  // namespace kvc::cuda
