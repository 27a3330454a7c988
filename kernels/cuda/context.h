// GpuContext: what every GPU op needs on one device (a stream, a cuBLAS and a cuSOLVER handle
// bound to it, and a caching memory pool), plus host <-> device copy helpers.
//
// Stream semantics: every op of kernels/cuda queues its work on the context's stream and returns
// without waiting, unless its header says it synchronises (the ones that must read a result on
// the host, e.g. Cholesky pivot checks). Download() synchronises the stream.
//
// Thread safety: a GpuContext is used by one thread at a time (its handles hold per-call state).
// Use one context per thread for concurrency; contexts on the same device share nothing.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "common/status.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/memory_pool.h"

namespace kvc::cuda {

class GpuContext {
 public:
  // Makes `device_index` current on the calling thread and creates the stream, handles and pool.
  // Unavailable when there is no device; InvalidArgument for a bad index.
  static Result<std::unique_ptr<GpuContext>> Create(int device_index = 0,
                                                    PoolOptions pool_options = {});
  ~GpuContext();
  GpuContext(const GpuContext&) = delete;
  GpuContext& operator=(const GpuContext&) = delete;

  const DeviceInfo& info() const { return info_; }
  cudaStream_t stream() const { return stream_.get(); }
  cublasHandle_t cublas() const { return cublas_.get(); }
  cusolverDnHandle_t cusolver() const { return cusolver_.get(); }
  DeviceMemoryPool& pool() { return *pool_; }
  Status Synchronize() const { return stream_.Synchronize(); }

 private:
  GpuContext() = default;
  DeviceInfo info_;
  Stream stream_;  // declared first: destroyed after the handles that are bound to it
  CublasHandle cublas_;
  CusolverHandle cusolver_;
  std::unique_ptr<DeviceMemoryPool> pool_;
};

// Copies `count` elements from host memory into a new pool buffer, ordered on `stream`. The host
// memory may be reused as soon as this returns (pageable copies are staged before returning).
template <typename T>
Result<DeviceBuffer> Upload(const T* host, size_t count, DeviceMemoryPool& pool,
                            cudaStream_t stream) {
  KVC_ASSIGN_OR_RETURN(DeviceBuffer buf, pool.AllocateArray<T>(count));
  if (count > 0) {
    KVC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(buf.get(), host, count * sizeof(T), cudaMemcpyHostToDevice, stream),
        "Upload");
  }
  return buf;
}

template <typename T>
Result<DeviceBuffer> Upload(const std::vector<T>& host, DeviceMemoryPool& pool,
                            cudaStream_t stream) {
  return Upload(host.data(), host.size(), pool, stream);
}

// Copies `count` elements from device memory to host, then synchronises `stream` (so the result
// is ready and earlier asynchronous errors on the stream surface here).
template <typename T>
Result<std::vector<T>> Download(const T* device, size_t count, cudaStream_t stream) {
  std::vector<T> host(count);
  if (count > 0) {
    KVC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost, stream),
        "Download");
  }
  KVC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream), "Download: cudaStreamSynchronize");
  return host;
}

}  // namespace kvc::cuda
