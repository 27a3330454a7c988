// Scoring, budgets and selection of the eviction methods on the GPU (methods.h). Validation
// mirrors the CPU functions line by line so both backends reject the same inputs the same way.
#include "kernels/cuda/methods.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cpu/attention_scores.h"
#include "kernels/cpu/budgets.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gather.cuh"
#include "kernels/cuda/ragged.h"
#include "kernels/cuda/select_topk.cuh"
#include "kernels/cuda/topk.cuh"
#include "kernels/cuda/window_attention.h"

namespace kvc::cuda {
namespace {

// Segments per SegmentedTopK call: a grid dimension, and a bound on the scores uploaded at once.
constexpr int64_t kMaxSegments = 65535;
constexpr int64_t kMaxSelectElems = int64_t(1) << 28;

// d2o.cc's option check (same message).
Status CheckD2oOptions(const D2oOptions& o) {
  if (!(o.hh_ratio >= 0.0) || !(o.recent_ratio >= 0.0) || o.sinks < 0) {
    return Status::InvalidArgument("d2o: hh_ratio, recent_ratio and sinks must be >= 0");
  }
  return Status::OK();
}

cpu::ScoreSet ToScoreSet(const cpu::PreparedCache& c, std::vector<float> scores,
                         std::vector<int64_t> forced) {
  cpu::ScoreSet s;
  s.n_layers = c.layout.n_layers;
  s.n_kv_heads = c.layout.n_kv_heads;
  s.T = c.T();
  s.scores = std::move(scores);
  s.forced = std::move(forced);
  return s;
}

// cpu::WindowPooledScores on the GPU.
Result<cpu::ScoreSet> WindowPooledScoresGpu(const cpu::PreparedCache& c, int64_t rows, int kernel,
                                            Pooling pooling, bool mean_over_rows, GpuContext& ctx,
                                            const GpuMethodsOptions& mo) {
  ColumnSumsRequest r;
  r.source = QuerySource::kWindow;
  r.rows = rows;
  r.causal = true;
  r.epilogue = ColumnEpilogue::kPooledMean;
  r.pool.prefix = c.T() - rows;
  r.pool.kernel = kernel;
  r.pool.max_pool = pooling == Pooling::kMax;
  r.pool.row_scale = mean_over_rows ? 1.0 / static_cast<double>(rows) : 1.0;
  r.score_bytes = mo.score_bytes;
  KVC_ASSIGN_OR_RETURN(ColumnSumsResult sums, RunColumnSums(c, r, ctx));
  return ToScoreSet(c, std::move(sums.scores), cpu::SinksAndRecent(c.T(), 0, rows));
}

}  // namespace

// ---- Scoring
// -------------------------------------------------------------------------------------

Result<cpu::ScoreSet> ScoreSnapKvGpu(const cpu::PreparedCache& c, const SnapKvOptions& o,
                                     GpuContext& ctx, const GpuMethodsOptions& mo) {
  KVC_RETURN_IF_ERROR(cpu::CheckPrepared(c));
  if (o.kernel < 1) {
    return Status::InvalidArgument("snapkv.kernel must be >= 1, got " + std::to_string(o.kernel));
  }
  KVC_ASSIGN_OR_RETURN(const int64_t rows, cpu::WindowRows(c, o.window, "snapkv"));
  return WindowPooledScoresGpu(c, rows, o.kernel, o.pooling, /*mean_over_rows=*/true, ctx, mo);
}

Result<cpu::ScoreSet> ScoreDynamicKvGpu(const cpu::PreparedCache& c, const DynamicKvOptions& o,
                                        GpuContext& ctx, const GpuMethodsOptions& mo) {
  KVC_RETURN_IF_ERROR(cpu::CheckPrepared(c));
  if (o.window < 1 || o.kernel < 1 || !(o.radio_max > 0.0) || o.every_m < 1) {
    return Status::InvalidArgument(
        "dynamickv: window, kernel and every_m must be >= 1 and radio_max > 0");
  }
  KVC_ASSIGN_OR_RETURN(const int64_t rows, cpu::WindowRows(c, o.window, "dynamickv"));
  return WindowPooledScoresGpu(c, rows, o.kernel, o.pooling, /*mean_over_rows=*/false, ctx, mo);
}

Result<cpu::ScoreSet> ScoreH2oGpu(const cpu::PreparedCache& c, const H2oOptions& o,
                                  int64_t head_budget, GpuContext& ctx,
                                  const GpuMethodsOptions& mo) {
  KVC_RETURN_IF_ERROR(cpu::CheckPrepared(c));
  if (!(o.recent_fraction >= 0.0 && o.recent_fraction <= 1.0)) {
    return Status::InvalidArgument("h2o.recent_fraction must be in [0, 1]");
  }
  const bool has_window = !c.layers.empty() && c.layers[0].q_window.has_value();
  const bool has_fit = !c.layers.empty() && c.layers[0].q_fit.has_value();
  ColumnSumsRequest r;
  if (has_window) {
    KVC_ASSIGN_OR_RETURN(r.rows, cpu::WindowRows(c, 0, "h2o"));
    r.source = QuerySource::kWindow;
    r.causal = true;
  } else if (has_fit) {
    KVC_RETURN_IF_ERROR(cpu::CheckH2oFitQueries(c));
    r.source = QuerySource::kFit;
    r.rows = c.layers[0].q_fit->dim(1);
    r.causal = false;
  } else {
    return Status::InvalidArgument("h2o needs q_window (or q_ref)");
  }
  r.epilogue = ColumnEpilogue::kGroupSumDouble;
  r.score_bytes = mo.score_bytes;
  KVC_ASSIGN_OR_RETURN(ColumnSumsResult sums, RunColumnSums(c, r, ctx));
  const int64_t recent = std::llround(o.recent_fraction * static_cast<double>(head_budget));
  return ToScoreSet(c, std::move(sums.scores), cpu::SinksAndRecent(c.T(), 0, recent));
}

Result<cpu::ScoreSet> ScoreD2oGpu(const cpu::PreparedCache& c, const D2oOptions& o,
                                  int64_t head_budget, GpuContext& ctx,
                                  const GpuMethodsOptions& mo) {
  KVC_RETURN_IF_ERROR(cpu::CheckPrepared(c));
  KVC_RETURN_IF_ERROR(CheckD2oOptions(o));
  ColumnSumsRequest r;
  KVC_ASSIGN_OR_RETURN(r.rows, cpu::WindowRows(c, 0, "d2o"));
  r.source = QuerySource::kWindow;
  r.causal = true;
  r.epilogue = ColumnEpilogue::kGroupSumFloat;
  r.score_bytes = mo.score_bytes;
  KVC_ASSIGN_OR_RETURN(ColumnSumsResult sums, RunColumnSums(c, r, ctx));
  const double rho = o.hh_ratio + o.recent_ratio;
  const double recent_share = rho > 0.0 ? o.recent_ratio / rho : 0.0;
  const int64_t recent = std::llround(recent_share * static_cast<double>(head_budget));
  return ToScoreSet(c, std::move(sums.scores), cpu::SinksAndRecent(c.T(), o.sinks, recent));
}

// ---- Budgets
// -------------------------------------------------------------------------------------

Result<std::vector<double>> D2oLayerRatiosGpu(const cpu::PreparedCache& c, const D2oOptions& o,
                                              GpuContext& ctx, const GpuMethodsOptions& mo) {
  KVC_RETURN_IF_ERROR(cpu::CheckPrepared(c));
  KVC_RETURN_IF_ERROR(CheckD2oOptions(o));
  ColumnSumsRequest r;
  KVC_ASSIGN_OR_RETURN(r.rows, cpu::WindowRows(c, 0, "d2o allocator"));
  r.source = QuerySource::kWindow;
  r.causal = true;
  r.epilogue = ColumnEpilogue::kNone;
  r.want_variance = true;
  r.score_bytes = mo.score_bytes;
  KVC_ASSIGN_OR_RETURN(ColumnSumsResult sums, RunColumnSums(c, r, ctx));
  const int L = c.layout.n_layers, NQ = c.layout.n_q_heads;
  std::vector<double> sigma(L, 0.0);
  for (int l = 0; l < L; ++l) {
    for (int j = 0; j < NQ; ++j) sigma[l] += sums.variance[size_t(l) * NQ + j];
    sigma[l] /= NQ;
  }
  return cpu::D2oRatiosFromSigma(sigma, o);
}

cpu::ScoreSet ReducedCandidateSet(int L, int H, const std::vector<float>& values, int64_t size,
                                  int64_t w) {
  cpu::ScoreSet s = cpu::ScoreSet::Zeros(L, H, size + w);
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) {
      const size_t b = size_t(l) * H + h;
      std::copy_n(values.begin() + b * size, size, s.at(l, h));
    }
  }
  return s;
}

