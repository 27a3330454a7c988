#include "kernels/cuda/am_fit.h"

#include <climits>
#include <cmath>
#include <string>
#include <utility>

#include "kernels/cuda/device.h"
#include "kernels/cuda/gather.cuh"
#include "kernels/cuda/softmax.cuh"
#include "kernels/cuda/topk.cuh"

namespace kvc::cuda {
namespace {

// Device state shared by the phases of one AmFit call.
struct Work {
  RaggedLayout full;     // batch x T (score rows, column scores)
  DeviceBuffer row_max;  // [batch, n] over all T keys
  DeviceBuffer row_lse;  // [batch, n] over all T keys
  DeviceBuffer y;        // [batch, n, d] full attention outputs
  DeviceBuffer sc;       // [n * total] scores of the kept keys (ragged)
  DeviceBuffer px;       // [n * total] Phi, then X (ragged)
};

Status Validate(const AmFitProblem& p) {
  if (p.batch < 1 || p.batch > 65535 || p.n < 1 || p.tokens < 1 || p.tokens > INT32_MAX ||
      p.head_dim < 1 || p.head_dim > 65536) {
    return Status::InvalidArgument("AmFit: sizes out of range (batch " + std::to_string(p.batch) +
                                   ", n " + std::to_string(p.n) + ", T " +
                                   std::to_string(p.tokens) + ", d " + std::to_string(p.head_dim) +
                                   ")");
  }
  if (p.budgets.size() != size_t(p.batch)) {
    return Status::InvalidArgument("AmFit: need one budget per batch entry");
  }
  for (size_t b = 0; b < p.budgets.size(); ++b) {
    if (p.budgets[b] < 0 || p.budgets[b] > p.tokens) {
      return Status::InvalidArgument("AmFit: budget " + std::to_string(p.budgets[b]) +
                                     " of entry " + std::to_string(b) + " outside [0, T]");
    }
  }
  if (p.q == nullptr || p.k == nullptr || p.v == nullptr) {
    return Status::InvalidArgument("AmFit: null input");
  }
  return Status::OK();
}

bool IsOmp(const AmFitOptions& o) { return o.selection != AmFitSelection::kHighestAttention; }

// The OMP parameters in effect (plain OMP: one key per step, refit after each).
OmpFastOptions EffectiveOmp(const AmFitOptions& o) {
  OmpFastOptions omp = o.omp;
  if (o.selection == AmFitSelection::kOmp) omp.schedule = PlainOmpSchedule();
  return omp;
}

Status ValidateSelection(const AmFitProblem& p, const AmFitOptions& o) {
  if (!IsOmp(o)) return Status::OK();
  if (p.selector != nullptr) {
    return Status::InvalidArgument("AmFit: a selector and OMP selection exclude each other");
  }
  return CheckOmpFastOptions(EffectiveOmp(o)).WithContext("AmFit");
}

// Phi = exp(S - m) and z = exp(lse - m) for OMP selection (S still holds raw scores).
Status OmpInputs(const float* s, const AmFitProblem& p, GpuContext& ctx, const Work& w,
                 DeviceBuffer& phi, DeviceBuffer& z) {
  DeviceMemoryPool& pool = ctx.pool();
  const int64_t B = p.batch, n = p.n;
  KVC_ASSIGN_OR_RETURN(phi, pool.AllocateArray<float>(size_t(B * n * p.tokens)));
  KVC_ASSIGN_OR_RETURN(z, pool.AllocateArray<float>(size_t(B * n)));
  KVC_RETURN_IF_ERROR(
      RowExpShift(s, phi.as<float>(), nullptr, w.row_max.as<float>(), w.full, n, ctx.stream()));
  return RowMass(w.row_lse.as<float>(), w.row_max.as<float>(), B * n, z.as<float>(), ctx.stream());
}

Status SelectPhase(const AmFitProblem& p, const AmFitOptions& o, GpuContext& ctx, Work& w,
                   AmFitResult& r) {
  const int64_t B = p.batch, n = p.n, T = p.tokens, d = p.head_dim;
  DeviceMemoryPool& pool = ctx.pool();
  cudaStream_t st = ctx.stream();
  KVC_ASSIGN_OR_RETURN(w.full, RaggedLayout::Uniform(B, T, pool, st));
  KVC_ASSIGN_OR_RETURN(w.row_max, pool.AllocateArray<float>(size_t(B * n)));
  KVC_ASSIGN_OR_RETURN(w.row_lse, pool.AllocateArray<float>(size_t(B * n)));
  KVC_ASSIGN_OR_RETURN(r.scores, pool.AllocateArray<float>(size_t(B * T)));
  DeviceBuffer omp_phi, omp_z;  // OMP only: live until the selection is done
  {
    KVC_ASSIGN_OR_RETURN(DeviceBuffer s, pool.AllocateArray<float>(size_t(B * n * T)));
    float* ps = s.as<float>();
    const float scale = 1.f / std::sqrt(float(d));
    KVC_RETURN_IF_ERROR(
        AttentionScores(ctx.cublas(), p.q, p.k, ps, B, n, T, d, scale, o.score_math));
    KVC_RETURN_IF_ERROR(
        RowStats(ps, nullptr, w.full, n, w.row_max.as<float>(), w.row_lse.as<float>(), st));
    if (IsOmp(o)) KVC_RETURN_IF_ERROR(OmpInputs(ps, p, ctx, w, omp_phi, omp_z));
    KVC_RETURN_IF_ERROR(
        SoftmaxColumnScores(ps, w.full, n, w.row_lse.as<float>(), r.scores.as<float>(), pool, st));
    if (o.fit_values) {
      KVC_ASSIGN_OR_RETURN(w.y, pool.AllocateArray<float>(size_t(B * n * d)));
      KVC_RETURN_IF_ERROR(
          AttentionOutputs(ctx.cublas(), ps, p.v, w.y.as<float>(), B, n, T, d, o.score_math));
    }
  }  // the score matrix goes back to the pool here
  KVC_ASSIGN_OR_RETURN(r.layout, RaggedLayout::FromCounts(p.budgets, pool, st));
  const size_t total = size_t(r.layout.total());
  KVC_ASSIGN_OR_RETURN(r.indices, pool.AllocateArray<int32_t>(total));
  KVC_ASSIGN_OR_RETURN(r.keys, pool.AllocateArray<float>(total * d));
  KVC_ASSIGN_OR_RETURN(r.values, pool.AllocateArray<float>(total * d));
  if (IsOmp(o)) {
    KVC_RETURN_IF_ERROR(OmpFastSelect(omp_phi.as<float>(), omp_z.as<float>(), B, n, T, r.layout,
                                      EffectiveOmp(o), r.indices.as<int32_t>(), pool, st)
                            .WithContext("AmFit: OMP selection"));
    omp_phi.Reset();  // stream order makes the early release safe (memory_pool.h)
  } else {
    const float* selector = p.selector != nullptr ? p.selector : r.scores.as<float>();
    KVC_RETURN_IF_ERROR(
        SegmentedTopK(selector, w.full, r.layout, r.indices.as<int32_t>(), pool, st));
  }
  KVC_RETURN_IF_ERROR(
      GatherRows(p.k, T, d, r.indices.as<int32_t>(), r.layout, r.keys.as<float>(), st));
  return GatherRows(p.v, T, d, r.indices.as<int32_t>(), r.layout, r.values.as<float>(), st);
}

// sc = Q_b C_k^T / sqrt(d) per head, into the ragged n x t_b blocks.
Status KeptScores(const AmFitProblem& p, const AmFitOptions& o, GpuContext& ctx, Work& w,
                  const AmFitResult& r) {
  const int64_t n = p.n, d = p.head_dim;
  KVC_ASSIGN_OR_RETURN(w.sc, ctx.pool().AllocateArray<float>(size_t(n * r.layout.total())));
  const float scale = 1.f / std::sqrt(float(d));
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t t = r.layout.cols(b);
    if (t == 0) continue;
    GemmShape g;
    g.m = n;
    g.n = t;
    g.k = d;
    g.op_b = Op::kT;
    g.lda = d;
    g.ldb = d;
    g.ldc = t;
    const int64_t off = r.layout.offset(b);
    KVC_RETURN_IF_ERROR(Gemm(ctx.cublas(), g, scale, p.q + b * n * d, r.keys.as<float>() + off * d,
                             0.f, w.sc.as<float>() + n * off, o.score_math)
                            .WithContext("AmFit: kept scores"));
  }
  return Status::OK();
}

Status BetaPhase(const AmFitProblem& p, const AmFitOptions& o, GpuContext& ctx, Work& w,
                 AmFitResult& r) {
  DeviceMemoryPool& pool = ctx.pool();
  cudaStream_t st = ctx.stream();
  const int64_t n = p.n, total = r.layout.total();
  NnlsOptions nnls = o.nnls;  // design §4: after OMP, w lies in [1e-12, e^7] (o.omp's bounds)
  if (IsOmp(o)) {
    nnls.lower = o.omp.lower;
    nnls.upper = o.omp.upper;
  }
  KVC_ASSIGN_OR_RETURN(r.beta, pool.AllocateArray<float>(size_t(total)));
  if (total == 0) return Status::OK();
  if (!o.fit_beta) {
    return FromCuda(cudaMemsetAsync(r.beta.get(), 0, size_t(total) * sizeof(float), st),
                    "AmFit: zero beta");
  }
  KVC_ASSIGN_OR_RETURN(w.px, pool.AllocateArray<float>(size_t(n * total)));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer z, pool.AllocateArray<float>(size_t(p.batch * n)));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer wv, pool.AllocateArray<float>(size_t(total)));
  float* phi = w.px.as<float>();
  float* pw = wv.as<float>();
  KVC_RETURN_IF_ERROR(
      RowExpShift(w.sc.as<float>(), phi, nullptr, w.row_max.as<float>(), r.layout, n, st));
  KVC_RETURN_IF_ERROR(
      RowMass(w.row_lse.as<float>(), w.row_max.as<float>(), p.batch * n, z.as<float>(), st));
  if (o.beta_init == BetaInit::kLeastSquares) {
    KVC_RETURN_IF_ERROR(RidgeLeastSquares(ctx.cublas(), ctx.cusolver(), phi, r.layout, n,
                                          z.as<float>(), 1, o.beta_lstsq, pw, pool, st)
                            .WithContext("AmFit: beta start"));
    KVC_RETURN_IF_ERROR(ClampValues(pw, total, nnls.lower, nnls.upper, st));
  } else {
    KVC_RETURN_IF_ERROR(
        NnlsUniformInit(phi, r.layout, n, z.as<float>(), nnls.lower, nnls.upper, pw, pool, st));
  }
  KVC_RETURN_IF_ERROR(NnlsProjectedGradient(phi, r.layout, n, z.as<float>(), nnls, pw, pool, st));
  return LogValues(pw, total, r.beta.as<float>(), st);
}

