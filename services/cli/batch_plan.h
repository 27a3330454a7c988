// Planning of one document of `kvcompact batch`: how its layers are split into groups that are
// compacted one at a time, whether its context is split into chunks, what each group's spec is,
// and how much memory that is expected to take.
//
// Memory. A group of G layers is compacted by one Compact() call on a KvCache holding only those
// layers (views into the memory-mapped dump), so the resident set is about one group's K/V, their
// F32 copies and the per-thread working set of the method, never the whole dump. EstimateUnit()
// models that (see batch_plan.cc for the terms); PlanDocument() picks the largest group that fits
// the memory bound and, when even one layer does not fit and the spec allows it, splits the
// context into chunks.
//
// Cross-layer budget allocation when a document is split into groups (when it is one group, the
// batch compaction is exactly `kvcompact compact`):
//   uniform (the default of am, okdmd, streamingllm, h2o, snapkv): unaffected; every head gets the
//     same budget whatever the grouping.
//   pyramid (pyramidkv's default): the schedule needs no statistics, so the planner computes it
//     over all L layers (the same formula as the kernels), apportions L * budget over layers
//     exactly, and compacts one layer at a time with its layer budget. The document total is
//     exact; a head's budget may differ by one key from a whole-model run, which rounds per head.
//   d2o: the uncompressed layers (d2o.uncompressed_layers) keep their global indices; each group
//     gets its share of the global split (whole layers T per head, the other layers the global
//     average of the compressed layers); the attention-variance ratios are normalised within the
//     group. Group budgets are whole keys per head, so the total may differ from L * H * budget
//     by less than one key per head per group.
//   dynamickv, am: allocation within each group (and within each chunk for am).
//
// Chunking (method am with highest/omp/omp-fast selection and a uniform, pyramid or am
// allocator): the context [0, T) is cut into C chunks of near-equal length; each chunk gets its
// share of the head budget in proportion to its length (exact total per head), is compacted on
// its own (selection, beta and values fitted on the chunk's keys with the fit queries, which
// attend to the whole context: a chunk-local fit), and the kept keys are concatenated per head
// in position order (keys keep their RoPE). Fidelity and the quality gate are then measured on
// the whole context. Other methods keep recent-window and sink positions that are only
// meaningful for the whole context, so they are never chunked.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "kernels/spec.h"

namespace kvc::cli {

// What the planner needs to know about a dump (read from its header, not its data).
struct DumpShape {
  KvLayout layout;
  int64_t q_ref_rows = 0;     // rows per query head of layers.{l}.q_ref; 0 when absent
  int64_t q_window_rows = 0;  // rows per query head of layers.{l}.q_window; 0 when absent
  DType q_dtype = DType::kF32;
};

struct PlanOptions {
  // Memory the document may use, in bytes. Default: 4 GiB.
  int64_t memory_bytes = int64_t{4} << 30;
  // Threads of each Compact call. REQUIRES: >= 1. Default: 1.
  int threads = 1;
  // Layers per group; 0 picks the largest that fits memory_bytes. Default: 0.
  int group_layers = 0;
  // Tokens per chunk; 0 chunks only when one layer does not fit memory_bytes. A value >= T means
  // no chunking. Default: 0.
  int64_t chunk_tokens = 0;
  // The result is also put into a store: the compacted cache is loaded whole for the put.
  // Default: false.
  bool store = false;
};

// One group of consecutive layers and the spec its Compact calls use.
struct LayerGroup {
  int first = 0;
  int count = 0;
  // Average keys per (layer, kv head) of this group; 0 means the group keeps nothing.
  int64_t head_budget = 0;
  // The document's spec with this group's budget, allocator and D2O layers filled in.
  CompactionSpec spec;
};

struct DocumentPlan {
  std::vector<LayerGroup> groups;  // cover [0, L) in order
  // Chunk boundaries [0 = b_0 < b_1 < ... < b_C = T]; {0, T} when not chunked.
  std::vector<int64_t> chunk_bounds;
  int threads = 1;
  int64_t estimated_bytes = 0;  // modelled peak resident set of the document
  bool over_budget = false;     // the smallest plan the spec allows still exceeds the budget
  std::string allocation;       // what happened to cross-layer allocation (one line)
  std::string chunking;         // how the context was chunked (one line)

  bool chunked() const { return chunk_bounds.size() > 2; }
  int64_t chunk_count() const { return static_cast<int64_t>(chunk_bounds.size()) - 1; }
  // {"groups": [[first, count, head_budget], ...], "chunk_bounds": [...], "allocation": ...,
  //  "chunking": ...[, "estimated_bytes": ...]} as one line of JSON. Without the estimate it
  // holds only what determines the compacted result (it goes into the output's metadata).
  std::string ToJson(bool with_estimate = true) const;
};

// True when the spec may be compacted in chunks (see the header comment).
bool ChunkableSpec(const CompactionSpec& spec);

// Modelled peak bytes of compacting `layers` layers of `shape` over `tokens` tokens in one
// Compact call with `threads` threads, at `head_budget` keys per head; `chunked` adds the
// whole-context accumulators and fidelity pass of the chunked path.
int64_t EstimateUnit(const DumpShape& shape, const CompactionSpec& spec, int layers, int64_t tokens,
                     int64_t head_budget, int threads, bool chunked);

// Plans one document. InvalidArgument when the spec cannot apply to the dump (a budget above
// T, chunk_tokens given for a spec that cannot be chunked) or the options are out of range.
Result<DocumentPlan> PlanDocument(const DumpShape& shape, const CompactionSpec& spec,
                                  const PlanOptions& options);

// Largest-remainder split of `total` into integers proportional to `weights` (non-negative,
// not all zero), each at most caps[i]; the result sums to min(total, sum(caps)). Ties go to the
// lower index.
std::vector<int64_t> Apportion(const std::vector<double>& weights, int64_t total,
                               const std::vector<int64_t>& caps);

// Per-head budget of each chunk of [bounds[c], bounds[c+1]) for a head budget `head_budget`:
// proportional to chunk length, summing to exactly min(head_budget, T).
std::vector<int64_t> ChunkBudgets(const std::vector<int64_t>& bounds, int64_t head_budget);

// PyramidKV's layer schedule over L layers (design §4): per-layer per-head budgets summing to
// exactly L * head_budget (capped at T each), w = the observation window.
std::vector<int64_t> PyramidLayerSchedule(int L, int64_t head_budget, int64_t w, double beta,
                                          int64_t T);

// D2O's uncompressed layers as indices in [0, L) (negative entries count from the end, entries
// out of range are ignored), sorted and unique.
std::vector<int> D2oWholeLayers(const std::vector<int>& layers, int L);

}  // namespace kvc::cli
