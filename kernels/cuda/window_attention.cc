#include "kernels/cuda/window_attention.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "kernels/cpu/attention_scores.h"
#include "kernels/cuda/attention_sums.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"

namespace kvc::cuda {
namespace {

// Sizes shared by the helpers below.
struct Dims {
  int64_t L, H, NQ, G, T, d;
};

// Device buffers of one chunk, sized for plan.layers layers and plan.rows rows.
struct ChunkBuffers {
  DeviceBuffer k;       // f32 [layers * H, T, d]
  DeviceBuffer q;       // f32 [layers * NQ, rows, d]
  DeviceBuffer s;       // f32 [layers * H, G, plan.rows, T]
  DeviceBuffer lse;     // f32 [layers * H, G, plan.rows]
  DeviceBuffer colsum;  // f64 [layers * H, G, T]
  DeviceBuffer out;     // f32 [layers * H, T]
  DeviceBuffer var;     // f64 [layers * H * G]
};

const Tensor* Source(const cpu::PreparedLayer& layer, QuerySource s) {
  const std::optional<Tensor>& q = s == QuerySource::kWindow ? layer.q_window : layer.q_fit;
  return q.has_value() ? &*q : nullptr;
}

// The source's row count N, after checking every layer has it with shape [n_q, N, d].
Result<int64_t> SourceRows(const cpu::PreparedCache& c, QuerySource s) {
  const char* name = s == QuerySource::kWindow ? "q_window" : "q_fit";
  int64_t n = -1;
  for (const cpu::PreparedLayer& layer : c.layers) {
    const Tensor* q = Source(layer, s);
    if (q == nullptr || q->rank() != 3 || q->dim(0) != c.layout.n_q_heads || q->dim(2) != c.d() ||
        q->dtype() != DType::kF32 || (n >= 0 && q->dim(1) != n)) {
      return Status::InvalidArgument(std::string("column sums: every layer needs an F32 ") + name +
                                     " [n_q, N, d] of the same shape");
    }
    n = q->dim(1);
  }
  return n;
}

Status UploadChunk(const cpu::PreparedCache& c, const ColumnSumsRequest& r, const Dims& dm,
                   int64_t l0, int64_t lc, const ChunkBuffers& buf, cudaStream_t st) {
  const size_t k_elems = size_t(dm.H * dm.T * dm.d);
  const size_t q_elems = size_t(dm.NQ * r.rows * dm.d);
  for (int64_t i = 0; i < lc; ++i) {
    const cpu::PreparedLayer& layer = c.layers[size_t(l0 + i)];
    KVC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(buf.k.as<float>() + i * k_elems, layer.k.data<float>(),
                                             k_elems * sizeof(float), cudaMemcpyHostToDevice, st),
                             "column sums: upload K");
    const Tensor& q = *Source(layer, r.source);
    const int64_t n = q.dim(1);
    const size_t row_bytes = size_t(dm.d) * sizeof(float);
    KVC_CUDA_RETURN_IF_ERROR(
        cudaMemcpy2DAsync(buf.q.as<float>() + i * q_elems, size_t(r.rows) * row_bytes,
                          q.data<float>() + (n - r.rows) * dm.d, size_t(n) * row_bytes,
                          size_t(r.rows) * row_bytes, size_t(dm.NQ), cudaMemcpyHostToDevice, st),
        "column sums: upload queries");
  }
  return Status::OK();
}

// colsum = sum over all r.rows rows of the masked softmax, chunk by chunk of plan_rows rows.
Status AccumulateChunk(const ColumnSumsRequest& r, const Dims& dm, int64_t batch, int64_t plan_rows,
                       const ChunkBuffers& buf, GpuContext& ctx) {
  const cudaStream_t st = ctx.stream();
  KVC_CUDA_RETURN_IF_ERROR(
      cudaMemsetAsync(buf.colsum.get(), 0, size_t(batch * dm.G * dm.T) * sizeof(double), st),
      "column sums: clear");
  const float scale = 1.0f / std::sqrt(static_cast<float>(dm.d));  // as the CPU reference
  for (int64_t r0 = 0; r0 < r.rows; r0 += plan_rows) {
    const int64_t rc = std::min(plan_rows, r.rows - r0);
    for (int64_t g = 0; g < dm.G; ++g) {
      GemmShape sh;
      sh.m = rc;
      sh.n = dm.T;
      sh.k = dm.d;
      sh.op_a = Op::kN;
      sh.op_b = Op::kT;
      sh.lda = dm.d;
      sh.ldb = dm.d;
      sh.ldc = dm.T;
      sh.stride_a = dm.G * r.rows * dm.d;
      sh.stride_b = dm.T * dm.d;
      sh.stride_c = dm.G * rc * dm.T;
      sh.batch = batch;
      KVC_RETURN_IF_ERROR(Gemm(ctx.cublas(), sh, scale,
                               buf.q.as<float>() + (g * r.rows + r0) * dm.d, buf.k.as<float>(), 0.f,
                               buf.s.as<float>() + g * rc * dm.T, MathMode::kF32));
    }
    const AttentionChunk ch{batch, dm.G, rc, r0, dm.T, dm.T - r.rows, r.causal};
    KVC_RETURN_IF_ERROR(MaskedRowLse(buf.s.as<float>(), ch, buf.lse.as<float>(), st));
    KVC_RETURN_IF_ERROR(AccumulateColumnSums(buf.s.as<float>(), buf.lse.as<float>(), ch,
                                             buf.colsum.as<double>(), st));
  }
  return Status::OK();
}

// The epilogue of layers [l0, l0 + lc) and the copies into the host result.
Status FinishChunk(const ColumnSumsRequest& r, const Dims& dm, int64_t l0, int64_t lc,
                   const ChunkBuffers& buf, ColumnSumsResult* out, cudaStream_t st) {
  const int64_t batch = lc * dm.H;
  const double* colsum = buf.colsum.as<double>();
  switch (r.epilogue) {
    case ColumnEpilogue::kNone:
      break;
    case ColumnEpilogue::kPooledMean:
      KVC_RETURN_IF_ERROR(
          PooledGroupMean(colsum, batch, dm.G, dm.T, r.pool, buf.out.as<float>(), st));
      break;
    case ColumnEpilogue::kGroupSumDouble:
    case ColumnEpilogue::kGroupSumFloat:
      KVC_RETURN_IF_ERROR(GroupSum(colsum, batch, dm.G, dm.T,
                                   r.epilogue == ColumnEpilogue::kGroupSumDouble
                                       ? GroupSumMode::kDouble
                                       : GroupSumMode::kFloat,
                                   buf.out.as<float>(), st));
      break;
  }
  if (r.epilogue != ColumnEpilogue::kNone) {
    KVC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(out->scores.data() + l0 * dm.H * dm.T, buf.out.get(),
                        size_t(batch * dm.T) * sizeof(float), cudaMemcpyDeviceToHost, st),
        "column sums: download scores");
  }
  if (r.want_variance) {
    KVC_RETURN_IF_ERROR(MinMaxVariance(colsum, batch * dm.G, dm.T, buf.var.as<double>(), st));
    KVC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(out->variance.data() + l0 * dm.NQ, buf.var.get(),
                        size_t(batch * dm.G) * sizeof(double), cudaMemcpyDeviceToHost, st),
        "column sums: download variance");
  }
  return Status::OK();
}