// y_b -= X_b V_S_b for every head (X: the ragged n x t_b blocks of px; V_S: r.values).
Status SubtractKeptOutputs(const float* px, const AmFitResult& r, int64_t n, int64_t d,
                           GpuContext& ctx, float* y) {
  for (int64_t b = 0; b < r.layout.batch(); ++b) {
    const int64_t t = r.layout.cols(b), off = r.layout.offset(b);
    if (t == 0) continue;
    GemmShape s;
    s.m = n;
    s.n = d;
    s.k = t;
    s.lda = t;
    s.ldb = d;
    s.ldc = d;
    KVC_RETURN_IF_ERROR(Gemm(ctx.cublas(), s, -1.f, px + n * off, r.values.as<float>() + off * d,
                             1.f, y + b * n * d, MathMode::kF32));
  }
  return Status::OK();
}

Status ValuesPhase(const AmFitProblem& p, const AmFitOptions& o, GpuContext& ctx, Work& w,
                   AmFitResult& r) {
  const int64_t n = p.n, total = r.layout.total();
  if (!o.fit_values || total == 0) return Status::OK();
  DeviceMemoryPool& pool = ctx.pool();
  cudaStream_t st = ctx.stream();
  if (w.px.empty()) {
    KVC_ASSIGN_OR_RETURN(w.px, pool.AllocateArray<float>(size_t(n * total)));
  }
  KVC_ASSIGN_OR_RETURN(DeviceBuffer lse_c, pool.AllocateArray<float>(size_t(p.batch * n)));
  KVC_RETURN_IF_ERROR(RowSoftmax(w.sc.as<float>(), w.px.as<float>(), r.beta.as<float>(), r.layout,
                                 n, lse_c.as<float>(), st));
  if (!o.values_toward_kept) {
    return RidgeLeastSquares(ctx.cublas(), ctx.cusolver(), w.px.as<float>(), r.layout, n,
                             w.y.as<float>(), p.head_dim, o.values_lstsq, r.values.as<float>(),
                             pool, st, &r.values_report)
        .WithContext("AmFit: values");
  }
  // r.values holds V_S (SelectPhase gathered it): solve for the change D from V_S.
  KVC_RETURN_IF_ERROR(
      SubtractKeptOutputs(w.px.as<float>(), r, n, p.head_dim, ctx, w.y.as<float>()));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer delta, pool.AllocateArray<float>(size_t(total * p.head_dim)));
  KVC_RETURN_IF_ERROR(RidgeLeastSquares(ctx.cublas(), ctx.cusolver(), w.px.as<float>(), r.layout, n,
                                        w.y.as<float>(), p.head_dim, o.values_lstsq,
                                        delta.as<float>(), pool, st, &r.values_report)
                          .WithContext("AmFit: values"));
  const float one = 1.f;
  return FromCublas(cublasSaxpy_64(ctx.cublas(), total * p.head_dim, &one, delta.as<float>(), 1,
                                   r.values.as<float>(), 1),
                    "AmFit: values += D");
}

}  // namespace

