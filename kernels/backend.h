// ComputeBackend: the seam between the compaction front (kernels/compactor.h) and an accelerator.
//
// Compact(cache, spec, backend) runs its pipeline exactly as Compact(cache, spec) does, except
// that the stages listed here are offered to the backend first:
//
//   Score   ComputeScores (spec.method's scorer, or spec.am.selector for AM with kScores)
//           ScoreHighestAttention (AM highest-attention, when the allocator needs scores)
//   Allocate AllocateBudgets (every allocator but the data-driven AM one)
//   Post    AttentionMatchingFit | D2oMerge
//
// A method answers one of three ways:
//   - a result: used in place of the CPU function's (it goes through the same invariant checks:
//     a malformed result is Internal, never stored);
//   - NotSupported: "not on this backend" — the front runs the CPU function for this stage
//     (this is every method's default, so a backend implements only what it has);
//   - any other error: the front stops and returns it, naming the backend; nothing is changed.
// Validation, preparation, the held-out split, the AM allocator, selection, assembly, fidelity
// and the quality gate always run on the CPU. The front records which backend ran each stage
// (CompactionResult::backends, metadata "backend").
//
// Contract of every method: the same inputs, outputs and errors as the CPU function of the same
// name in kernels/cpu/pipeline.h, up to floating-point differences the backend documents.
//
// Thread safety: Compact may call a backend from several threads at once (the engine runs
// several compactions); an implementation serialises internally what cannot run concurrently
// and says so in its header.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "kernels/cpu/pipeline.h"
#include "kernels/spec.h"

namespace kvc {

class ComputeBackend {
 public:
  virtual ~ComputeBackend() = default;

  // Short, stable name recorded in the metadata ("cuda", "test").
  virtual const char* name() const = 0;

  // As cpu::ComputeScores. Default: NotSupported.
  virtual Result<cpu::ScoreSet> ComputeScores(const cpu::PreparedCache& c,
                                              const CompactionSpec& spec, int64_t head_budget);
  // As cpu::ScoreHighestAttention. Default: NotSupported.
  virtual Result<cpu::ScoreSet> ScoreHighestAttention(const cpu::PreparedCache& c);
  // As cpu::AllocateBudgets (offered for every allocator but kAm, after the Score stage).
  // Default: NotSupported.
  virtual Result<cpu::Budgets> AllocateBudgets(const cpu::PreparedCache& c,
                                               const cpu::ScoreSet& scores,
                                               const CompactionSpec& spec, int64_t head_budget);
  // As cpu::AttentionMatchingFit: `sel` empty means every head selects itself per o.selection;
  // otherwise it is the fixed [L][H] selection of size budgets[l][h]. Default: NotSupported.
  virtual Result<cpu::LayerResults> AttentionMatchingFit(const cpu::PreparedCache& c,
                                                         const cpu::Selection& sel,
                                                         const cpu::Budgets& budgets,
                                                         const AmOptions& o);
  // As cpu::D2oMerge. Default: NotSupported.
  virtual Result<cpu::LayerResults> D2oMerge(const cpu::PreparedCache& c, const cpu::Selection& sel,
                                             const D2oOptions& o);
};

}  // namespace kvc
