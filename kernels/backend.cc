#include "kernels/backend.h"

#include <string>

namespace kvc {
namespace {

Status NotOnBackend(const ComputeBackend& b, const char* stage) {
  return Status::NotSupported(std::string(stage) + " is not implemented on backend '" + b.name() +
                              "'");
}

}  // namespace

Result<cpu::ScoreSet> ComputeBackend::ComputeScores(const cpu::PreparedCache&,
                                                    const CompactionSpec&, int64_t) {
  return NotOnBackend(*this, "ComputeScores");
}

Result<cpu::ScoreSet> ComputeBackend::ScoreHighestAttention(const cpu::PreparedCache&) {
  return NotOnBackend(*this, "ScoreHighestAttention");
}

Result<cpu::Budgets> ComputeBackend::AllocateBudgets(const cpu::PreparedCache&,
                                                     const cpu::ScoreSet&, const CompactionSpec&,
                                                     int64_t) {
  return NotOnBackend(*this, "AllocateBudgets");
}

Result<cpu::LayerResults> ComputeBackend::AttentionMatchingFit(const cpu::PreparedCache&,
                                                               const cpu::Selection&,
                                                               const cpu::Budgets&,
                                                               const AmOptions&) {
  return NotOnBackend(*this, "AttentionMatchingFit");
}

Result<cpu::LayerResults> ComputeBackend::D2oMerge(const cpu::PreparedCache&, const cpu::Selection&,
                                                   const D2oOptions&) {
  return NotOnBackend(*this, "D2oMerge");
}

}  // namespace kvc
