// CUDA device discovery, error conversion into kvc::Status, and RAII owners for streams, events
// and library handles. Host code only; usable from C++20 (nvcc) and C++23 translation units.
//
// Thread safety: the free functions are safe to call concurrently. Stream, Event, CublasHandle and
// CusolverHandle are move-only owners; one object must not be used by two threads at once (cuBLAS
// and cuSOLVER handles carry per-handle state such as the stream and the math mode).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace kvc::cuda {

// ---- Discovery ---------------------------------------------------------------------------------

struct DeviceInfo {
  int index = 0;
  std::string name;
  int cc_major = 0;
  int cc_minor = 0;
  int sm_count = 0;
  size_t total_memory = 0;  // bytes
  size_t free_memory = 0;   // bytes, at the time of the query
};

// Number of usable CUDA devices. Never fails: returns 0 when there is no driver, no device, or
// the runtime reports any error (the reason is kept for NoDeviceReason()).
int DeviceCount();

// A sentence saying why DeviceCount() is 0 ("cudaGetDeviceCount: no CUDA-capable device is
// detected"); empty when a device exists.
std::string NoDeviceReason();

// Properties of device `index`. REQUIRES: 0 <= index < DeviceCount(); otherwise InvalidArgument.
// Makes `index` the calling thread's current device (as cudaMemGetInfo needs).
Result<DeviceInfo> QueryDevice(int index);

// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)".
std::string DescribeDevice(const DeviceInfo& info);

// ---- Error conversion --------------------------------------------------------------------------
// OK for success codes. Otherwise a Status whose message is "<what>: <library's error name and
// text>". Mapping: out of memory -> ResourceExhausted; no device / driver too old ->
// Unavailable; unsupported feature or architecture -> NotSupported; everything else -> Internal
// (the validated entry points reject bad arguments before any library sees them, so a rejected
// argument reaching a library is a bug).

Status FromCuda(cudaError_t err, std::string_view what);
Status FromCublas(cublasStatus_t st, std::string_view what);
Status FromCusolver(cusolverStatus_t st, std::string_view what);

// Stable names, e.g. "CUBLAS_STATUS_ALLOC_FAILED".
const char* CublasStatusName(cublasStatus_t st);
const char* CusolverStatusName(cusolverStatus_t st);

// Returns FromCuda(cudaGetLastError()) after kernel launches; clears the sticky launch error.
Status LastLaunchError(std::string_view what);

// ---- RAII owners -------------------------------------------------------------------------------

// A non-blocking stream (does not synchronise with the legacy default stream).
class Stream {
 public:
  Stream() = default;
  static Result<Stream> Create();
  ~Stream();
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  cudaStream_t get() const { return stream_; }
  // Blocks until all work queued so far has finished; reports asynchronous kernel errors.
  Status Synchronize() const;

 private:
  cudaStream_t stream_ = nullptr;
};

// A timing event.
class Event {
 public:
  Event() = default;
  static Result<Event> Create();
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  cudaEvent_t get() const { return event_; }
  Status Record(cudaStream_t stream) const;
  Status Synchronize() const;
  // Milliseconds between two recorded events. REQUIRES: both recorded and completed.
  static Result<float> ElapsedMs(const Event& start, const Event& end);

 private:
  cudaEvent_t event_ = nullptr;
};

// A cuBLAS handle bound to one stream. The math mode is left at CUBLAS_DEFAULT_MATH (pure f32);
// callers that want TF32 set it per call (see gemm.h).
class CublasHandle {
 public:
  CublasHandle() = default;
  static Result<CublasHandle> Create(cudaStream_t stream);
  ~CublasHandle();
  CublasHandle(CublasHandle&& other) noexcept;
  CublasHandle& operator=(CublasHandle&& other) noexcept;
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;

  cublasHandle_t get() const { return handle_; }

 private:
  cublasHandle_t handle_ = nullptr;
};

// A cuSOLVER dense handle bound to one stream.
class CusolverHandle {
 public:
  CusolverHandle() = default;
  static Result<CusolverHandle> Create(cudaStream_t stream);
  ~CusolverHandle();
  CusolverHandle(CusolverHandle&& other) noexcept;
  CusolverHandle& operator=(CusolverHandle&& other) noexcept;
  CusolverHandle(const CusolverHandle&) = delete;
  CusolverHandle& operator=(const CusolverHandle&) = delete;

  cusolverDnHandle_t get() const { return handle_; }

 private:
  cusolverDnHandle_t handle_ = nullptr;
};

}  // namespace kvc::cuda

// Returns from the enclosing function (which returns Status or Result<T>) when a CUDA runtime
// call fails.
#define KVC_CUDA_RETURN_IF_ERROR(expr, what)               \
  do {                                                     \
    cudaError_t kvc_cuda_err_ = (expr);                    \
    if (kvc_cuda_err_ != cudaSuccess) {                    \
      return ::kvc::cuda::FromCuda(kvc_cuda_err_, (what)); \
    }                                                      \
  } while (0)

#define KVC_CUBLAS_RETURN_IF_ERROR(expr, what)                \
  do {                                                        \
    cublasStatus_t kvc_cublas_st_ = (expr);                   \
    if (kvc_cublas_st_ != CUBLAS_STATUS_SUCCESS) {            \
      return ::kvc::cuda::FromCublas(kvc_cublas_st_, (what)); \
    }                                                         \
  } while (0)

#define KVC_CUSOLVER_RETURN_IF_ERROR(expr, what)                  \
  do {                                                            \
    cusolverStatus_t kvc_cusolver_st_ = (expr);                   \
    if (kvc_cusolver_st_ != CUSOLVER_STATUS_SUCCESS) {            \
      return ::kvc::cuda::FromCusolver(kvc_cusolver_st_, (what)); \
    }                                                             \
  } while (0)
