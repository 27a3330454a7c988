// Internal core of the fidelity metrics (kernels/fidelity.h) on F32 inputs, shared by the public
// EvaluateFidelity and the compactor (which already holds F32 copies of the full cache).
// Not a public header: only kernels/ includes it.
#pragma once

#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "common/tensor.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/fidelity.h"

namespace kvc::cpu {

// k_full, v_full: per layer F32 [n_kv, T, d]; queries: per layer F32 [n_q, N, d] (same N);
// compacted: any dtype allowed by CompactedCache (converted to F32 here), layout matching.
// REQUIRES: shapes already validated against `layout`.
Result<FidelityReport> EvaluateFidelityF32(const KvLayout& layout,
                                           const std::vector<Tensor>& k_full,
                                           const std::vector<Tensor>& v_full,
                                           const CompactedCache& compacted,
                                           const std::vector<Tensor>& queries, ThreadPool& pool);

}  // namespace kvc::cpu
