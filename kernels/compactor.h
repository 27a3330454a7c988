// The one front of the compaction kernels (CPU reference): Compact() turns a KvCache into a
// CompactedCache with the method, budgets and quality gate of a CompactionSpec (design §4).
//
//   Validate -> Prepare (F32 copies, held-out split of q_ref) -> Score -> Allocate budgets
//     -> Select -> Post (AM fit | D2O merge | gather) -> Assemble -> Fidelity -> Quality gate
//
// Held-out split: when the cache carries q_ref, round(heldout_fraction * N) of its N rows per
// query head (at least 1 when the fraction is positive, at most N - 1) are held out for the
// fidelity report; the rows are a seeded permutation (spec.seed), the same for every layer and
// head, and are recorded in the output metadata ("heldout") so `eval` can reproduce them.
//
// Quality gate: with spec.gate.min_cosine > 0, a round whose held-out mean cosine is below the
// floor is retried with the per-head budget raised to max(b + 1, ceil(b * escalation)), capped
// at T, at most gate.max_rounds extra rounds. The last round's cache is returned either way;
// GateOutcome and the metadata ("gate") say whether it passed. Compact never hides a failed
// gate, and never fails because of one.
//
// Output metadata: "method", "spec" (CompactionSpec::ToJson), "source_tokens", "head_budget",
// "fidelity" (FidelityReport::ToJson, when q_ref was sent), "gate", "heldout", "backend"
// (StageBackends::ToJson), and the source's "model" and "rope_theta" when present.
//
// Backends: Compact(cache, spec, backend) offers the Score and Post stages to a ComputeBackend
// (kernels/backend.h) first and runs the CPU function where the backend answers NotSupported;
// everything else is identical. Compact(cache, spec) is Compact(cache, spec, nullptr).
//
// Deterministic: the same cache and spec give bit-identical results for any spec.threads.
// Thread safety: Compact is reentrant. It sets OpenBLAS to one thread while it runs (a
// process-global setting shared by concurrent calls and restored when the last one returns:
// kernels/cpu/linalg.h ScopedBlasThreads) and parallelises over (layer, head) itself.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "kernels/fidelity.h"
#include "kernels/spec.h"

namespace kvc {

class ComputeBackend;  // kernels/backend.h

// Wall time per pipeline stage in milliseconds, summed over gate rounds.
struct StageTimings {
  double validate_ms = 0;
  double prepare_ms = 0;
  double score_ms = 0;
  double allocate_ms = 0;
  double select_ms = 0;
  double post_ms = 0;  // AM fit, D2O merge or gather
  double assemble_ms = 0;
  double fidelity_ms = 0;
  double total_ms = 0;
  std::string ToJson() const;
};

struct GateOutcome {
  bool requested = false;              // spec.gate.min_cosine > 0
  bool passed = true;                  // false only when requested and the last round failed
  double min_cosine = 0;               // the floor
  int rounds = 0;                      // compaction rounds run (1 + escalations)
  std::vector<int64_t> budgets_tried;  // per-head budget of each round
  std::vector<double> cosines;         // held-out mean cosine of each round (when measured)
  std::string ToJson() const;
};

// Which backend ran each offloadable stage in the last round: "cpu", the backend's name, or
// "none" when the stage did not run (e.g. no scores for AM highest-attention with a uniform
// allocator: its selection happens inside the AM fit, which is the "post" stage).
struct StageBackends {
  std::string score = "none";
  std::string allocate = "cpu";
  std::string post = "cpu";
  std::string ToJson() const;  // {"score": ..., "allocate": ..., "post": ...}
};

struct CompactionResult {
  CompactedCache cache;                    // the last round's result, metadata filled
  std::optional<FidelityReport> fidelity;  // the last round's, when q_ref was sent
  GateOutcome gate;
  StageTimings timings;
  StageBackends backends;
  int64_t head_budget = 0;  // average keys per (layer, kv head) of the last round
};

// Compacts `cache` per `spec`. Validates everything first and changes nothing on error:
// InvalidArgument for an invalid spec (naming the field), an invalid cache (shapes, dtypes,
// NaN/Inf), spec.budget > T, AM without q_ref (unless am.keys_as_queries), a method or AM
// selector that needs q_window without it, a gate without held-out queries, or too few q_ref
// rows to split; NotSupported from methods that cannot run on this input. Errors from a stage
// name the stage, layer and head.
Result<CompactionResult> Compact(const KvCache& cache, const CompactionSpec& spec);

// The same with the Score and Post stages offered to `backend` first (null: CPU only; not owned,
// used only during the call). A backend error other than NotSupported is returned with the
// backend's name and the stage as context, and nothing is produced. Bit-identical to
// Compact(cache, spec) when the backend answers NotSupported everywhere.
Result<CompactionResult> Compact(const KvCache& cache, const CompactionSpec& spec,
                                 ComputeBackend* backend);

// The held-out rows of a q_ref with `rows` rows per head for (fraction, seed), sorted. Empty when
// fraction is 0 or rows < 2.
std::vector<int64_t> HeldoutRows(int64_t rows, double fraction, uint64_t seed);

// The held-out queries Compact used, rebuilt from `full`'s q_ref and `compacted`'s "heldout"
// metadata: one F32 tensor [n_q_heads, N_heldout, d] per layer. InvalidArgument when the
// metadata is missing or malformed, or does not match full's q_ref; NotFound when full has no
// q_ref.
Result<std::vector<Tensor>> HeldoutQueries(const KvCache& full, const CompactedCache& compacted);

}  // namespace kvc
