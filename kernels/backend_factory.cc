#include "kernels/backend_factory.h"

#if KVC_HAVE_GPU_BACKEND
#include "kernels/cuda/device.h"
#include "kernels/cuda/gpu_backend.h"
#include "kernels/cuda/nccl_comm.h"
#endif

namespace kvc {

#if KVC_HAVE_GPU_BACKEND

bool GpuBackendBuilt() { return true; }
bool GpuMultiDeviceBuilt() { return cuda::NcclBuilt(); }
int GpuDeviceCount() { return cuda::DeviceCount(); }
std::string GpuUnavailableReason() { return cuda::NoDeviceReason(); }

Result<std::shared_ptr<ComputeBackend>> MakeGpuBackend(const GpuBackendOptions& options) {
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<cuda::GpuBackend> b, cuda::GpuBackend::Create(options));
  return std::shared_ptr<ComputeBackend>(std::move(b));
}

#else  // !KVC_HAVE_GPU_BACKEND

bool GpuBackendBuilt() { return false; }
bool GpuMultiDeviceBuilt() { return false; }
int GpuDeviceCount() { return 0; }
std::string GpuUnavailableReason() { return "this build has no CUDA (KVC_WITH_CUDA=OFF)"; }

Result<std::shared_ptr<ComputeBackend>> MakeGpuBackend(const GpuBackendOptions&) {
  return Status::Unavailable("no GPU backend: " + GpuUnavailableReason());
}

#endif  // KVC_HAVE_GPU_BACKEND

}  // namespace kvc