namespace {

// Top `size` of the first `prefix` scores of every head (values in ascending position order),
// NaN ranked as -inf: the candidates of cpu::DynamicKvLayerBudgets.
Result<std::vector<float>> TopPrefixValuesGpu(const cpu::ScoreSet& s, int64_t prefix, int64_t size,
                                              GpuContext& ctx) {
  const int64_t B = int64_t(s.n_layers) * s.n_kv_heads;
  const cudaStream_t st = ctx.stream();
  std::vector<float> out(size_t(B * size));
  const int64_t per_call = std::max<int64_t>(1, std::min(kMaxSegments, kMaxSelectElems / prefix));
  for (int64_t b0 = 0; b0 < B; b0 += per_call) {
    const int64_t nb = std::min(per_call, B - b0);
    KVC_ASSIGN_OR_RETURN(DeviceBuffer x, ctx.pool().AllocateArray<float>(size_t(nb * prefix)));
    KVC_CUDA_RETURN_IF_ERROR(
        cudaMemcpy2DAsync(x.get(), size_t(prefix) * sizeof(float), s.scores.data() + b0 * s.T,
                          size_t(s.T) * sizeof(float), size_t(prefix) * sizeof(float), size_t(nb),
                          cudaMemcpyHostToDevice, st),
        "dynamickv budgets: upload");
    KVC_RETURN_IF_ERROR(RankValues(x.as<float>(), x.as<float>(), nb * prefix, false, st));
    KVC_ASSIGN_OR_RETURN(RaggedLayout seg, RaggedLayout::Uniform(nb, prefix, ctx.pool(), st));
    KVC_ASSIGN_OR_RETURN(RaggedLayout top, RaggedLayout::Uniform(nb, size, ctx.pool(), st));
    KVC_ASSIGN_OR_RETURN(DeviceBuffer idx, ctx.pool().AllocateArray<int32_t>(size_t(nb * size)));
    KVC_ASSIGN_OR_RETURN(DeviceBuffer val, ctx.pool().AllocateArray<float>(size_t(nb * size)));
    KVC_RETURN_IF_ERROR(SegmentedTopK(x.as<float>(), seg, top, idx.as<int32_t>(), ctx.pool(), st));
    KVC_RETURN_IF_ERROR(GatherRows(x.as<float>(), prefix, 1, idx.as<int32_t>(), top,
                                   val.as<float>(), st));  // d = 1: picks the values
    KVC_ASSIGN_OR_RETURN(std::vector<float> v, Download(val.as<float>(), size_t(nb * size), st));
    std::copy(v.begin(), v.end(), out.begin() + b0 * size);
  }
  return out;
}

// budgets.cc's ObservationWindow.
int64_t ObservationWindow(const cpu::PreparedCache& c, int requested) {
  if (c.layers.empty() || !c.layers[0].q_window.has_value()) return 0;
  Result<int64_t> rows = cpu::WindowRows(c, requested, "allocator");
  return rows.ok() ? *rows : 0;
}

}  // namespace