Result<AmFitResult> AmFit(const AmFitProblem& p, const AmFitOptions& o, GpuContext& ctx) {
  KVC_RETURN_IF_ERROR(Validate(p));
  KVC_RETURN_IF_ERROR(ValidateSelection(p, o));
  std::vector<Event> ev;
  if (o.collect_timings) {
    for (int i = 0; i < 4; ++i) {
      KVC_ASSIGN_OR_RETURN(Event e, Event::Create());
      ev.push_back(std::move(e));
    }
  }
  auto mark = [&](int i) { return ev.empty() ? Status::OK() : ev[i].Record(ctx.stream()); };
  Work w;
  AmFitResult r;
  KVC_RETURN_IF_ERROR(mark(0));
  KVC_RETURN_IF_ERROR(SelectPhase(p, o, ctx, w, r));
  KVC_RETURN_IF_ERROR(mark(1));
  KVC_RETURN_IF_ERROR(KeptScores(p, o, ctx, w, r));
  KVC_RETURN_IF_ERROR(BetaPhase(p, o, ctx, w, r));
  KVC_RETURN_IF_ERROR(mark(2));
  KVC_RETURN_IF_ERROR(ValuesPhase(p, o, ctx, w, r));
  KVC_RETURN_IF_ERROR(mark(3));
  if (!ev.empty()) {
    KVC_RETURN_IF_ERROR(ev[3].Synchronize());
    KVC_ASSIGN_OR_RETURN(r.timings.select_ms, Event::ElapsedMs(ev[0], ev[1]));
    KVC_ASSIGN_OR_RETURN(r.timings.beta_ms, Event::ElapsedMs(ev[1], ev[2]));
    KVC_ASSIGN_OR_RETURN(r.timings.values_ms, Event::ElapsedMs(ev[2], ev[3]));
    KVC_ASSIGN_OR_RETURN(r.timings.total_ms, Event::ElapsedMs(ev[0], ev[3]));
  }
  return r;
}

