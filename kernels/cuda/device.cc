#include "kernels/cuda/device.h"

#include <cstdio>
#include <string>
#include <utility>

namespace kvc::cuda {
namespace {

std::string Compose(std::string_view what, std::string_view name, std::string_view text) {
  std::string msg(what);
  msg += ": ";
  msg += name;
  if (!text.empty()) {
    msg += " (";
    msg += text;
    msg += ")";
  }
  return msg;
}

}  // namespace

// ---- Discovery ---------------------------------------------------------------------------------

int DeviceCount() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear, so later calls do not see a stale error
    return 0;
  }
  return count < 0 ? 0 : count;
}

std::string NoDeviceReason() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("cudaGetDeviceCount: ") + cudaGetErrorName(err) + " (" +
           cudaGetErrorString(err) + ")";
  }
  if (count <= 0) return "cudaGetDeviceCount: 0 devices";
  return "";
}

Result<DeviceInfo> QueryDevice(int index) {
  int count = DeviceCount();
  if (index < 0 || index >= count) {
    return Status::InvalidArgument("device index " + std::to_string(index) + " out of range [0, " +
                                   std::to_string(count) + ")");
  }
  cudaDeviceProp prop{};
  KVC_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, index), "cudaGetDeviceProperties");
  KVC_CUDA_RETURN_IF_ERROR(cudaSetDevice(index), "cudaSetDevice");
  size_t free_bytes = 0, total_bytes = 0;
  KVC_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  DeviceInfo info;
  info.index = index;
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.sm_count = prop.multiProcessorCount;
  info.total_memory = total_bytes;
  info.free_memory = free_bytes;
  return info;
}

std::string DescribeDevice(const DeviceInfo& info) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%s (sm_%d%d, %d SMs, %.1f GiB, %.1f GiB free)",
                info.name.c_str(), info.cc_major, info.cc_minor, info.sm_count,
                double(info.total_memory) / (1 << 30), double(info.free_memory) / (1 << 30));
  return buf;
}

// ---- Error conversion --------------------------------------------------------------------------

Status FromCuda(cudaError_t err, std::string_view what) {
  if (err == cudaSuccess) return Status::OK();
  std::string msg = Compose(what, cudaGetErrorName(err), cudaGetErrorString(err));
  switch (err) {
    case cudaErrorMemoryAllocation:
      return Status::ResourceExhausted(msg);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
      return Status::Unavailable(msg);
    case cudaErrorNotSupported:
    case cudaErrorInvalidDeviceFunction:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
      return Status::NotSupported(msg);
    default:
      return Status::Internal(msg);
  }
}

const char* CublasStatusName(cublasStatus_t st) {
  switch (st) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR:
      return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_<unknown>";
}

Status FromCublas(cublasStatus_t st, std::string_view what) {
  if (st == CUBLAS_STATUS_SUCCESS) return Status::OK();
  std::string msg = Compose(what, CublasStatusName(st), "");
  switch (st) {
    case CUBLAS_STATUS_ALLOC_FAILED:
      return Status::ResourceExhausted(msg);
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return Status::Unavailable(msg);
    case CUBLAS_STATUS_ARCH_MISMATCH:
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return Status::NotSupported(msg);
    default:
      return Status::Internal(msg);
  }
}

const char* CusolverStatusName(cusolverStatus_t st) {
  switch (st) {
    case CUSOLVER_STATUS_SUCCESS:
      return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED:
      return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED:
      return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE:
      return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH:
      return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_MAPPING_ERROR:
      return "CUSOLVER_STATUS_MAPPING_ERROR";
    case CUSOLVER_STATUS_EXECUTION_FAILED:
      return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR:
      return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
    case CUSOLVER_STATUS_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_NOT_SUPPORTED";
    case CUSOLVER_STATUS_ZERO_PIVOT:
      return "CUSOLVER_STATUS_ZERO_PIVOT";
    case CUSOLVER_STATUS_INVALID_LICENSE:
      return "CUSOLVER_STATUS_INVALID_LICENSE";
    case CUSOLVER_STATUS_INVALID_WORKSPACE:
      return "CUSOLVER_STATUS_INVALID_WORKSPACE";
    default:
      return "CUSOLVER_STATUS_<other>";
  }
}