Result<std::vector<int64_t>> DynamicKvLayerBudgetsGpu(const cpu::ScoreSet& scores,
                                                      const DynamicKvOptions& o, int64_t w,
                                                      int64_t cap, GpuContext& ctx) {
  const int L = scores.n_layers, H = scores.n_kv_heads;
  if (L < 0 || H < 0 || scores.T < 0 || scores.T >= (int64_t(1) << 31) ||
      scores.scores.size() != size_t(L) * H * scores.T) {
    return Status::InvalidArgument("dynamickv budgets: scores have the wrong size");
  }
  const int64_t prefix = scores.T - w;
  if (cap <= w || prefix <= 0 || L <= 0 || H <= 0) {
    return cpu::DynamicKvLayerBudgets(scores, o, w, cap);  // no ranking involved
  }
  const int64_t size = std::clamp<int64_t>(
      static_cast<int64_t>(std::floor(o.radio_max * static_cast<double>(cap - w))), 0, prefix);
  if (size == 0) return cpu::DynamicKvLayerBudgets(scores, o, w, cap);  // empty candidate lists
  KVC_ASSIGN_OR_RETURN(std::vector<float> values, TopPrefixValuesGpu(scores, prefix, size, ctx));
  return cpu::DynamicKvLayerBudgets(ReducedCandidateSet(L, H, values, size, w), o, w, cap);
}