Result<AmFitHostResult> AmFitOnHost(const AmFitHostProblem& hp, const AmFitOptions& options,
                                    GpuContext& ctx) {
  const int64_t B = hp.batch, n = hp.n, T = hp.tokens, d = hp.head_dim;
  if (B < 1 || n < 1 || T < 1 || d < 1 || hp.q.size() != size_t(B * n * d) ||
      hp.k.size() != size_t(B * T * d) || hp.v.size() != hp.k.size() ||
      (!hp.selector.empty() && hp.selector.size() != size_t(B * T))) {
    return Status::InvalidArgument("AmFitOnHost: array sizes do not match the shape");
  }
  DeviceMemoryPool& pool = ctx.pool();
  cudaStream_t st = ctx.stream();
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dq, Upload(hp.q, pool, st));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dk, Upload(hp.k, pool, st));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dv, Upload(hp.v, pool, st));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dsel, Upload(hp.selector, pool, st));
  AmFitProblem p{dq.as<float>(), dk.as<float>(),  dv.as<float>(), B, n, T, d,
                 hp.budgets,     dsel.as<float>()};
  KVC_ASSIGN_OR_RETURN(AmFitResult r, AmFit(p, options, ctx));
  return DownloadAmFit(r, B, T, d, st);
}

Result<AmFitHostResult> DownloadAmFit(const AmFitResult& r, int64_t batch, int64_t tokens,
                                      int64_t head_dim, cudaStream_t stream) {
  AmFitHostResult h;
  const size_t total = size_t(r.layout.total()), d = size_t(head_dim);
  h.offsets = r.layout.offsets();
  KVC_ASSIGN_OR_RETURN(h.indices, Download(r.indices.as<int32_t>(), total, stream));
  KVC_ASSIGN_OR_RETURN(h.keys, Download(r.keys.as<float>(), total * d, stream));
  KVC_ASSIGN_OR_RETURN(h.values, Download(r.values.as<float>(), total * d, stream));
  KVC_ASSIGN_OR_RETURN(h.beta, Download(r.beta.as<float>(), total, stream));
  KVC_ASSIGN_OR_RETURN(h.scores, Download(r.scores.as<float>(), size_t(batch * tokens), stream));
  return h;
}

