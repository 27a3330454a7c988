#include <algorithm>
#include <cmath>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/softmax.cuh"

namespace kvc::cuda {
namespace {

constexpr int kRowBlock = 256;
constexpr int kColBlock = 256;
constexpr int64_t kPlainRowTile = 32;
constexpr int64_t kMaxColumnTiles = 64;

// One block per (row i, matrix b): online max / sum over the row.
template <int kBlock, bool kBias>
__global__ void __launch_bounds__(kBlock)
    RowStatsKernel(const float* __restrict__ x, const float* __restrict__ bias, RaggedView v,
                   float* __restrict__ row_max, float* __restrict__ row_lse) {
  const int64_t i = blockIdx.x;
  const int64_t b = blockIdx.y;
  const int64_t off = v.offsets[b];
  const int64_t cols = v.offsets[b + 1] - off;
  const float* row = x + v.rows * off + i * cols;
  MaxSum st{-INFINITY, 0.f};
  for (int64_t j = threadIdx.x; j < cols; j += kBlock) {
    float val = row[j];
    if constexpr (kBias) val += bias[off + j];
    st = MaxSumPush(st, val);
  }
  st = BlockMaxSum<kBlock>(st);
  if (threadIdx.x == 0) {
    const int64_t r = b * v.rows + i;
    if (row_max != nullptr) row_max[r] = st.m;
    row_lse[r] = st.m == -INFINITY ? -INFINITY : st.m + logf(st.s);
  }
}

// Grid (column chunk, row tile, matrix). Each thread owns one column j and walks the rows of its
// tile: loads and stores are coalesced across the threads of a warp.
template <int kBlock, bool kBias, bool kColSq>
__global__ void __launch_bounds__(kBlock)
    RowExpShiftKernel(const float* x, float* y, const float* __restrict__ bias,
                      const float* __restrict__ shift, RaggedView v, int64_t row_tile,
                      float* __restrict__ partial) {
  const int64_t b = blockIdx.z;
  const int64_t off = v.offsets[b];
  const int64_t cols = v.offsets[b + 1] - off;
  const int64_t j = int64_t(blockIdx.x) * kBlock + threadIdx.x;
  if (j >= cols) return;
  const int64_t i0 = int64_t(blockIdx.y) * row_tile;
  const int64_t i1 = i0 + row_tile < v.rows ? i0 + row_tile : v.rows;
  const int64_t base = v.rows * off;
  float bj = 0.f;
  if constexpr (kBias) bj = bias[off + j];
  const float* sh = shift + b * v.rows;
  float acc = 0.f;
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t idx = base + i * cols + j;
    const float e = expf(x[idx] + bj - sh[i]);
    y[idx] = e;
    if constexpr (kColSq) acc += e * e;
  }
  if constexpr (kColSq) partial[int64_t(blockIdx.y) * v.total_cols + off + j] = acc;
}

__global__ void ColumnScoreFinalizeKernel(const float* __restrict__ partial, int64_t tiles,
                                          int64_t total, float inv_rows,
                                          float* __restrict__ score) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= total) return;
  float s = 0.f;
  for (int64_t t = 0; t < tiles; ++t) s += partial[t * total + c];
  score[c] = sqrtf(s * inv_rows);
}

__global__ void ExpDifferenceKernel(const float* __restrict__ a, const float* __restrict__ b,
                                    int64_t count, float* __restrict__ out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  out[i] = a[i] == -INFINITY ? 0.f : expf(a[i] - b[i]);
}

template <bool kBias, bool kColSq>
void LaunchExpShiftT(dim3 grid, const float* x, float* y, const float* bias, const float* shift,
                     const RaggedView& v, int64_t row_tile, float* partial, cudaStream_t stream) {
  RowExpShiftKernel<kColBlock, kBias, kColSq>
      <<<grid, kColBlock, 0, stream>>>(x, y, bias, shift, v, row_tile, partial);
}

}  // namespace

// ---- Launchers ---------------------------------------------------------------------------------

cudaError_t LaunchRowStats(const float* x, const float* col_bias, const RaggedView& v,
                           float* row_max, float* row_lse, cudaStream_t stream) {
  dim3 grid(unsigned(v.rows), unsigned(v.batch));
  if (col_bias != nullptr) {
    RowStatsKernel<kRowBlock, true>
        <<<grid, kRowBlock, 0, stream>>>(x, col_bias, v, row_max, row_lse);
  } else {
    RowStatsKernel<kRowBlock, false>
        <<<grid, kRowBlock, 0, stream>>>(x, nullptr, v, row_max, row_lse);
  }
  return cudaGetLastError();
}

