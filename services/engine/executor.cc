#include "services/engine/executor.h"

#include <spdlog/spdlog.h>

#include <string>
#include <utility>

namespace kvc::engine {
namespace {

class CpuExecutor final : public CompactionExecutor {
 public:
  const char* name() const override { return "cpu"; }
  Result<CompactionResult> Run(const KvCache& cache, const CompactionSpec& spec) override {
    return Compact(cache, spec);
  }
};

class GpuExecutor final : public CompactionExecutor {
 public:
  explicit GpuExecutor(std::shared_ptr<ComputeBackend> backend) : backend_(std::move(backend)) {}
  const char* name() const override { return "gpu"; }
  Result<CompactionResult> Run(const KvCache& cache, const CompactionSpec& spec) override {
    return Compact(cache, spec, backend_.get());  // the backend serialises its GPU stages
  }

 private:
  const std::shared_ptr<ComputeBackend> backend_;
};

}  // namespace

std::shared_ptr<CompactionExecutor> MakeCpuExecutor() { return std::make_shared<CpuExecutor>(); }

Result<std::shared_ptr<CompactionExecutor>> MakeGpuExecutor(const GpuBackendOptions& options) {
  if (GpuDeviceCount() == 0) {
    spdlog::warn("executor 'gpu': {}; compacting on the CPU instead (executor 'cpu')",
                 GpuUnavailableReason());
    return MakeCpuExecutor();
  }
  Result<std::shared_ptr<ComputeBackend>> backend = MakeGpuBackend(options);
  if (!backend.ok()) return backend.status().WithContext("executor 'gpu'");
  spdlog::info("executor 'gpu': {} device(s){}", GpuDeviceCount(),
               GpuMultiDeviceBuilt() ? "" : " (built without NCCL: one device used)");
  return std::shared_ptr<CompactionExecutor>(
      std::make_shared<GpuExecutor>(std::move(backend).value()));
}

Result<std::shared_ptr<CompactionExecutor>> MakeExecutor(std::string_view kind) {
  if (kind == "cpu") return MakeCpuExecutor();
  if (kind == "gpu") return MakeGpuExecutor();
  if (kind == "auto") {
    if (GpuDeviceCount() == 0) return MakeCpuExecutor();
    Result<std::shared_ptr<CompactionExecutor>> gpu = MakeGpuExecutor();
    if (gpu.ok()) return gpu;
    spdlog::warn("executor 'auto': the GPU executor failed ({}); compacting on the CPU",
                 gpu.status().ToString());
    return MakeCpuExecutor();
  }
  return Status::InvalidArgument("unknown executor '" + std::string(kind) +
                                 "' (valid: auto, cpu, gpu)");
}

}  // namespace kvc::engine
