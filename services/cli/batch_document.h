// One document of `kvcompact batch`: compaction group by group into a streamed output file, the
// document-level metadata, and the check that decides whether an existing output is finished.
//
// Output metadata (on top of the reserved keys the writer adds):
//   method, spec, model, rope_theta, heldout  as Compact writes them
//   head_budget   average keys per (layer, kv head) over the groups' final budgets
//   fidelity      FidelityReport::ToJson over every layer (when q_ref was held out)
//   gate          GateOutcome::ToJson of the document: requested, passed (every group passed),
//                 min_cosine, rounds (the most any group ran), budgets_tried and cosines per
//                 round (head-weighted means over groups; a group that stopped earlier counts
//                 with its last value). For a one-group document this is Compact's outcome.
//   batch         {"source": file name, "source_bytes", "source_mtime_ns", "plan": the plan's
//                 groups, chunks and notes (DocumentPlan::ToJson without the estimate)}
// Nothing in it depends on time, threads or jobs, so recompacting with the same plan gives the
// same bytes.
//
// Thread safety: the functions are reentrant.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/status.h"
#include "kernels/compactor.h"
#include "kernels/fidelity.h"
#include "kernels/spec.h"
#include "services/cli/batch_group.h"
#include "services/cli/batch_plan.h"
#include "services/cli/batch_source.h"
#include "services/cli/batch_writer.h"

namespace kvc::cli {

struct DocumentResult {
  int64_t entries = 0;
  int64_t head_budget = 0;
  std::optional<FidelityReport> fidelity;
  GateOutcome gate;
};

// Compacts `dump` per `plan` and writes the result to `out_path` (atomically: on any error or
// cancellation nothing is left under out_path and every temporary is removed). Errors: those
// of CompactGroup and of the writer.
Result<DocumentResult> CompactDocument(const DumpFile& dump, const CompactionSpec& spec,
                                       const DocumentPlan& plan, const std::string& out_path,
                                       const GroupHooks& hooks);

// Checks whether `out_path` is a finished output of the input at `in_path` under `spec`:
// it must pass VerifyCompactedFile and record this spec and the input's current size and
// modification time. NotFound when there is no output; FailedPrecondition (naming what differs)
// when it was made from another input or spec; the verifier's error when it is damaged.
Result<OutputInfo> FinishedOutput(const std::string& in_path, const std::string& out_path,
                                  const CompactionSpec& spec);

}  // namespace kvc::cli
