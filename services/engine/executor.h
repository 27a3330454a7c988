// CompactionExecutor: where the engine's jobs run. The seam between the engine (queueing,
// deadlines, storage) and the compaction kernels.
//
// Implementations:
//   "cpu"  the CPU reference, kvc::Compact(cache, spec).
//   "gpu"  kvc::Compact(cache, spec, backend) over the CUDA backend on every local GPU (layers
//          sharded across devices, NCCL for the score statistics; kernels/cuda/gpu_backend.h).
//          Stages the GPU does not implement run on the CPU inside the same call; the result's
//          "backend" metadata says which ran where. GPU results agree with the CPU's to the
//          tolerance gpu_backend.h documents; they are not bit-identical.
// Tests substitute their own executors to control timing.
//
// Thread safety: Run may be called concurrently from the engine's executor threads. The GPU
// executor shares one backend between them: its GPU stages take turns (one call at a time per
// GpuContext, a mutex in the backend) while the CPU stages of concurrent jobs run in parallel.
#pragma once

#include <memory>
#include <string_view>

#include "common/kv_cache.h"
#include "common/status.h"
#include "kernels/backend_factory.h"
#include "kernels/compactor.h"
#include "kernels/spec.h"

namespace kvc::engine {

class CompactionExecutor {
 public:
  virtual ~CompactionExecutor() = default;
  // A short name for logs, stats, health and the compute-time metric's label: "cpu" or "gpu"
  // (what actually runs the jobs).
  virtual const char* name() const = 0;
  // Compacts `cache` per `spec`, with the contract of kvc::Compact: InvalidArgument /
  // NotSupported for input it cannot run, changes nothing, never hides a failed gate.
  virtual Result<CompactionResult> Run(const KvCache& cache, const CompactionSpec& spec) = 0;
};

// The CPU reference executor (kvc::Compact).
std::shared_ptr<CompactionExecutor> MakeCpuExecutor();

// The GPU executor (name "gpu"). Degrades to the CPU executor (name "cpu", with a logged warning
// saying why) when the build has no CUDA or the machine has no CUDA device, so a worker asked
// for "gpu" on a GPU-less machine still serves. Other errors creating the backend (a bad device
// index, a device or NCCL that fails to initialise) are returned: the operator asked for GPUs
// that exist but do not work.
Result<std::shared_ptr<CompactionExecutor>> MakeGpuExecutor(const GpuBackendOptions& options = {});

// "cpu" -> MakeCpuExecutor(); "gpu" -> MakeGpuExecutor(); "auto" -> the GPU executor when a
// CUDA device is usable, else the CPU executor (any GPU failure falls back to the CPU with a
// warning). Anything else: InvalidArgument listing the names.
Result<std::shared_ptr<CompactionExecutor>> MakeExecutor(std::string_view kind);

}  // namespace kvc::engine
