// Host orchestration of the attention column sums on the GPU (attention_sums.cuh, pooling.cuh):
// for every layer, KV head and query head of a PreparedCache, the sum over the last `rows` query
// rows (q_window or q_fit) of the (causal) softmax attention each key receives, followed by one
// per-method epilogue (pooled group mean, group sum) and optionally D2O's min-max variance.
// This is the GPU twin of cpu::WindowColumnSums / cpu::AccumulateAttention and the loops of
// snapkv.cc, dynamickv.cc, h2o.cc and d2o.cc built on them.
//
// Work is batched over (layer, KV head): whole layers go to the GPU in chunks whose f32 score
// buffer [layers x H x G x rows x T] stays under `score_bytes`; query rows are chunked too when one
// layer alone would not fit. Scores are strided-batched cuBLAS GEMMs (gemm.h), one per query head
// of the group.
//
// Internal to kernels/cuda (methods.cc, the test and the benchmark).
// Stream semantics: RunColumnSums synchronises ctx.stream() before returning.
// Thread safety: one call at a time per GpuContext.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/pipeline.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/pooling.cuh"

namespace kvc::cuda {

enum class QuerySource : uint8_t { kWindow = 0, kFit = 1 };

enum class ColumnEpilogue : uint8_t {
  kNone = 0,            // no scores (statistics only)
  kPooledMean = 1,      // PooledGroupMean with ColumnSumsRequest::pool
  kGroupSumDouble = 2,  // GroupSum kDouble (H2O)
  kGroupSumFloat = 3,   // GroupSum kFloat (D2O)
};

struct ColumnSumsRequest {
  QuerySource source = QuerySource::kWindow;
  int64_t rows = 0;    // the last `rows` rows of the source per query head; 1 <= rows <= N
  bool causal = true;  // row r of the used rows sits at position T - rows + r
  ColumnEpilogue epilogue = ColumnEpilogue::kNone;
  PoolSpec pool;  // with kPooledMean
  bool want_variance = false;
  // Bound on the f32 score buffer (and on the uploaded keys) of one chunk. Default: 1 GiB.
  size_t score_bytes = size_t(1) << 30;
};

struct ColumnSumsResult {
  std::vector<float> scores;     // [L, H, T] (empty with kNone)
  std::vector<double> variance;  // [L, n_q]: MinMaxVariance of each query head's column sums
};

// How RunColumnSums splits the work: `layers` whole layers per chunk, `rows` query rows per GEMM.
struct ColumnSumsPlan {
  int64_t layers = 1;
  int64_t rows = 1;
};

// Pure host arithmetic: rows = min(total rows, score_bytes / (4 H G T)) (at least 1, G * rows <=
// INT32_MAX); layers = how many whole layers fit in score_bytes for both the scores of `rows`
// rows and the keys (at least 1, at most L, layers * H <= 65535).
ColumnSumsPlan PlanColumnSums(int64_t L, int64_t H, int64_t G, int64_t T, int64_t d, int64_t rows,
                              size_t score_bytes);

// REQUIRES (else InvalidArgument): cpu::CheckPrepared(c); the source queries present in every
// layer with shape [n_q, N, d] and 1 <= rows <= N; rows <= T when causal; H <= 65535;
// T < 2^31. Validation of method options is the caller's.
Result<ColumnSumsResult> RunColumnSums(const cpu::PreparedCache& c, const ColumnSumsRequest& r,
                                       GpuContext& ctx);

}  // namespace kvc::cuda