Result<cpu::Budgets> AllocateBudgetsGpu(const cpu::PreparedCache& c, const cpu::ScoreSet& scores,
                                        const CompactionSpec& spec, int64_t head_budget,
                                        GpuContext& ctx, const GpuMethodsOptions& mo) {
  const Allocator a = ResolvedAllocator(spec);
  if (a != Allocator::kDynamicKv && a != Allocator::kD2o) {
    return cpu::AllocateBudgets(c, scores, spec, head_budget);  // no statistics to compute
  }
  KVC_RETURN_IF_ERROR(cpu::CheckPrepared(c));
  if (head_budget < 0) {
    return Status::InvalidArgument("head budget must be >= 0, got " + std::to_string(head_budget));
  }
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads;
  const int64_t T = c.T();
  const int64_t total = static_cast<int64_t>(L) * H * head_budget;
  if (a == Allocator::kD2o) {
    KVC_ASSIGN_OR_RETURN(std::vector<double> ratio, D2oLayerRatiosGpu(c, spec.d2o, ctx, mo));
    return cpu::D2oBudgetsFromRatios(std::move(ratio), spec.d2o, L, H, T, total);
  }
  if (scores.n_layers != L || scores.n_kv_heads != H || scores.T != T ||
      scores.scores.size() != size_t(L) * H * T) {
    return Status::InvalidArgument("dynamickv allocator: scores do not match the cache");
  }
  const int64_t w = ObservationWindow(c, spec.dynamickv.window);
  KVC_ASSIGN_OR_RETURN(std::vector<int64_t> layer,
                       DynamicKvLayerBudgetsGpu(scores, spec.dynamickv, w, head_budget, ctx));
  std::vector<double> shares;
  for (int64_t b : layer) shares.insert(shares.end(), H, static_cast<double>(b));
  return cpu::BudgetsFromShares(shares, L, H, T, total);
}

// ---- Selection
// -----------------------------------------------------------------------------------

std::vector<int32_t> ForcedPriority(const std::vector<int64_t>& forced, int64_t T) {
  size_t sinks = 0;
  while (sinks < forced.size() && forced[sinks] == static_cast<int64_t>(sinks)) ++sinks;
  std::vector<int64_t> order(forced.begin(), forced.begin() + sinks);
  order.insert(order.end(), forced.rbegin(), forced.rend() - sinks);
  std::vector<int32_t> out;
  std::vector<char> seen(size_t(std::max<int64_t>(T, 0)), 0);
  for (int64_t p : order) {
    if (p < 0 || p >= T || seen[size_t(p)]) continue;
    seen[size_t(p)] = 1;
    out.push_back(static_cast<int32_t>(p));
  }
  return out;
}

