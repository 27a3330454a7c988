#include "kernels/cuda/context.h"

#include <string>
#include <utility>

namespace kvc::cuda {

Result<std::unique_ptr<GpuContext>> GpuContext::Create(int device_index, PoolOptions pool_options) {
  if (DeviceCount() == 0) return Status::Unavailable("no CUDA device: " + NoDeviceReason());
  KVC_ASSIGN_OR_RETURN(DeviceInfo info, QueryDevice(device_index));  // also sets the device
  std::unique_ptr<GpuContext> ctx(new GpuContext());
  ctx->info_ = std::move(info);
  KVC_ASSIGN_OR_RETURN(ctx->stream_, Stream::Create());
  KVC_ASSIGN_OR_RETURN(ctx->cublas_, CublasHandle::Create(ctx->stream_.get()));
  KVC_ASSIGN_OR_RETURN(ctx->cusolver_, CusolverHandle::Create(ctx->stream_.get()));
  ctx->pool_ = std::make_unique<DeviceMemoryPool>(std::make_unique<CudaAllocator>(), pool_options);
  return ctx;
}

GpuContext::~GpuContext() {
  // Work still queued may use pooled blocks: finish it before the pool frees them.
  if (stream_.get() != nullptr) stream_.Synchronize().IgnoreError();
  pool_.reset();
}

}  // namespace kvc::cuda
