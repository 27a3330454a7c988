// Attention statistics shared by the query-based eviction methods (design §4): H2O, SnapKV,
// PyramidKV, DynamicKV and D2O all rank keys by how much attention some queries pay them.
//
// Conventions (design §3): keys are [T, d] per KV head; q_window [n_q, W, d] holds the queries of
// the last W context positions, row r sitting at position T - W + r and attending causally to keys
// 0..T-W+r; reference queries attend to all T keys. Scores are s = q.k / sqrt(d); query head j
// reads KV head j / group.
//
// Not a public header. Thread safety: free functions over const inputs.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/pipeline.h"
#include "kernels/spec.h"

namespace kvc::cpu {

// Adds to col_sums[j] (j < T) the attention every query row pays key j:
//   col_sums[j] += sum_r softmax_j(q_r . k_j / sqrt(d)),
// where row r sits at position first_pos + r and, when `causal`, attends only to keys
// 0..first_pos+r (later keys get zero); otherwise it attends to all T keys.
// REQUIRES: q is [n_rows, d], k is [T, d], col_sums has T entries; when causal,
// 0 <= first_pos and first_pos + n_rows <= T.
void AccumulateAttention(const float* q, int64_t n_rows, int64_t first_pos, bool causal,
                         const float* k, int64_t T, int d, double* col_sums);

// 1-D pooling with stride 1 and padding kernel/2 (SnapKV, DynamicKV; design §4):
//   out[i] = agg_{j in [i - kernel/2, i - kernel/2 + kernel - 1]} in[j],
// avg: the sum over the in-range j divided by `kernel` (zero padding counted, as avg_pool1d
// does by default); max: the maximum over the in-range j (padding ignored). An even kernel gives
// n + 1 outputs in the reference pooling; the first n are kept.
// REQUIRES: kernel >= 1, in and out hold n floats, in != out.
void Pool1d(const float* in, int64_t n, int kernel, Pooling pooling, float* out);

// Number of q_window rows a method uses: all W rows when requested <= 0, else
// min(requested, W). InvalidArgument "<method> needs q_window" when the queries are absent, and
// InvalidArgument when W is 0 or larger than T.
Result<int64_t> WindowRows(const PreparedCache& c, int requested, std::string_view method);

// Per query head j of layer l: column sums of the causal attention of the last `rows` rows of
// q_window over all T keys (AccumulateAttention). Returns T entries.
// REQUIRES: c.layers[l].q_window present, 1 <= rows <= W.
std::vector<double> WindowColumnSums(const PreparedCache& c, int l, int q_head, int64_t rows);

// Window-attention scores of SnapKV / DynamicKV (design §4): for every (layer, KV head),
// for each query head of its group, the column sums of the last `rows` window queries
// (divided by `rows` when mean_over_rows), pooled over the prefix [0, T - rows) with Pool1d;
// then the mean over the GQA group. Positions T-rows..T-1 keep their unpooled value and are the
// forced positions of the returned set.
ScoreSet WindowPooledScores(const PreparedCache& c, int64_t rows, int kernel, Pooling pooling,
                            bool mean_over_rows);

// Sorted, unique positions {0..sinks-1} U {T-recent..T-1}, clipped to [0, T).
std::vector<int64_t> SinksAndRecent(int64_t T, int64_t sinks, int64_t recent);

// Checks the shapes every scorer relies on: at least one layer, H and d positive, K [H, T, d].
Status CheckPrepared(const PreparedCache& c);

}  // namespace kvc::cpu
