// Test support for the transport (tests, the test peer process, the benchmark): caches with
// deterministic contents and exact comparisons. Not part of the library.
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>

#include "common/kv_cache.h"

namespace kvc::transport::testing {

// A layout small enough for fast tests: 3 layers, 2 KV heads, 4 query heads, head_dim 16,
// `tokens` tokens, `dtype`.
KvLayout SmallLayout(int64_t tokens = 64, DType dtype = DType::kF32);

// Fills `t` with finite values in [-1, 1) derived from `seed` (any floating dtype; integer
// dtypes get raw pseudo-random bytes).
void FillDeterministic(Tensor& t, uint64_t seed);

// A KvCache for `layout` whose contents depend only on `seed`; q_window / q_ref queries are
// included when the counts are positive. metadata["seed"] records the seed.
KvCache MakeKvCache(const KvLayout& layout, int64_t q_window, int64_t q_ref, uint64_t seed);
// A CompactedCache for `layout`: head h of every layer keeps min(T, base + h) entries.
CompactedCache MakeCompactedCache(const KvLayout& layout, int64_t base, uint64_t seed);

// "" when equal (layouts, metadata, and every tensor byte for byte); otherwise the first
// difference.
std::string DiffKvCache(const KvCache& a, const KvCache& b);
std::string DiffCompacted(const CompactedCache& a, const CompactedCache& b);

}  // namespace kvc::transport::testing
