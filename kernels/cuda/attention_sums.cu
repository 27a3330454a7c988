#include <climits>
#include <cmath>
#include <string>

#include "kernels/cuda/attention_sums.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"

namespace kvc::cuda {
namespace {

constexpr int kRowBlock = 256;
constexpr int kColBlock = 256;

// Keys row r (0-based among the query head's rows) attends to.
__device__ __forceinline__ int64_t Visible(const AttentionChunk& c, int64_t r) {
  if (!c.causal) return c.tokens;
  const int64_t v = c.first_pos + r + 1;
  return v < c.tokens ? v : c.tokens;
}

// One block per (row i = g * R + rr, matrix b): online max / sum over the visible keys.
template <int kBlock>
__global__ void __launch_bounds__(kBlock)
    MaskedRowLseKernel(const float* __restrict__ s, AttentionChunk c, float* __restrict__ lse) {
  const int64_t i = blockIdx.x;
  const int64_t b = blockIdx.y;
  const int64_t rows = c.group * c.chunk_rows;
  const int64_t visible = Visible(c, c.row0 + i % c.chunk_rows);
  const float* row = s + (b * rows + i) * c.tokens;
  MaxSum st{-INFINITY, 0.f};
  for (int64_t j = threadIdx.x; j < visible; j += kBlock) st = MaxSumPush(st, row[j]);
  st = BlockMaxSum<kBlock>(st);
  if (threadIdx.x == 0) {
    lse[b * rows + i] = st.m == -INFINITY ? -INFINITY : st.m + logf(st.s);
  }
}

// Grid (column chunk, g, b). Each thread owns column t of query head (b, g) and walks the chunk's
// rows that see it; loads are coalesced across a warp's columns. Rows that see t form a suffix of
// the chunk (visible grows with r), so the walk starts at the first of them.
template <int kBlock>
__global__ void __launch_bounds__(kBlock)
    ColumnSumsKernel(const float* __restrict__ s, const float* __restrict__ lse, AttentionChunk c,
                     double* __restrict__ colsum) {
  const int64_t t = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (t >= c.tokens) return;
  const int64_t g = blockIdx.y;
  const int64_t b = blockIdx.z;
  const int64_t base = (b * c.group + g) * c.chunk_rows;  // first row of (b, g) in this chunk
  int64_t rr = 0;
  if (c.causal) {
    const int64_t first = t - c.first_pos - c.row0;  // smallest rr with t < visible(r0 + rr)
    rr = first > 0 ? first : 0;
  }
  double acc = 0.0;
  for (; rr < c.chunk_rows; ++rr) {
    const float l = lse[base + rr];
    if (l == -INFINITY) continue;
    acc += double(expf(s[(base + rr) * c.tokens + t] - l));
  }
  colsum[(b * c.group + g) * c.tokens + t] += acc;
}

}  // namespace

// ---- Launchers ---------------------------------------------------------------------------------

cudaError_t LaunchMaskedRowLse(const float* s, const AttentionChunk& c, float* lse,
                               cudaStream_t stream) {
  dim3 grid(unsigned(c.group * c.chunk_rows), unsigned(c.batch));
  MaskedRowLseKernel<kRowBlock><<<grid, kRowBlock, 0, stream>>>(s, c, lse);
  return cudaGetLastError();
}

cudaError_t LaunchAccumulateColumnSums(const float* s, const float* lse, const AttentionChunk& c,
                                       double* colsum, cudaStream_t stream) {
  dim3 grid(unsigned(CeilDiv(c.tokens, kColBlock)), unsigned(c.group), unsigned(c.batch));
  ColumnSumsKernel<kColBlock><<<grid, kColBlock, 0, stream>>>(s, lse, c, colsum);
  return cudaGetLastError();
}

// ---- Entry points ------------------------------------------------------------------------------

Status CheckAttentionChunk(const AttentionChunk& c, const char* op) {
  const bool ok =
      c.batch >= 1 && c.batch <= 65535 && c.group >= 1 && c.group <= 65535 && c.chunk_rows >= 1 &&
      c.group * c.chunk_rows <= INT_MAX && c.row0 >= 0 && c.tokens >= 1 &&
      c.tokens <= INT64_MAX / 2 &&
      (!c.causal || (c.first_pos >= 0 && c.first_pos + c.row0 + c.chunk_rows <= c.tokens));
  if (!ok) return Status::InvalidArgument(std::string(op) + ": bad attention chunk geometry");
  return Status::OK();
}

Status MaskedRowLse(const float* s, const AttentionChunk& c, float* lse, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckAttentionChunk(c, "MaskedRowLse"));
  if (s == nullptr || lse == nullptr) return Status::InvalidArgument("MaskedRowLse: null pointer");
  return FromCuda(LaunchMaskedRowLse(s, c, lse, stream), "MaskedRowLse launch");
}

Status AccumulateColumnSums(const float* s, const float* lse, const AttentionChunk& c,
                            double* colsum, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckAttentionChunk(c, "AccumulateColumnSums"));
  if (s == nullptr || lse == nullptr || colsum == nullptr) {
    return Status::InvalidArgument("AccumulateColumnSums: null pointer");
  }
  return FromCuda(LaunchAccumulateColumnSums(s, lse, c, colsum, stream),
                  "AccumulateColumnSums launch");
}

}  // namespace kvc::cuda