const char* GpuOpName(GpuOp op) {
  switch (op) {
    case GpuOp::kScores:
      return "scores";
    case GpuOp::kRowStats:
      return "row_stats";
    case GpuOp::kSoftmaxColumnScores:
      return "softmax_column_scores";
    case GpuOp::kTopK:
      return "topk";
    case GpuOp::kGather:
      return "gather";
    case GpuOp::kNnls:
      return "nnls";
    case GpuOp::kLstsq:
      return "lstsq";
    case GpuOp::kAmHighestAttention:
      return "am_highest_attention";
    case GpuOp::kAmOmp:
      return "am_omp";
    case GpuOp::kAmOmpFast:
      return "am_omp_fast";
    case GpuOp::kOkDmd:
      return "okdmd";
    case GpuOp::kWindowAttention:
      return "window_attention";
    case GpuOp::kSnapKvPool:
      return "snapkv_pool";
    case GpuOp::kH2oAccumulate:
      return "h2o_accumulate";
    case GpuOp::kD2oLayerStats:
      return "d2o_layer_stats";
    case GpuOp::kDynamicKvBudgets:
      return "dynamickv_budgets";
    case GpuOp::kSelectTopK:
      return "select_topk";
    case GpuOp::kD2oMerge:
      return "d2o_merge";
  }
  return "unknown";
}

bool GpuSupports(GpuOp) { return true; }  // every op of the table, OMP included (am_omp.h)

}  // namespace kvc::cuda