cudaError_t LaunchRowExpShift(const float* x, float* y, const float* col_bias,
                              const float* row_shift, const RaggedView& v, int64_t row_tile,
                              float* colsq_partial, cudaStream_t stream) {
  if (v.max_cols == 0) return cudaSuccess;  // nothing to write; partial has no columns either
  dim3 grid(unsigned(CeilDiv(v.max_cols, kColBlock)), unsigned(CeilDiv(v.rows, row_tile)),
            unsigned(v.batch));
  const bool bias = col_bias != nullptr;
  const bool colsq = colsq_partial != nullptr;
  if (bias && colsq) {
    LaunchExpShiftT<true, true>(grid, x, y, col_bias, row_shift, v, row_tile, colsq_partial,
                                stream);
  } else if (bias) {
    LaunchExpShiftT<true, false>(grid, x, y, col_bias, row_shift, v, row_tile, nullptr, stream);
  } else if (colsq) {
    LaunchExpShiftT<false, true>(grid, x, y, nullptr, row_shift, v, row_tile, colsq_partial,
                                 stream);
  } else {
    LaunchExpShiftT<false, false>(grid, x, y, nullptr, row_shift, v, row_tile, nullptr, stream);
  }
  return cudaGetLastError();
}

cudaError_t LaunchColumnScoreFinalize(const float* partial, int64_t num_tiles, int64_t total_cols,
                                      int64_t rows, float* score, cudaStream_t stream) {
  if (total_cols == 0) return cudaSuccess;
  const int block = 256;
  ColumnScoreFinalizeKernel<<<unsigned(CeilDiv(total_cols, block)), block, 0, stream>>>(
      partial, num_tiles, total_cols, 1.f / float(rows), score);
  return cudaGetLastError();
}

cudaError_t LaunchExpDifference(const float* a, const float* b, int64_t count, float* out,
                                cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  const int block = 256;
  ExpDifferenceKernel<<<unsigned(CeilDiv(count, block)), block, 0, stream>>>(a, b, count, out);
  return cudaGetLastError();
}

// ---- Entry points ------------------------------------------------------------------------------

int64_t ColumnScoreRowTile(int64_t rows) {
  return std::max<int64_t>(1, CeilDiv(rows, kMaxColumnTiles));
}

Status RowStats(const float* x, const float* col_bias, const RaggedLayout& layout, int64_t rows,
                float* row_max, float* row_lse, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckRagged(layout, rows, "RowStats"));
  if ((x == nullptr && layout.total() > 0) || row_lse == nullptr) {
    return Status::InvalidArgument("RowStats: null pointer");
  }
  return FromCuda(LaunchRowStats(x, col_bias, layout.View(rows), row_max, row_lse, stream),
                  "RowStats launch");
}

Status RowExpShift(const float* x, float* y, const float* col_bias, const float* row_shift,
                   const RaggedLayout& layout, int64_t rows, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckRagged(layout, rows, "RowExpShift"));
  if (layout.total() > 0 && (x == nullptr || y == nullptr || row_shift == nullptr)) {
    return Status::InvalidArgument("RowExpShift: null pointer");
  }
  const int64_t tile = std::max<int64_t>(kPlainRowTile, CeilDiv(rows, 65535));
  return FromCuda(
      LaunchRowExpShift(x, y, col_bias, row_shift, layout.View(rows), tile, nullptr, stream),
      "RowExpShift launch");
}

Status RowSoftmax(const float* x, float* y, const float* col_bias, const RaggedLayout& layout,
                  int64_t rows, float* row_lse, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(RowStats(x, col_bias, layout, rows, nullptr, row_lse, stream));
  return RowExpShift(x, y, col_bias, row_lse, layout, rows, stream).WithContext("RowSoftmax");
}

Status SoftmaxColumnScores(float* s, const RaggedLayout& layout, int64_t rows, const float* row_lse,
                           float* score, DeviceMemoryPool& pool, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckRagged(layout, rows, "SoftmaxColumnScores"));
  if (layout.total() == 0) return Status::OK();
  if (s == nullptr || row_lse == nullptr || score == nullptr) {
    return Status::InvalidArgument("SoftmaxColumnScores: null pointer");
  }
  const int64_t tile = ColumnScoreRowTile(rows);
  const int64_t tiles = CeilDiv(rows, tile);
  KVC_ASSIGN_OR_RETURN(DeviceBuffer partial,
                       pool.AllocateArray<float>(size_t(tiles * layout.total())));
  const RaggedView v = layout.View(rows);
  KVC_CUDA_RETURN_IF_ERROR(
      LaunchRowExpShift(s, s, nullptr, row_lse, v, tile, partial.as<float>(), stream),
      "SoftmaxColumnScores: exp");
  KVC_CUDA_RETURN_IF_ERROR(
      LaunchColumnScoreFinalize(partial.as<float>(), tiles, layout.total(), rows, score, stream),
      "SoftmaxColumnScores: finalize");
  return Status::OK();  // `partial` returns to the pool; later users are ordered on `stream`
}

Status RowMass(const float* row_lse, const float* row_max, int64_t count, float* z,
               cudaStream_t stream) {
  if (count < 0 || (count > 0 && (row_lse == nullptr || row_max == nullptr || z == nullptr))) {
    return Status::InvalidArgument("RowMass: bad arguments");
  }
  return FromCuda(LaunchExpDifference(row_lse, row_max, count, z, stream), "RowMass launch");
}

}  // namespace kvc::cuda
