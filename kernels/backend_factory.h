// Making compute backends (kernels/backend.h) without knowing how the build was configured:
// code that wants the GPU asks here, and gets Unavailable with a reason when the build has no
// CUDA or the machine has no device. Library: kvc_backends (links the CUDA backend when
// KVC_WITH_CUDA is on).
//
// Thread safety: every function may be called concurrently.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/backend.h"

namespace kvc {

// Options of the GPU backend (kernels/cuda/gpu_backend.h).
struct GpuBackendOptions {
  // Devices to use, by CUDA index. Default: empty (every device, 0..DeviceCount()-1).
  std::vector<int> devices;
  // TF32 tensor cores for the score products (QK^T, PV, Q C_k^T). Default: false (pure f32).
  bool tf32 = false;
  // Most KV heads per GPU batch; a batch that runs out of device memory is halved and retried
  // down to one head. Default: 0 (a whole layer's heads per batch).
  int max_batch_heads = 0;
};

// Whether this build contains the GPU backend (KVC_WITH_CUDA).
bool GpuBackendBuilt();
// Whether the GPU backend of this build can use several devices (NCCL was found).
bool GpuMultiDeviceBuilt();
// Usable CUDA devices; 0 when there is none or the build has no CUDA. Never fails.
int GpuDeviceCount();
// Why GpuDeviceCount() is 0 ("this build has no CUDA (KVC_WITH_CUDA=OFF)", "cudaGetDeviceCount:
// no CUDA-capable device is detected"); empty when a device exists.
std::string GpuUnavailableReason();

// The GPU backend (name "cuda") over `options`. Unavailable when the build has no CUDA or there
// is no device (the message says which); InvalidArgument for a bad device index; NotSupported
// for several devices in a build without NCCL; other errors from creating the GPU contexts or
// the NCCL communicator.
Result<std::shared_ptr<ComputeBackend>> MakeGpuBackend(const GpuBackendOptions& options = {});

}  // namespace kvc
