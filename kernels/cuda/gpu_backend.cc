#include "kernels/cuda/gpu_backend.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <new>
#include <numeric>
#include <string>
#include <thread>
#include <utility>

#include "kernels/cuda/am_fit.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/methods.h"
#include "kernels/cuda/okdmd.h"
#include "kernels/cuda/softmax.cuh"

namespace kvc::cuda {
namespace {

using cpu::HeadResult;
using cpu::PreparedCache;
using cpu::ScoreSet;

std::string Where(int l) { return "layer " + std::to_string(l); }

bool IsOmp(AmSelection s) { return s == AmSelection::kOmp || s == AmSelection::kOmpFast; }

MathMode ScoreMath(const GpuBackendOptions& o) { return o.tf32 ? MathMode::kTf32 : MathMode::kF32; }

// Runs fn(first, count) over [0, n) in batches of at most `max_batch` (0: all of n at once). A
// batch that fails with ResourceExhausted is halved and retried until it is one item.
Status ForBatches(int64_t n, int64_t max_batch,
                  const std::function<Status(int64_t first, int64_t count)>& fn) {
  int64_t batch = max_batch > 0 ? std::min(max_batch, n) : n;
  for (int64_t first = 0; first < n;) {
    const int64_t count = std::min(batch, n - first);
    Status st = fn(first, count);
    if (st.code() == Code::kResourceExhausted && count > 1) {
      batch = (count + 1) / 2;
      continue;
    }
    KVC_RETURN_IF_ERROR(st);
    first += count;
  }
  return Status::OK();
}

// Fit queries of layer l, checked: [n_q, N, d] with N >= 1.
Result<const Tensor*> FitQueries(const PreparedCache& c, int l, const char* what) {
  const auto& q = c.layers[static_cast<size_t>(l)].q_fit;
  if (!q || q->dim(1) < 1) {
    return Status::InvalidArgument(std::string(what) + " needs fit queries (q_ref) in layer " +
                                   std::to_string(l));
  }
  return &*q;
}

// One layer's highest-attention scores [H, T] into `out` (device memory of ctx).
Status HighestAttentionLayer(const PreparedCache& c, int l, GpuContext& ctx, float* out,
                             const GpuBackendOptions& o) {
  KVC_ASSIGN_OR_RETURN(const Tensor* qf, FitQueries(c, l, "highest-attention scores"));
  const int64_t H = c.layout.n_kv_heads, T = c.T(), d = c.d();
  const int64_t n = int64_t{c.layout.group()} * qf->dim(1);
  DeviceMemoryPool& pool = ctx.pool();
  cudaStream_t st = ctx.stream();
  KVC_ASSIGN_OR_RETURN(DeviceBuffer q, Upload(qf->data<float>(), size_t(H * n * d), pool, st));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer k, Upload(c.K(l, 0), size_t(H * T * d), pool, st));
  const float scale = 1.f / std::sqrt(float(d));
  return ForBatches(H, o.max_batch_heads, [&](int64_t h0, int64_t b) -> Status {
    KVC_ASSIGN_OR_RETURN(RaggedLayout full, RaggedLayout::Uniform(b, T, pool, st));
    KVC_ASSIGN_OR_RETURN(DeviceBuffer s, pool.AllocateArray<float>(size_t(b * n * T)));
    KVC_ASSIGN_OR_RETURN(DeviceBuffer mx, pool.AllocateArray<float>(size_t(b * n)));
    KVC_ASSIGN_OR_RETURN(DeviceBuffer lse, pool.AllocateArray<float>(size_t(b * n)));
    KVC_RETURN_IF_ERROR(AttentionScores(ctx.cublas(), q.as<float>() + h0 * n * d,
                                        k.as<float>() + h0 * T * d, s.as<float>(), b, n, T, d,
                                        scale, ScoreMath(o)));
    KVC_RETURN_IF_ERROR(
        RowStats(s.as<float>(), nullptr, full, n, mx.as<float>(), lse.as<float>(), st));
    return SoftmaxColumnScores(s.as<float>(), full, n, lse.as<float>(), out + h0 * T, pool, st);
  });
}

// Host rows of the listed heads, packed: head heads[i] occupies [i * per_head, ...).
std::vector<float> PackHeads(const float* base, size_t per_head, const std::vector<int>& heads) {
  std::vector<float> out(per_head * heads.size());
  for (size_t i = 0; i < heads.size(); ++i) {
    std::copy_n(base + size_t(heads[i]) * per_head, per_head, out.data() + i * per_head);
  }
  return out;
}

// Device copies of one layer's inputs for the heads that keep at least one key.
struct LayerUpload {
  std::vector<int> heads;        // kv heads with a positive budget, ascending
  std::vector<int64_t> budgets;  // min(budget, T) per entry of heads
  int64_t n = 0;                 // pooled fit queries per kv head
  DeviceBuffer q, k, v, selector;
};

// 1 at the kept positions of each listed head, else 0: [heads, T]. InvalidArgument when a
// head's selection is not min(budget, T) positions in [0, T).
Result<std::vector<float>> SelectorOf(const cpu::Selection& sel, int l, const LayerUpload& u,
                                      int64_t T) {
  std::vector<float> mask(u.heads.size() * size_t(T), 0.f);
  for (size_t i = 0; i < u.heads.size(); ++i) {
    const std::vector<int64_t>& s = sel[size_t(l)][size_t(u.heads[i])];
    if (int64_t(s.size()) != u.budgets[i]) {
      return Status::InvalidArgument("AM fit: selection of layer " + std::to_string(l) + " head " +
                                     std::to_string(u.heads[i]) + " does not match its budget");
    }
    for (int64_t p : s) {
      if (p < 0 || p >= T)
        return Status::InvalidArgument("AM fit: selected position outside [0, T)");
      mask[i * size_t(T) + size_t(p)] = 1.f;
    }
  }
  return mask;
}

Result<LayerUpload> UploadLayer(const PreparedCache& c, int l, const cpu::Selection& sel,
                                const cpu::Budgets& budgets, GpuContext& ctx) {
  KVC_ASSIGN_OR_RETURN(const Tensor* qf, FitQueries(c, l, "attention matching"));
  const int H = c.layout.n_kv_heads;
  const int64_t T = c.T(), d = c.d();
  LayerUpload u;
  u.n = int64_t{c.layout.group()} * qf->dim(1);
  for (int h = 0; h < H; ++h) {
    const int64_t t = std::clamp<int64_t>(budgets[size_t(l)][size_t(h)], 0, T);
    if (t > 0) {
      u.heads.push_back(h);
      u.budgets.push_back(t);
    }
  }
  if (u.heads.empty()) return u;
  DeviceMemoryPool& pool = ctx.pool();
  cudaStream_t st = ctx.stream();
  const size_t q_per = size_t(u.n * d), kv_per = size_t(T * d), A = u.heads.size();
  if (int(A) == H) {  // every head: the layer's tensors as they are
    KVC_ASSIGN_OR_RETURN(u.q, Upload(qf->data<float>(), A * q_per, pool, st));
    KVC_ASSIGN_OR_RETURN(u.k, Upload(c.K(l, 0), A * kv_per, pool, st));
    KVC_ASSIGN_OR_RETURN(u.v, Upload(c.V(l, 0), A * kv_per, pool, st));
  } else {
    KVC_ASSIGN_OR_RETURN(u.q, Upload(PackHeads(qf->data<float>(), q_per, u.heads), pool, st));
    KVC_ASSIGN_OR_RETURN(u.k, Upload(PackHeads(c.K(l, 0), kv_per, u.heads), pool, st));
    KVC_ASSIGN_OR_RETURN(u.v, Upload(PackHeads(c.V(l, 0), kv_per, u.heads), pool, st));
  }
  if (!sel.empty()) {
    KVC_ASSIGN_OR_RETURN(std::vector<float> mask, SelectorOf(sel, l, u, T));
    KVC_ASSIGN_OR_RETURN(u.selector, Upload(mask, pool, st));
  }
  return u;
}

// Downloads one AmFit batch into the head results of `heads[first .. first + count)`.
Status DownloadFit(const AmFitResult& r, const LayerUpload& u, int64_t first, int64_t d,
                   GpuContext& ctx, std::vector<HeadResult>& out) {
  const size_t total = size_t(r.layout.total());
  cudaStream_t st = ctx.stream();
  KVC_ASSIGN_OR_RETURN(std::vector<int32_t> idx, Download(r.indices.as<int32_t>(), total, st));
  KVC_ASSIGN_OR_RETURN(std::vector<float> keys, Download(r.keys.as<float>(), total * d, st));
  KVC_ASSIGN_OR_RETURN(std::vector<float> vals, Download(r.values.as<float>(), total * d, st));
  KVC_ASSIGN_OR_RETURN(std::vector<float> beta, Download(r.beta.as<float>(), total, st));
  for (int64_t b = 0; b < r.layout.batch(); ++b) {
    const size_t off = size_t(r.layout.offset(b)), t = size_t(r.layout.cols(b));
    HeadResult& h = out[size_t(u.heads[size_t(first + b)])];
    h.positions.assign(idx.begin() + off, idx.begin() + off + t);
    h.k.assign(keys.begin() + off * d, keys.begin() + (off + t) * d);
    h.v.assign(vals.begin() + off * d, vals.begin() + (off + t) * d);
    h.beta.assign(beta.begin() + off, beta.begin() + off + t);
  }
  return Status::OK();
}

// The CPU front's AM options in AmFit's terms: the same ridge, pulling towards the kept values
// as the CPU does; OMP / OMP-fast (sel empty) with the spec's schedule and design §4's bounds.
AmFitOptions FitOptions(const AmOptions& o, bool self_select, const GpuBackendOptions& g) {
  AmFitOptions f;
  f.score_math = ScoreMath(g);
  f.fit_beta = o.fit_beta;
  f.fit_values = o.fit_values;
  f.nnls.pg_steps = o.nnls_pg_steps;  // bounds: the default [e^-3, e^3] of highest attention
  f.values_lstsq.ridge = o.ridge;
  f.values_toward_kept = true;
  if (self_select && IsOmp(o.selection)) {
    f.selection =
        o.selection == AmSelection::kOmp ? AmFitSelection::kOmp : AmFitSelection::kOmpFast;
    f.omp.schedule.clear();
    for (const OmpStage& st : o.omp_fast_schedule) {
      f.omp.schedule.push_back({st.up_to, st.keys_per_step, st.refit_every});
    }
  }
  return f;
}

// AM fit of layer l on ctx into out[h] for every head.
Status FitLayer(const PreparedCache& c, int l, const cpu::Selection& sel,
                const cpu::Budgets& budgets, const AmOptions& o, const GpuBackendOptions& g,
                GpuContext& ctx, std::vector<HeadResult>& out) {
  KVC_ASSIGN_OR_RETURN(LayerUpload u, UploadLayer(c, l, sel, budgets, ctx));
  const int64_t T = c.T(), d = c.d();
  const AmFitOptions fo = FitOptions(o, sel.empty(), g);
  return ForBatches(
      int64_t(u.heads.size()), g.max_batch_heads, [&](int64_t first, int64_t count) -> Status {
        AmFitProblem p;
        p.q = u.q.as<float>() + first * u.n * d;
        p.k = u.k.as<float>() + first * T * d;
        p.v = u.v.as<float>() + first * T * d;
        p.batch = count;
        p.n = u.n;
        p.tokens = T;
        p.head_dim = d;
        p.budgets.assign(u.budgets.begin() + first, u.budgets.begin() + first + count);
        if (!u.selector.empty()) p.selector = u.selector.as<float>() + first * T;
        KVC_ASSIGN_OR_RETURN(AmFitResult r, AmFit(p, fo, ctx));
        return DownloadFit(r, u, first, d, ctx, out);
      });
}

Status CheckShapes(const PreparedCache& c, const cpu::Selection& sel, const cpu::Budgets& b) {
  const size_t L = size_t(c.layout.n_layers), H = size_t(c.layout.n_kv_heads);
  bool ok = b.size() == L && (sel.empty() || sel.size() == L);
  for (size_t l = 0; ok && l < L; ++l) {
    ok = b[l].size() == H && (sel.empty() || sel[l].size() == H);
  }
  if (!ok) return Status::InvalidArgument("AM fit: budgets / selection must be [L][H]");
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<GpuBackend>> GpuBackend::Create(const GpuBackendOptions& options) {
  const int count = DeviceCount();
  if (count == 0) return Status::Unavailable("no CUDA device: " + NoDeviceReason());
  if (options.max_batch_heads < 0) {
    return Status::InvalidArgument("GpuBackendOptions::max_batch_heads must be >= 0");
  }
  std::vector<int> devices = options.devices;
  if (devices.empty()) {
    // Without NCCL a backend can drive one device only: take the first rather than fail.
    devices.resize(NcclBuilt() ? size_t(count) : 1);
    std::iota(devices.begin(), devices.end(), 0);
  }
  std::unique_ptr<GpuBackend> b(new GpuBackend());
  b->options_ = options;
  KVC_ASSIGN_OR_RETURN(b->comms_, NcclComms::Create(devices));  // checks the indices
  b->devices_ = std::move(devices);
  for (int dev : b->devices_) {
    KVC_ASSIGN_OR_RETURN(std::unique_ptr<GpuContext> ctx, GpuContext::Create(dev));
    b->contexts_.push_back(std::move(ctx));
  }
  return b;
}

GpuBackend::~GpuBackend() {
  comms_.reset();
  for (size_t r = 0; r < contexts_.size(); ++r) {
    (void)cudaSetDevice(devices_[r]);  // free on the owning device
    contexts_[r].reset();
  }
}

Status GpuBackend::ForEachDevice(const std::function<Status(int rank, GpuContext& ctx)>& fn) {
  const int D = static_cast<int>(contexts_.size());
  std::vector<Status> status(static_cast<size_t>(D));
  auto run = [&](int r) {
    try {
      Status st = FromCuda(cudaSetDevice(devices_[size_t(r)]), "cudaSetDevice");
      if (st.ok()) st = fn(r, *contexts_[size_t(r)]);
      status[size_t(r)] = std::move(st);
    } catch (const std::bad_alloc&) {
      status[size_t(r)] = Status::ResourceExhausted("out of host memory on device thread");
    } catch (const std::exception& e) {
      status[size_t(r)] = Status::Internal(std::string("device thread threw: ") + e.what());
    }
  };
  std::vector<std::thread> threads;
  for (int r = 1; r < D; ++r) threads.emplace_back(run, r);
  run(0);
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < D; ++r) {
    if (!status[size_t(r)].ok()) {
      return status[size_t(r)].WithContext("GPU " + std::to_string(devices_[size_t(r)]));
    }
  }
  return Status::OK();
}

Result<ScoreSet> GpuBackend::ShardedScores(const PreparedCache& c, const LayerScorer& scorer,
                                           std::vector<int64_t> forced) {
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads, D = comms_->size();
  const int64_t T = c.T();
  const int64_t per = (L + D - 1) / D;  // layers per rank, padded
  const size_t slot = size_t(H) * size_t(T), count = size_t(per) * slot;
  std::vector<DeviceBuffer> send(static_cast<size_t>(D)), recv(static_cast<size_t>(D));
  KVC_RETURN_IF_ERROR(ForEachDevice([&](int r, GpuContext& ctx) -> Status {
    KVC_ASSIGN_OR_RETURN(send[size_t(r)], ctx.pool().AllocateArray<float>(count));
    KVC_ASSIGN_OR_RETURN(recv[size_t(r)], ctx.pool().AllocateArray<float>(count * size_t(D)));
    KVC_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(send[size_t(r)].get(), 0, count * sizeof(float), ctx.stream()),
        "clearing the score shard");
    float* base = send[size_t(r)].as<float>();
    for (int l = r, i = 0; l < L; l += D, ++i) {
      KVC_RETURN_IF_ERROR(scorer(c, l, ctx, base + size_t(i) * slot).WithContext(Where(l)));
    }
    return Status::OK();
  }));
  KVC_RETURN_IF_ERROR(GatherAndSync(send, recv, count).WithContext("score all-gather"));
  KVC_CUDA_RETURN_IF_ERROR(cudaSetDevice(devices_[0]), "cudaSetDevice");
  KVC_ASSIGN_OR_RETURN(std::vector<float> all,
                       Download(recv[0].as<float>(), count * size_t(D), contexts_[0]->stream()));
  ScoreSet s = ScoreSet::Zeros(L, H, T);
  for (int l = 0; l < L; ++l) {  // rank r's i-th layer is r + i * D
    const size_t src = (size_t(l % D) * size_t(per) + size_t(l / D)) * slot;
    std::copy_n(all.data() + src, slot, s.at(l, 0));
  }
  s.forced = std::move(forced);
  return s;
}