namespace {

// Selection of heads [b0, b0 + nb) (flat layer-major index) into `sel`.
Status SelectChunk(const cpu::ScoreSet& s, const std::vector<int64_t>& budget, int64_t b0,
                   int64_t nb, const DeviceBuffer& priority, int64_t n_priority,
                   cpu::Selection* sel, GpuContext& ctx) {
  const cudaStream_t st = ctx.stream();
  const int64_t T = s.T;
  std::vector<int64_t> counts(budget.begin() + b0, budget.begin() + b0 + nb);
  KVC_ASSIGN_OR_RETURN(DeviceBuffer x,
                       Upload(s.scores.data() + b0 * T, size_t(nb * T), ctx.pool(), st));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dev_budget, Upload(counts, ctx.pool(), st));
  KVC_RETURN_IF_ERROR(RankValues(x.as<float>(), x.as<float>(), nb * T, true, st));
  KVC_RETURN_IF_ERROR(MarkForced(x.as<float>(), nb, T, priority.as<int32_t>(), n_priority,
                                 dev_budget.as<int64_t>(), st));
  KVC_ASSIGN_OR_RETURN(RaggedLayout seg, RaggedLayout::Uniform(nb, T, ctx.pool(), st));
  KVC_ASSIGN_OR_RETURN(RaggedLayout out, RaggedLayout::FromCounts(counts, ctx.pool(), st));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer idx, ctx.pool().AllocateArray<int32_t>(size_t(out.total())));
  KVC_RETURN_IF_ERROR(SegmentedTopK(x.as<float>(), seg, out, idx.as<int32_t>(), ctx.pool(), st));
  KVC_ASSIGN_OR_RETURN(std::vector<int32_t> pos,
                       Download(idx.as<int32_t>(), size_t(out.total()), st));
  for (int64_t i = 0; i < nb; ++i) {
    const int64_t b = b0 + i;
    std::vector<int64_t>& dst = (*sel)[size_t(b / s.n_kv_heads)][size_t(b % s.n_kv_heads)];
    dst.assign(pos.begin() + out.offset(i), pos.begin() + out.offset(i + 1));
  }
  return Status::OK();
}

}  // namespace

Result<cpu::Selection> SelectTopKGpu(const cpu::ScoreSet& scores, const cpu::Budgets& budgets,
                                     GpuContext& ctx) {
  const int L = scores.n_layers, H = scores.n_kv_heads;
  const int64_t T = scores.T;
  if (L < 0 || H < 0 || T < 0 || T >= (int64_t(1) << 31) ||
      scores.scores.size() != size_t(L) * H * T) {
    return Status::InvalidArgument("select: scores have the wrong size");
  }
  cpu::Selection sel(L, std::vector<std::vector<int64_t>>(H));
  if (L == 0 || H == 0 || T == 0) return sel;
  std::vector<int64_t> budget(size_t(L) * H, 0);  // missing entries: 0, as the CPU
  for (int l = 0; l < L && l < static_cast<int>(budgets.size()); ++l) {
    for (int h = 0; h < H && h < static_cast<int>(budgets[l].size()); ++h) {
      budget[size_t(l) * H + h] = std::clamp<int64_t>(budgets[l][h], 0, T);
    }
  }
  const std::vector<int32_t> prio = ForcedPriority(scores.forced, T);
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dev_prio, Upload(prio, ctx.pool(), ctx.stream()));
  const int64_t B = int64_t(L) * H;
  const int64_t per_call = std::max<int64_t>(1, std::min(kMaxSegments, kMaxSelectElems / T));
  for (int64_t b0 = 0; b0 < B; b0 += per_call) {
    KVC_RETURN_IF_ERROR(SelectChunk(scores, budget, b0, std::min(per_call, B - b0), dev_prio,
                                    int64_t(prio.size()), &sel, ctx));
  }
  return sel;
}

}  // namespace kvc::cuda
