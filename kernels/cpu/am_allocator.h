// The data-driven AM budget allocator (Allocator::kAm): gives each (layer, kv head) the keys that
// buy the most fidelity, measured on an inner split of the fit queries.
//
// Per head, the fit queries' rows i with i % 4 == 3 are the inner held-out part (all rows when
// fewer than 4), the others fit AM (highest-attention selection, beta and values as the spec's
// AmOptions say) at candidate budgets {1/4, 1/2, 1, 2, 4} x head_budget, clamped to [1, cap]
// with cap = max(head_budget, floor(0.75 T)). The error of a candidate is the mean of 1 - cosine
// between the full and compacted attention outputs on the inner held-out rows. Every head starts
// at its smallest candidate; the remaining keys go, in order of decreasing error reduction per
// key, to the segments of each head's lower convex hull of (budget, error) (the last segment
// taken may be partial); keys still left after every hull are spread one at a time over heads
// below their cap, in (layer, head) order. The total is exactly L * H * head_budget and no head
// exceeds cap. Deterministic; independent of the pool's thread count.
// Not a public header: only kernels/ includes it.
#pragma once

#include "kernels/cpu/pipeline.h"
#include "kernels/cpu/thread_pool.h"

namespace kvc::cpu {

// REQUIRES: fit queries in every layer (InvalidArgument otherwise), 1 <= head_budget <= T.
Result<Budgets> AllocateAmBudgets(const PreparedCache& c, const CompactionSpec& spec,
                                  int64_t head_budget, ThreadPool& pool);

}  // namespace kvc::cpu