Status GpuBackend::GatherAndSync(const std::vector<DeviceBuffer>& send,
                                 const std::vector<DeviceBuffer>& recv, size_t count) {
  std::vector<const float*> sp;
  std::vector<float*> rp;
  std::vector<cudaStream_t> streams;
  for (size_t r = 0; r < contexts_.size(); ++r) {
    sp.push_back(send[r].as<float>());
    rp.push_back(recv[r].as<float>());
    streams.push_back(contexts_[r]->stream());
  }
  KVC_RETURN_IF_ERROR(comms_->AllGather(sp, rp, count, streams));
  return ForEachDevice([](int, GpuContext& ctx) { return ctx.Synchronize(); });
}

Result<ScoreSet> GpuBackend::ShardedHostScores(const PreparedCache& c, const HostScorer& scorer) {
  const int H = c.layout.n_kv_heads;
  const int64_t T = c.T();
  std::vector<int64_t> forced;
  auto layer = [&](const PreparedCache& cc, int l, GpuContext& ctx, float* out) -> Status {
    PreparedCache one;
    one.layout = cc.layout;
    one.layout.n_layers = 1;
    one.layers = {cc.layers[size_t(l)]};
    KVC_ASSIGN_OR_RETURN(ScoreSet part, scorer(one, ctx));
    if (part.n_layers != 1 || part.n_kv_heads != H || part.T != T ||
        part.scores.size() != size_t(H) * size_t(T)) {
      return Status::Internal("GPU scorer returned scores of the wrong shape");
    }
    if (l == 0) forced = std::move(part.forced);  // only layer 0's rank writes it
    // Pageable host memory: the copy is staged before cudaMemcpyAsync returns.
    return FromCuda(cudaMemcpyAsync(out, part.scores.data(), part.scores.size() * sizeof(float),
                                    cudaMemcpyHostToDevice, ctx.stream()),
                    "uploading layer scores");
  };
  KVC_ASSIGN_OR_RETURN(ScoreSet s, ShardedScores(c, layer, {}));
  s.forced = std::move(forced);
  return s;
}