Result<ChunkBuffers> AllocateChunk(const Dims& dm, const ColumnSumsPlan& plan, int64_t rows,
                                   DeviceMemoryPool& pool) {
  const size_t b = size_t(plan.layers * dm.H);
  ChunkBuffers buf;
  KVC_ASSIGN_OR_RETURN(buf.k, pool.AllocateArray<float>(b * size_t(dm.T * dm.d)));
  KVC_ASSIGN_OR_RETURN(buf.q, pool.AllocateArray<float>(b * size_t(dm.G * rows * dm.d)));
  KVC_ASSIGN_OR_RETURN(buf.s, pool.AllocateArray<float>(b * size_t(dm.G * plan.rows * dm.T)));
  KVC_ASSIGN_OR_RETURN(buf.lse, pool.AllocateArray<float>(b * size_t(dm.G * plan.rows)));
  KVC_ASSIGN_OR_RETURN(buf.colsum, pool.AllocateArray<double>(b * size_t(dm.G * dm.T)));
  KVC_ASSIGN_OR_RETURN(buf.out, pool.AllocateArray<float>(b * size_t(dm.T)));
  KVC_ASSIGN_OR_RETURN(buf.var, pool.AllocateArray<double>(b * size_t(dm.G)));
  return buf;
}

}  // namespace

