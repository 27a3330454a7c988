#include "kernels/cuda/cholesky.h"

#include <algorithm>
#include <climits>
#include <string>

#include "kernels/cuda/context.h"
#include "kernels/cuda/device.h"

namespace kvc::cuda {
namespace {

Status CheckSystems(const std::vector<SpdSystem>& systems, const char* op) {
  for (size_t i = 0; i < systems.size(); ++i) {
    if (systems[i].order < 1 || systems[i].order > INT_MAX || systems[i].g == nullptr) {
      return Status::InvalidArgument(std::string(op) + ": bad system " + std::to_string(i));
    }
  }
  return Status::OK();
}

template <typename T>
Result<DeviceBuffer> UploadPointers(const std::vector<SpdSystem>& systems, T* SpdSystem::*member,
                                    DeviceMemoryPool& pool, cudaStream_t stream) {
  std::vector<T*> ptrs;
  ptrs.reserve(systems.size());
  for (const SpdSystem& s : systems) ptrs.push_back(s.*member);
  return Upload(ptrs, pool, stream);
}

Status FactorBatched(cusolverDnHandle_t solver, const std::vector<SpdSystem>& systems,
                     std::vector<int>* infos, DeviceMemoryPool& pool, cudaStream_t stream) {
  const int m = int(systems[0].order);
  const int count = int(systems.size());
  KVC_ASSIGN_OR_RETURN(DeviceBuffer ptrs, UploadPointers(systems, &SpdSystem::g, pool, stream));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dinfo, pool.AllocateArray<int>(systems.size()));
  KVC_CUSOLVER_RETURN_IF_ERROR(
      cusolverDnSpotrfBatched(solver, CUBLAS_FILL_MODE_LOWER, m, ptrs.as<float*>(), m,
                              dinfo.as<int>(), count),
      "cusolverDnSpotrfBatched");
  KVC_ASSIGN_OR_RETURN(*infos, Download(dinfo.as<int>(), systems.size(), stream));
  return Status::OK();
}

Status FactorEach(cusolverDnHandle_t solver, const std::vector<SpdSystem>& systems,
                  std::vector<int>* infos, DeviceMemoryPool& pool, cudaStream_t stream) {
  int lwork = 0;
  for (const SpdSystem& s : systems) {
    int lw = 0;
    KVC_CUSOLVER_RETURN_IF_ERROR(cusolverDnSpotrf_bufferSize(solver, CUBLAS_FILL_MODE_LOWER,
                                                             int(s.order), s.g, int(s.order), &lw),
                                 "cusolverDnSpotrf_bufferSize");
    lwork = std::max(lwork, lw);
  }
  KVC_ASSIGN_OR_RETURN(DeviceBuffer work, pool.AllocateArray<float>(size_t(std::max(lwork, 1))));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dinfo, pool.AllocateArray<int>(systems.size()));
  for (size_t i = 0; i < systems.size(); ++i) {
    const SpdSystem& s = systems[i];
    KVC_CUSOLVER_RETURN_IF_ERROR(
        cusolverDnSpotrf(solver, CUBLAS_FILL_MODE_LOWER, int(s.order), s.g, int(s.order),
                         work.as<float>(), lwork, dinfo.as<int>() + i),
        "cusolverDnSpotrf");
  }
  KVC_ASSIGN_OR_RETURN(*infos, Download(dinfo.as<int>(), systems.size(), stream));
  return Status::OK();  // `work` is released after the download synchronised the stream
}

Status SolveBatched(cusolverDnHandle_t solver, cublasHandle_t blas,
                    const std::vector<SpdSystem>& systems, int64_t nrhs, DeviceMemoryPool& pool,
                    cudaStream_t stream) {
  const int m = int(systems[0].order);
  const int count = int(systems.size());
  KVC_ASSIGN_OR_RETURN(DeviceBuffer gp, UploadPointers(systems, &SpdSystem::g, pool, stream));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer bp, UploadPointers(systems, &SpdSystem::rhs, pool, stream));
  if (nrhs == 1) {
    KVC_ASSIGN_OR_RETURN(DeviceBuffer dinfo, pool.AllocateArray<int>(1));
    KVC_CUSOLVER_RETURN_IF_ERROR(
        cusolverDnSpotrsBatched(solver, CUBLAS_FILL_MODE_LOWER, m, 1, gp.as<float*>(), m,
                                bp.as<float*>(), m, dinfo.as<int>(), count),
        "cusolverDnSpotrsBatched");
    return Status::OK();
  }
  const float one = 1.f;
  for (cublasOperation_t op : {CUBLAS_OP_N, CUBLAS_OP_T}) {  // L Y = B, then L^T X = Y
    KVC_CUBLAS_RETURN_IF_ERROR(
        cublasStrsmBatched(blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, op, CUBLAS_DIAG_NON_UNIT,
                           m, int(nrhs), &one, gp.as<float*>(), m, bp.as<float*>(), m, count),
        "cublasStrsmBatched");
  }
  return Status::OK();
}

}  // namespace

bool UsesBatchedCholesky(const std::vector<SpdSystem>& systems) {
  if (systems.size() < 2 || systems.size() > size_t(INT_MAX)) return false;
  const int64_t m = systems[0].order;
  if (m > kBatchedMaxOrder) return false;
  return std::all_of(systems.begin(), systems.end(),
                     [m](const SpdSystem& s) { return s.order == m; });
}

Status CholeskyFactor(cusolverDnHandle_t solver, const std::vector<SpdSystem>& systems,
                      std::vector<int>* infos, DeviceMemoryPool& pool, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckSystems(systems, "CholeskyFactor"));
  infos->clear();
  if (systems.empty()) return Status::OK();
  if (UsesBatchedCholesky(systems)) return FactorBatched(solver, systems, infos, pool, stream);
  return FactorEach(solver, systems, infos, pool, stream);
}

Status CholeskySolve(cusolverDnHandle_t solver, cublasHandle_t blas,
                     const std::vector<SpdSystem>& systems, int64_t nrhs, DeviceMemoryPool& pool,
                     cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckSystems(systems, "CholeskySolve"));
  if (nrhs < 1 || nrhs > INT_MAX) return Status::InvalidArgument("CholeskySolve: bad nrhs");
  for (const SpdSystem& s : systems) {
    if (s.rhs == nullptr) return Status::InvalidArgument("CholeskySolve: null right-hand side");
  }
  if (systems.empty()) return Status::OK();
  if (UsesBatchedCholesky(systems)) return SolveBatched(solver, blas, systems, nrhs, pool, stream);
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dinfo, pool.AllocateArray<int>(1));
  for (const SpdSystem& s : systems) {
    KVC_CUSOLVER_RETURN_IF_ERROR(
        cusolverDnSpotrs(solver, CUBLAS_FILL_MODE_LOWER, int(s.order), int(nrhs), s.g, int(s.order),
                         s.rhs, int(s.order), dinfo.as<int>()),
        "cusolverDnSpotrs");
  }
  return Status::OK();
}

}  // namespace kvc::cuda