Result<ScoreSet> GpuBackend::ComputeScores(const PreparedCache& c, const CompactionSpec& spec,
                                           int64_t head_budget) {
  const Method scorer = spec.method == Method::kAttentionMatching ? spec.am.selector : spec.method;
  // Scorers whose layers are independent shard across the devices (one-layer sub-caches give
  // the same scores: kernels/backend_test.cc checks this on the CPU functions); OK-DMD's seeds
  // depend on the layer index, so it scores the whole cache on the first device.
  auto sharded = [&](auto&& fn) {
    std::lock_guard<std::mutex> lock(mu_);
    return ShardedHostScores(
        c, [&](const PreparedCache& one, GpuContext& ctx) { return fn(one, ctx); });
  };
  switch (scorer) {
    case Method::kSnapKv:
    case Method::kPyramidKv:  // PyramidKV ranks by SnapKV's scores
      return sharded([&](const PreparedCache& one, GpuContext& ctx) {
        return ScoreSnapKvGpu(one, spec.snapkv, ctx);
      });
    case Method::kDynamicKv:
      return sharded([&](const PreparedCache& one, GpuContext& ctx) {
        return ScoreDynamicKvGpu(one, spec.dynamickv, ctx);
      });
    case Method::kH2o:
      return sharded([&](const PreparedCache& one, GpuContext& ctx) {
        return ScoreH2oGpu(one, spec.h2o, head_budget, ctx);
      });
    case Method::kD2o:
      return sharded([&](const PreparedCache& one, GpuContext& ctx) {
        return ScoreD2oGpu(one, spec.d2o, head_budget, ctx);
      });
    case Method::kOkDmd: {
      std::lock_guard<std::mutex> lock(mu_);
      KVC_CUDA_RETURN_IF_ERROR(cudaSetDevice(devices_[0]), "cudaSetDevice");
      return ScoreOkDmdGpu(c, spec.okdmd, spec.seed, *contexts_[0]);
    }
    default:  // StreamingLLM needs no attention; AM's own selections are handled above
      return Status::NotSupported(std::string("no GPU scorer for method ") + MethodName(scorer));
  }
}

