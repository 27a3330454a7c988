// CompactionExecutor: where the engine's jobs run. The seam between the engine (queueing,
// deadlines, storage) and the compaction kernels.
//
// Today there is one implementation, the CPU reference (kernels/compactor.h kvc::Compact). A GPU
// executor will implement the same interface over the CUDA kernels (one device, or several with
// NCCL) and be returned by MakeExecutor("gpu"); until then that name is NotSupported. Tests
// substitute their own executors to control timing.
//
// Thread safety: Run may be called concurrently from the engine's executor threads.
#pragma once

#include <memory>
#include <string_view>

#include "common/kv_cache.h"
#include "common/status.h"
#include "kernels/compactor.h"
#include "kernels/spec.h"

namespace kvc::engine {

class CompactionExecutor {
 public:
  virtual ~CompactionExecutor() = default;
  // A short name for logs, stats and health ("cpu").
  virtual const char* name() const = 0;
  // Compacts `cache` per `spec`, with the contract of kvc::Compact: InvalidArgument /
  // NotSupported for input it cannot run, changes nothing, never hides a failed gate.
  virtual Result<CompactionResult> Run(const KvCache& cache, const CompactionSpec& spec) = 0;
};

// The CPU reference executor (kvc::Compact).
std::shared_ptr<CompactionExecutor> MakeCpuExecutor();

// "cpu" -> MakeCpuExecutor(); "gpu" -> NotSupported (not built yet); anything else
// InvalidArgument listing the names.
Result<std::shared_ptr<CompactionExecutor>> MakeExecutor(std::string_view kind);

}  // namespace kvc::engine