ColumnSumsPlan PlanColumnSums(int64_t L, int64_t H, int64_t G, int64_t T, int64_t d, int64_t rows,
                              size_t score_bytes) {
  const int64_t budget = int64_t(std::min<size_t>(score_bytes, size_t(INT64_MAX / 2)));
  const int64_t row_bytes = int64_t(sizeof(float)) * H * G * T;  // one row of every query head
  ColumnSumsPlan p;
  p.rows = std::max<int64_t>(1, std::min(rows, budget / std::max<int64_t>(row_bytes, 1)));
  p.rows = std::max<int64_t>(1, std::min<int64_t>(p.rows, INT_MAX / std::max<int64_t>(G, 1)));
  const int64_t layer_bytes =
      std::max(row_bytes * p.rows, int64_t(sizeof(float)) * H * T * d);  // scores or keys
  p.layers =
      std::clamp<int64_t>(budget / std::max<int64_t>(layer_bytes, 1), 1, std::max<int64_t>(L, 1));
  p.layers = std::max<int64_t>(1, std::min(p.layers, 65535 / std::max<int64_t>(H, 1)));
  return p;
}

Result<ColumnSumsResult> RunColumnSums(const cpu::PreparedCache& c, const ColumnSumsRequest& r,
                                       GpuContext& ctx) {
  KVC_RETURN_IF_ERROR(cpu::CheckPrepared(c));
  const Dims dm{
      c.layout.n_layers, c.layout.n_kv_heads, c.layout.n_q_heads, c.layout.group(), c.T(), c.d()};
  KVC_ASSIGN_OR_RETURN(const int64_t n_rows, SourceRows(c, r.source));
  if (r.rows < 1 || r.rows > n_rows || (r.causal && r.rows > dm.T) || dm.H > 65535 ||
      dm.T >= (int64_t(1) << 31)) {
    return Status::InvalidArgument(
        "column sums: need 1 <= rows <= N (<= T when causal), H <= "
        "65535 and T < 2^31; rows = " +
        std::to_string(r.rows));
  }
  const ColumnSumsPlan plan = PlanColumnSums(dm.L, dm.H, dm.G, dm.T, dm.d, r.rows, r.score_bytes);
  KVC_ASSIGN_OR_RETURN(ChunkBuffers buf, AllocateChunk(dm, plan, r.rows, ctx.pool()));
  ColumnSumsResult out;
  if (r.epilogue != ColumnEpilogue::kNone) out.scores.resize(size_t(dm.L * dm.H * dm.T));
  if (r.want_variance) out.variance.resize(size_t(dm.L * dm.NQ));
  for (int64_t l0 = 0; l0 < dm.L; l0 += plan.layers) {
    const int64_t lc = std::min(plan.layers, dm.L - l0);
    KVC_RETURN_IF_ERROR(UploadChunk(c, r, dm, l0, lc, buf, ctx.stream()));
    KVC_RETURN_IF_ERROR(AccumulateChunk(r, dm, lc * dm.H, plan.rows, buf, ctx));
    KVC_RETURN_IF_ERROR(FinishChunk(r, dm, l0, lc, buf, &out, ctx.stream()));
  }
  KVC_RETURN_IF_ERROR(ctx.Synchronize());
  return out;
}

}  // namespace kvc::cuda
