// The outcome of each document of a `kvcompact batch` run and the run's summary, as text and
// as JSON.
//
// JSON summary (one object):
//   {"in": DIR, "out": DIR, "spec": <spec JSON>, "memory_budget_bytes": N, "jobs": N,
//    "threads_per_document": N, "temporaries_removed": N, "seconds": S, "exit_code": 0|1,
//    "counts": {"done": N, "skipped": N, "failed": N, "interrupted": N},
//    "documents": [{"name", "input", "output", "status": "done|skipped|failed|interrupted",
//                   "error": text or null, "note": text, "tokens", "layers", "kv_heads",
//                   "entries", "ratio" (source entries / kept entries), "seconds",
//                   "fidelity": the output's overall FidelitySummary or null,
//                   "gate": the output's GateOutcome or null,
//                   "plan": {"groups", "chunk_bounds", "allocation", "chunking",
//                            "estimated_bytes"} or null, "over_budget": bool,
//                   "store": text or null}]}
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "kernels/spec.h"
#include "services/cli/batch_writer.h"

namespace kvc::cli {

enum class DocState { kDone, kSkipped, kFailed, kInterrupted };
const char* DocStateName(DocState s);

struct DocumentOutcome {
  std::string name;    // file name in the input directory
  std::string input;   // path
  std::string output;  // path
  DocState state = DocState::kFailed;
  Status error;      // why it failed or was interrupted
  std::string note;  // e.g. "redone: made with another spec"
  bool layout_known = false;
  KvLayout layout;            // the source layout (when known)
  int64_t entries = 0;        // kept entries in the output
  double seconds = 0;         // wall time of this run's work on it
  std::string fidelity_json;  // overall FidelitySummary JSON, empty when not measured
  std::string gate_json;      // GateOutcome JSON, empty when unknown
  bool gate_failed = false;   // the output records a requested gate that was not met
  std::string plan_json;      // DocumentPlan::ToJson, empty when not planned in this run
  bool over_budget = false;
  std::string store;  // what --store did, empty without it

  // Done or skipped with a met (or not requested) gate and no store error.
  bool ok() const;
};

// Fills entries, layout, fidelity and gate of `o` from a verified output's metadata.
void FillFromOutput(const OutputInfo& info, DocumentOutcome& o);

struct RunSummary {
  std::string in_dir, out_dir;
  CompactionSpec spec;
  int64_t memory_bytes = 0;
  int jobs = 0;
  int threads = 0;
  int temporaries_removed = 0;
  double seconds = 0;
  std::vector<DocumentOutcome> docs;

  // 0 when every document is ok(), 1 otherwise.
  int ExitCode() const;
  std::string ToJson() const;
  // A table with one row per document, then the plan notes of the documents that had them.
  void PrintText(std::ostream& out) const;
};

}  // namespace kvc::cli
