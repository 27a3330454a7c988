// Batched Cholesky factorisation and solve of symmetric positive definite systems on cuSOLVER,
// one system per (layer, head); systems may differ in order (ragged budgets).
//
// Layout: G is column-major, order m, leading dimension m, and only its lower triangle is read
// (gemm.h's Gram writes exactly that). The right-hand side is column-major m x nrhs with leading
// dimension m. Both are overwritten: G by its factor L (lower), the right-hand side by the
// solution.
//
// Paths: when every system has the same order m <= kBatchedMaxOrder and there are at least two,
// cusolverDnSpotrfBatched factors them in one call and the solve is cusolverDnSpotrsBatched
// (nrhs = 1, its only supported width) or two cublasStrsmBatched sweeps (L Y = B, L^T X = Y).
// Otherwise each system goes through cusolverDnSpotrf / cusolverDnSpotrs in turn (large systems
// fill the device on their own).
//
// Stream semantics: CholeskyFactor synchronises `stream` (it reads the pivot infos back);
// CholeskySolve only queues work.
// Thread safety: as for the handles (one thread at a time per handle).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/cuda/memory_pool.h"

namespace kvc::cuda {

inline constexpr int64_t kBatchedMaxOrder = 256;

struct SpdSystem {
  float* g = nullptr;    // device, m x m column-major (lower triangle used)
  float* rhs = nullptr;  // device, m x nrhs column-major
  int64_t order = 0;     // m >= 1
};

// Factors every system in place. infos[i] receives cuSOLVER's info: 0 on success, k > 0 when
// the leading minor of order k is not positive definite (the factor is then unusable).
// REQUIRES (else InvalidArgument): every order in [1, INT32_MAX], non-null g pointers.
Status CholeskyFactor(cusolverDnHandle_t solver, const std::vector<SpdSystem>& systems,
                      std::vector<int>* infos, DeviceMemoryPool& pool, cudaStream_t stream);

// Solves G X = RHS in place for systems factored by CholeskyFactor with info 0. Both paths leave
// the same factor (L in the lower triangle), so systems factored in separate calls may be solved
// together. REQUIRES (else InvalidArgument): nrhs >= 1, non-null pointers; `blas` bound to
// `stream` (GpuContext does this).
Status CholeskySolve(cusolverDnHandle_t solver, cublasHandle_t blas,
                     const std::vector<SpdSystem>& systems, int64_t nrhs, DeviceMemoryPool& pool,
                     cudaStream_t stream);

// True when `systems` would take the batched path.
bool UsesBatchedCholesky(const std::vector<SpdSystem>& systems);

}  // namespace kvc::cuda
