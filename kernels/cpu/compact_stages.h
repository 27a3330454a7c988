// Stages of the compactor front (kernels/compactor.cc) that are not methods: preparing F32
// copies and the held-out split, invariant checks between stages, assembling the ragged
// CompactedCache and measuring its fidelity. Not a public header: only kernels/ includes it.
#pragma once

#include <cstdint>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "kernels/cpu/pipeline.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/fidelity.h"

namespace kvc::cpu {

// Keys-as-queries fallback: at most this many keys per KV head serve as its pooled queries.
inline constexpr int64_t kKeysAsQueriesMax = 1024;

// See kvc::HeldoutRows: a seeded (SplitMix64 Fisher-Yates) choice of round(fraction * rows)
// rows, clamped to [1, rows - 1], sorted; empty when fraction <= 0 or rows < 2.
std::vector<int64_t> HeldoutRowsImpl(int64_t rows, double fraction, uint64_t seed);

// Rows `rows` of every head of q [n_q, N, d] (F32) as a new F32 tensor [n_q, rows.size(), d].
Tensor GatherQueryRows(const Tensor& q, const std::vector<int64_t>& rows);

// F32 copies of the cache (shared when already F32). q_ref is split into q_fit (rows not in
// `heldout`) and q_heldout (rows in `heldout`, absent when empty). Without q_ref and with
// keys_as_queries, q_fit holds up to kKeysAsQueriesMax evenly spaced keys per KV head, spread
// over the group's query heads. Layers are converted in parallel on `pool` (null: inline).
// REQUIRES: cache validated.
Result<PreparedCache> Prepare(const KvCache& cache, const std::vector<int64_t>& heldout,
                              bool keys_as_queries, ThreadPool* pool = nullptr);

// Internal unless budgets are [L][H], each in [0, T], summing to exactly L * H * head_budget.
Status CheckBudgets(const Budgets& budgets, const KvLayout& layout, int64_t head_budget);
// Internal unless sel is [L][H] with sel[l][h] sorted, unique, in [0, T), of size budgets[l][h].
Status CheckSelection(const Selection& sel, const Budgets& budgets, const KvLayout& layout);
// Internal unless every head result has budgets[l][h] entries with consistent k, v, beta sizes.
Status CheckResults(const LayerResults& results, const Budgets& budgets, const KvLayout& layout);

// Concatenates the heads of every layer: K and V in layout.dtype, beta F32, offsets. Internal
// when a value does not fit the layout dtype (e.g. a fitted value beyond the F16 range) or the
// result fails CompactedCache::Validate.
Result<CompactedCache> Assemble(const KvLayout& layout, const LayerResults& results);

// Fidelity of `compacted` on p's held-out queries. REQUIRES: p.layers[*].q_heldout present.
Result<FidelityReport> FidelityOnHeldout(const PreparedCache& p, const CompactedCache& compacted,
                                         ThreadPool& pool);

}  // namespace kvc::cpu