Result<ScoreSet> GpuBackend::ScoreHighestAttention(const PreparedCache& c) {
  for (int l = 0; l < c.layout.n_layers; ++l) {
    KVC_RETURN_IF_ERROR(FitQueries(c, l, "highest-attention scores").status());
  }
  std::lock_guard<std::mutex> lock(mu_);
  const GpuBackendOptions& o = options_;
  return ShardedScores(c,
                       [&o](const PreparedCache& cc, int l, GpuContext& ctx, float* out) {
                         return HighestAttentionLayer(cc, l, ctx, out, o);
                       },
                       {});
}

Result<cpu::LayerResults> GpuBackend::AttentionMatchingFit(const PreparedCache& c,
                                                           const cpu::Selection& sel,
                                                           const cpu::Budgets& budgets,
                                                           const AmOptions& o) {
  if (o.refine_rounds > 0) return Status::NotSupported("AM refinement is not on the GPU yet");
  KVC_RETURN_IF_ERROR(CheckShapes(c, sel, budgets));
  for (int l = 0; l < c.layout.n_layers; ++l) {
    KVC_RETURN_IF_ERROR(FitQueries(c, l, "attention matching").status());
  }
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads;
  cpu::LayerResults out(static_cast<size_t>(L), std::vector<HeadResult>(static_cast<size_t>(H)));
  std::lock_guard<std::mutex> lock(mu_);
  const int D = static_cast<int>(contexts_.size());
  KVC_RETURN_IF_ERROR(ForEachDevice([&](int r, GpuContext& ctx) -> Status {
    for (int l = r; l < L; l += D) {
      KVC_RETURN_IF_ERROR(FitLayer(c, l, sel, budgets, o, options_, ctx, out[size_t(l)])
                              .WithContext("AM fit, " + Where(l)));
    }
    return Status::OK();
  }));
  return out;
}