Status FromCusolver(cusolverStatus_t st, std::string_view what) {
  if (st == CUSOLVER_STATUS_SUCCESS) return Status::OK();
  std::string msg = Compose(what, CusolverStatusName(st), "");
  switch (st) {
    case CUSOLVER_STATUS_ALLOC_FAILED:
      return Status::ResourceExhausted(msg);
    case CUSOLVER_STATUS_NOT_INITIALIZED:
      return Status::Unavailable(msg);
    case CUSOLVER_STATUS_ARCH_MISMATCH:
    case CUSOLVER_STATUS_NOT_SUPPORTED:
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED:
      return Status::NotSupported(msg);
    default:
      return Status::Internal(msg);
  }
}

Status LastLaunchError(std::string_view what) { return FromCuda(cudaGetLastError(), what); }

// ---- Stream ------------------------------------------------------------------------------------

Result<Stream> Stream::Create() {
  Stream s;
  KVC_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s.stream_, cudaStreamNonBlocking),
                           "cudaStreamCreateWithFlags");
  return s;
}

Stream::~Stream() {
  if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
}

Stream::Stream(Stream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
    stream_ = std::exchange(other.stream_, nullptr);
  }
  return *this;
}

Status Stream::Synchronize() const {
  return FromCuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
}

// ---- Event -------------------------------------------------------------------------------------

Result<Event> Event::Create() {
  Event e;
  KVC_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e.event_), "cudaEventCreate");
  return e;
}

Event::~Event() {
  if (event_ != nullptr) (void)cudaEventDestroy(event_);
}

Event::Event(Event&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (event_ != nullptr) (void)cudaEventDestroy(event_);
    event_ = std::exchange(other.event_, nullptr);
  }
  return *this;
}

Status Event::Record(cudaStream_t stream) const {
  return FromCuda(cudaEventRecord(event_, stream), "cudaEventRecord");
}

Status Event::Synchronize() const {
  return FromCuda(cudaEventSynchronize(event_), "cudaEventSynchronize");
}

Result<float> Event::ElapsedMs(const Event& start, const Event& end) {
  float ms = 0.f;
  KVC_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start.event_, end.event_),
                           "cudaEventElapsedTime");
  return ms;
}

// ---- Library handles ---------------------------------------------------------------------------

Result<CublasHandle> CublasHandle::Create(cudaStream_t stream) {
  CublasHandle h;
  KVC_CUBLAS_RETURN_IF_ERROR(cublasCreate(&h.handle_), "cublasCreate");
  KVC_CUBLAS_RETURN_IF_ERROR(cublasSetStream(h.handle_, stream), "cublasSetStream");
  KVC_CUBLAS_RETURN_IF_ERROR(cublasSetMathMode(h.handle_, CUBLAS_DEFAULT_MATH),
                             "cublasSetMathMode");
  return h;
}

CublasHandle::~CublasHandle() {
  if (handle_ != nullptr) (void)cublasDestroy(handle_);
}

CublasHandle::CublasHandle(CublasHandle&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)) {}

CublasHandle& CublasHandle::operator=(CublasHandle&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) (void)cublasDestroy(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

Result<CusolverHandle> CusolverHandle::Create(cudaStream_t stream) {
  CusolverHandle h;
  KVC_CUSOLVER_RETURN_IF_ERROR(cusolverDnCreate(&h.handle_), "cusolverDnCreate");
  KVC_CUSOLVER_RETURN_IF_ERROR(cusolverDnSetStream(h.handle_, stream), "cusolverDnSetStream");
  return h;
}

CusolverHandle::~CusolverHandle() {
  if (handle_ != nullptr) (void)cusolverDnDestroy(handle_);
}

CusolverHandle::CusolverHandle(CusolverHandle&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)) {}

CusolverHandle& CusolverHandle::operator=(CusolverHandle&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) (void)cusolverDnDestroy(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

}  // namespace kvc::cuda
