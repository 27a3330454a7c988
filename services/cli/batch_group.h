// Compaction of one layer group of a document (see batch_plan.h for how groups and chunks are
// chosen and what they mean for each method).
//
// Unchunked group: one Compact() call on the group's layers as views into the mapped dump; its
// fidelity report and quality gate are the group's.
// Chunked group (or a group whose budget is 0): every chunk is copied out of the dump and
// compacted with its share of the budget, with the held-out rows of q_ref removed from the fit
// queries (the same rows Compact would hold out) and without a gate; the kept entries are
// concatenated per head in position order. Fidelity is then measured on the whole context, one
// (layer, kv head) at a time, and the quality gate of the spec is applied to the group: below
// the floor the group's budget is raised as Compact raises it and every chunk is redone.
//
// Thread safety: CompactGroup is reentrant; the hooks are called from the calling thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "kernels/compactor.h"
#include "kernels/fidelity.h"
#include "services/cli/batch_plan.h"
#include "services/cli/batch_source.h"

namespace kvc::cli {

struct GroupHooks {
  // Checked before every Compact call; when set, CompactGroup returns Cancelled.
  const std::atomic<bool>* cancel = nullptr;
  // Called with the K/V bytes of the dump whose compaction just finished (first round only).
  std::function<void(uint64_t)> progress;
};

struct GroupResult {
  std::vector<CompactedLayer> layers;  // the group's layers, in order
  std::vector<HeadFidelity> heads;     // held-out fidelity per query head, document layer index
  int64_t heldout_per_head = 0;        // held-out queries per query head (0: not measured)
  GateOutcome gate;                    // budgets are this group's average keys per head
};

// Compacts `group` of `dump` per `plan`. Errors: whatever Compact returns (with the group's
// layers named), the dump's read errors, Cancelled.
Result<GroupResult> CompactGroup(const DumpFile& dump, const DocumentPlan& plan,
                                 const LayerGroup& group, const GroupHooks& hooks);

// The rows 0 .. rows-1 that are not in `heldout` (sorted): the q_ref rows Compact fits on.
std::vector<int64_t> FitRows(int64_t rows, const std::vector<int64_t>& heldout);

}  // namespace kvc::cli
