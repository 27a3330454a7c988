#include "services/engine/executor.h"

#include <string>

namespace kvc::engine {
namespace {

class CpuExecutor final : public CompactionExecutor {
 public:
  const char* name() const override { return "cpu"; }
  Result<CompactionResult> Run(const KvCache& cache, const CompactionSpec& spec) override {
    return Compact(cache, spec);
  }
};

}  // namespace

std::shared_ptr<CompactionExecutor> MakeCpuExecutor() { return std::make_shared<CpuExecutor>(); }

Result<std::shared_ptr<CompactionExecutor>> MakeExecutor(std::string_view kind) {
  if (kind == "cpu") return MakeCpuExecutor();
  if (kind == "gpu") {
    return Status::NotSupported(
        "executor 'gpu': this build has no GPU executor yet; run with executor 'cpu'");
  }
  return Status::InvalidArgument("unknown executor '" + std::string(kind) + "' (valid: cpu, gpu)");
}

}  // namespace kvc::engine