Result<cpu::LayerResults> GpuBackend::D2oMerge(const PreparedCache& c, const cpu::Selection& sel,
                                               const D2oOptions& o) {
  // The merge thresholds run on from layer to layer: one device, in layer order.
  std::lock_guard<std::mutex> lock(mu_);
  KVC_CUDA_RETURN_IF_ERROR(cudaSetDevice(devices_[0]), "cudaSetDevice");
  return D2oMergeGpu(c, sel, o, *contexts_[0]);
}

Result<cpu::Budgets> GpuBackend::AllocateBudgets(const PreparedCache& c, const ScoreSet& scores,
                                                 const CompactionSpec& spec, int64_t head_budget) {
  const Allocator a = ResolvedAllocator(spec);
  if (a != Allocator::kDynamicKv && a != Allocator::kD2o) {
    return Status::NotSupported(std::string("allocator ") + AllocatorName(a) +
                                " has no statistics to compute on the GPU");
  }
  std::lock_guard<std::mutex> lock(mu_);
  KVC_CUDA_RETURN_IF_ERROR(cudaSetDevice(devices_[0]), "cudaSetDevice");
  return AllocateBudgetsGpu(c, scores, spec, head_budget, *contexts_[0]);
}

Result<std::vector<float>> GpuBackend::AllGatherForTest(
    const std::vector<std::vector<float>>& per_rank, int read_rank) {
  const int D = comms_->size();
  if (int(per_rank.size()) != D || read_rank < 0 || read_rank >= D) {
    return Status::InvalidArgument("AllGatherForTest: one vector per rank and a valid rank");
  }
  const size_t count = per_rank[0].size();
  for (const auto& v : per_rank) {
    if (v.size() != count) return Status::InvalidArgument("AllGatherForTest: lengths differ");
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<DeviceBuffer> send(static_cast<size_t>(D)), recv(static_cast<size_t>(D));
  KVC_RETURN_IF_ERROR(ForEachDevice([&](int r, GpuContext& ctx) -> Status {
    KVC_ASSIGN_OR_RETURN(send[size_t(r)], Upload(per_rank[size_t(r)], ctx.pool(), ctx.stream()));
    KVC_ASSIGN_OR_RETURN(recv[size_t(r)], ctx.pool().AllocateArray<float>(count * size_t(D)));
    return ctx.Synchronize();
  }));
  KVC_RETURN_IF_ERROR(GatherAndSync(send, recv, count));
  KVC_CUDA_RETURN_IF_ERROR(cudaSetDevice(devices_[size_t(read_rank)]), "cudaSetDevice");
  return Download(recv[size_t(read_rank)].as<float>(), count * size_t(D),
                  contexts_[size_t(read_rank)]->stream());
}

}  // namespace kvc::cuda
