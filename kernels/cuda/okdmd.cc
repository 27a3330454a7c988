// OK-DMD on the GPU (okdmd.h): validation, the prefill fit (trajectory moments by chunked DGEMM,
// G^-1 by batched Cholesky with an LU fallback, A = Y X^T P), the power iteration, the streaming
// update and the scores; ScoreOkDmdGpu over a PreparedCache.
#include "kernels/cuda/okdmd.h"

#include <algorithm>
#include <climits>
#include <string>
#include <utility>

#include "kernels/cpu/attention_scores.h"
#include "kernels/cpu/okdmd.h"
#include "kernels/cuda/cholesky.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/okdmd.cuh"

namespace kvc::cuda {
namespace {

int64_t CeilDivHost(int64_t a, int64_t b) { return (a + b - 1) / b; }

// f64 trajectory pairs of one group of heads stay under this many bytes.
constexpr int64_t kFitGroupBytes = int64_t(1) << 30;
// Chunked moments: aim for this many d x d DGEMM problems per group, each of at least
// kMinChunkRows pairs, so that a few heads with long T still fill the device.
constexpr int64_t kTargetProblems = 256;
constexpr int64_t kMinChunkRows = 256;
// f32 projections [heads, count, k] of one scoring group stay under this many bytes.
constexpr int64_t kProjGroupBytes = int64_t(512) << 20;
// Layers uploaded per ScoreOkDmdGpu call stay under this many bytes of keys.
constexpr int64_t kLayerGroupBytes = int64_t(2) << 30;

Status ValidateProblem(const OkDmdDeviceProblem& p) {
  if (p.batch < 1 || p.batch > (int64_t(1) << 24) || p.tokens < 0 || p.tokens > INT32_MAX ||
      p.head_dim < 1 || p.head_dim > kOkDmdMaxHeadDim) {
    return Status::InvalidArgument(
        "OkDmd: sizes out of range (batch " + std::to_string(p.batch) + ", T " +
        std::to_string(p.tokens) + ", d " + std::to_string(p.head_dim) + "; need batch in [1, " +
        "2^24], T in [0, 2^31), d in [1, " + std::to_string(kOkDmdMaxHeadDim) + "])");
  }
  if (p.seeds.size() != size_t(p.batch)) {
    return Status::InvalidArgument("OkDmd: need one seed per batch entry");
  }
  if (p.tokens > 0 && p.keys == nullptr) return Status::InvalidArgument("OkDmd: null keys");
  return Status::OK();
}

// The CPU's starting bases (qr of the seeded Gaussian), [batch, d, k]; Create's errors for bad
// options.
Result<std::vector<double>> InitialBases(int d, const std::vector<uint64_t>& seeds,
                                         const OkDmdOptions& o, int* modes) {
  std::vector<double> q;
  for (uint64_t seed : seeds) {
    KVC_ASSIGN_OR_RETURN(cpu::OkDmdStream s, cpu::OkDmdStream::Create(d, o, seed));
    *modes = s.modes();
    q.insert(q.end(), s.Q().begin(), s.Q().end());
  }
  return q;
}

Result<OkDmdDeviceState> AllocateState(int64_t batch, int d, int k, const OkDmdOptions& o,
                                       DeviceMemoryPool& pool) {
  OkDmdDeviceState s;
  s.batch = batch;
  s.head_dim = d;
  s.modes = k;
  s.options = o;
  const size_t dd = size_t(batch) * d * d, dk = size_t(batch) * d * k;
  KVC_ASSIGN_OR_RETURN(s.a, pool.AllocateArray<double>(dd));
  KVC_ASSIGN_OR_RETURN(s.p, pool.AllocateArray<double>(dd));
  KVC_ASSIGN_OR_RETURN(s.q, pool.AllocateArray<double>(dk));
  KVC_ASSIGN_OR_RETURN(s.work, pool.AllocateArray<double>(dk));
  KVC_ASSIGN_OR_RETURN(s.prev, pool.AllocateArray<double>(size_t(batch) * d));
  return s;
}

OkDmdStateView View(const OkDmdDeviceState& s) {
  return OkDmdStateView{
      s.a.as<double>(),    s.p.as<double>(), s.q.as<double>(), s.prev.as<double>(),
      s.work.as<double>(), s.batch,          s.head_dim,       s.modes};
}

// How the T - 1 trajectory pairs of a group of `heads` heads are cut into equal chunks.
struct ChunkPlan {
  int64_t chunks = 1;  // per head
  int64_t rows = 1;    // pairs per chunk
  int64_t padded = 1;  // chunks * rows >= T - 1
};

ChunkPlan PlanChunks(int64_t pairs, int64_t heads) {
  ChunkPlan c;
  const int64_t most = std::max<int64_t>(1, CeilDivHost(pairs, kMinChunkRows));
  c.chunks = std::clamp<int64_t>(CeilDivHost(kTargetProblems, heads), 1, most);
  c.rows = CeilDivHost(pairs, c.chunks);
  c.chunks = CeilDivHost(pairs, c.rows);
  c.padded = c.chunks * c.rows;
  return c;
}

// Cholesky with the batched cuSOLVER call when it applies (as cholesky.h decides), else head by
// head. infos[b] != 0 marks a head whose G is not numerically positive definite. Synchronises.
Status CholeskyInfos(double* g, int64_t nb, int d, GpuContext& ctx, std::vector<int>* infos) {
  DeviceMemoryPool& pool = ctx.pool();
  cudaStream_t st = ctx.stream();
  const int64_t dd = int64_t(d) * d;
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dinfo, pool.AllocateArray<int>(size_t(nb)));
  DeviceBuffer scratch;  // pointer array or workspace; released after the download below
  if (nb >= 2 && d <= kBatchedMaxOrder) {
    std::vector<double*> ptrs(static_cast<size_t>(nb));
    for (int64_t b = 0; b < nb; ++b) ptrs[b] = g + b * dd;
    KVC_ASSIGN_OR_RETURN(scratch, Upload(ptrs, pool, st));
    KVC_CUSOLVER_RETURN_IF_ERROR(
        cusolverDnDpotrfBatched(ctx.cusolver(), CUBLAS_FILL_MODE_LOWER, d, scratch.as<double*>(), d,
                                dinfo.as<int>(), int(nb)),
        "cusolverDnDpotrfBatched");
  } else {
    int lwork = 0;
    KVC_CUSOLVER_RETURN_IF_ERROR(
        cusolverDnDpotrf_bufferSize(ctx.cusolver(), CUBLAS_FILL_MODE_LOWER, d, g, d, &lwork),
        "cusolverDnDpotrf_bufferSize");
    KVC_ASSIGN_OR_RETURN(scratch, pool.AllocateArray<double>(size_t(std::max(lwork, 1))));
    for (int64_t b = 0; b < nb; ++b) {
      KVC_CUSOLVER_RETURN_IF_ERROR(
          cusolverDnDpotrf(ctx.cusolver(), CUBLAS_FILL_MODE_LOWER, d, g + b * dd, d,
                           scratch.as<double>(), lwork, dinfo.as<int>() + b),
          "cusolverDnDpotrf");
    }
  }
  KVC_ASSIGN_OR_RETURN(*infos, Download(dinfo.as<int>(), size_t(nb), st));
  return Status::OK();
}

// p[b] <- G_b^-1 for the factored heads `ok` (p[b] holds I on entry): L Y = I, then L^T P = Y.
Status SolveCholesky(const double* l, double* p, const std::vector<int64_t>& ok, int d,
                     GpuContext& ctx) {
  if (ok.empty()) return Status::OK();
  DeviceMemoryPool& pool = ctx.pool();
  cudaStream_t st = ctx.stream();
  const int64_t dd = int64_t(d) * d;
  std::vector<const double*> lp;
  std::vector<double*> pp;
  for (int64_t b : ok) {
    lp.push_back(l + b * dd);
    pp.push_back(p + b * dd);
  }
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dl, Upload(lp, pool, st));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dp, Upload(pp, pool, st));
  const double one = 1.0;
  for (cublasOperation_t op : {CUBLAS_OP_N, CUBLAS_OP_T}) {
    KVC_CUBLAS_RETURN_IF_ERROR(
        cublasDtrsmBatched(ctx.cublas(), CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, op,
                           CUBLAS_DIAG_NON_UNIT, d, d, &one, dl.as<const double*>(), d,
                           dp.as<double*>(), d, int(ok.size())),
        "cublasDtrsmBatched");
  }
  return Status::OK();
}

// The CPU's fallback (dgesv): p[b] <- G_b^-1 by LU on the saved copy of G, head by head (p[b]
// holds I on entry). Internal, with the CPU's message, when G is singular. Synchronises.
Status InvertByLu(double* g, double* p, const std::vector<int64_t>& failed, int d,
                  GpuContext& ctx) {
  if (failed.empty()) return Status::OK();
  DeviceMemoryPool& pool = ctx.pool();
  cudaStream_t st = ctx.stream();
  const int64_t dd = int64_t(d) * d;
  int lwork = 0;
  KVC_CUSOLVER_RETURN_IF_ERROR(cusolverDnDgetrf_bufferSize(ctx.cusolver(), d, d, g, d, &lwork),
                               "cusolverDnDgetrf_bufferSize");
  KVC_ASSIGN_OR_RETURN(DeviceBuffer work, pool.AllocateArray<double>(size_t(std::max(lwork, 1))));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer ipiv, pool.AllocateArray<int>(size_t(d)));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dinfo, pool.AllocateArray<int>(1));
  for (int64_t b : failed) {
    KVC_CUSOLVER_RETURN_IF_ERROR(
        cusolverDnDgetrf(ctx.cusolver(), d, d, g + b * dd, d, work.as<double>(), ipiv.as<int>(),
                         dinfo.as<int>()),
        "cusolverDnDgetrf");
    KVC_ASSIGN_OR_RETURN(std::vector<int> info, Download(dinfo.as<int>(), 1, st));
    if (info[0] != 0) return Status::Internal("okdmd: X X^T + sigma I is singular");
    KVC_CUSOLVER_RETURN_IF_ERROR(cusolverDnDgetrs(ctx.cusolver(), CUBLAS_OP_N, d, d, g + b * dd, d,
                                                  ipiv.as<int>(), p + b * dd, d, dinfo.as<int>()),
                                 "cusolverDnDgetrs");
  }
  return ctx.Synchronize();  // `work` and `ipiv` stay alive until the solves have run
}

// p[b] = G_b^-1 for nb heads; g is overwritten by its Cholesky factor.
Status InvertSpd(double* g, int64_t nb, int d, GpuContext& ctx, double* p) {
  const size_t bytes = size_t(nb) * d * d * sizeof(double);
  KVC_ASSIGN_OR_RETURN(DeviceBuffer copy, ctx.pool().Allocate(bytes));
  KVC_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(copy.get(), g, bytes, cudaMemcpyDeviceToDevice, ctx.stream()),
      "OkDmd: copy G");
  KVC_CUDA_RETURN_IF_ERROR(LaunchOkDmdFillIdentity(p, nb, d, 1.0, ctx.stream()), "OkDmd: identity");
  std::vector<int> infos;
  KVC_RETURN_IF_ERROR(CholeskyInfos(g, nb, d, ctx, &infos));
  std::vector<int64_t> ok, failed;
  for (int64_t b = 0; b < nb; ++b) (infos[b] == 0 ? ok : failed).push_back(b);
  KVC_RETURN_IF_ERROR(SolveCholesky(g, p, ok, d, ctx));
  KVC_RETURN_IF_ERROR(InvertByLu(copy.as<double>(), p, failed, d, ctx));
  // Exactly symmetric, as the CPU's dpotri result (the LU fallback's too, unlike the CPU's).
  KVC_CUDA_RETURN_IF_ERROR(LaunchOkDmdSymmetrize(p, nb, d, ctx.stream()), "OkDmd: symmetrize");
  return ctx.Synchronize();  // `copy` is released on return
}

// G = X X^T + sigma I and Y X^T (row-major, f64) of nb heads with T >= 2 keys each.
Status TrajectoryMoments(const float* keys, int64_t nb, int64_t T, int d, double sigma,
                         GpuContext& ctx, double* g, double* yx) {
  DeviceMemoryPool& pool = ctx.pool();
  cudaStream_t st = ctx.stream();
  const int64_t dd = int64_t(d) * d;
  const ChunkPlan c = PlanChunks(T - 1, nb);
  const size_t pair_elems = size_t(nb) * c.padded * d, part_elems = size_t(nb) * c.chunks * dd;
  KVC_ASSIGN_OR_RETURN(DeviceBuffer x, pool.AllocateArray<double>(pair_elems));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer y, pool.AllocateArray<double>(pair_elems));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer pxx, pool.AllocateArray<double>(part_elems));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer pyx, pool.AllocateArray<double>(part_elems));
  KVC_CUDA_RETURN_IF_ERROR(
      LaunchOkDmdTrajectoryPairs(keys, nb, T, d, c.padded, x.as<double>(), y.as<double>(), st),
      "OkDmd: trajectory pairs");
  // Column-major, chunk j of head b is the d x rows matrix C_bj = [x_i] (ld d):
  // C_bj C_bj^T is its part of X X^T; C_bj D_bj^T (D from y) is, read row-major, Y X^T.
  const double one = 1.0, zero = 0.0;
  const int64_t stride = c.rows * d;
  const int problems = int(nb * c.chunks);
  for (auto [other, part] :
       {std::pair{x.as<double>(), pxx.as<double>()}, std::pair{y.as<double>(), pyx.as<double>()}}) {
    KVC_CUBLAS_RETURN_IF_ERROR(
        cublasDgemmStridedBatched(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, d, d, int(c.rows), &one,
                                  x.as<double>(), d, stride, other, d, stride, &zero, part, d, dd,
                                  problems),
        "OkDmd: cublasDgemmStridedBatched (moments)");
  }
  KVC_CUDA_RETURN_IF_ERROR(
      LaunchOkDmdSumChunks(pxx.as<double>(), pyx.as<double>(), nb, c.chunks, d, sigma, g, yx, st),
      "OkDmd: sum chunks");
  return Status::OK();  // buffers go back to the pool; later users are on the same stream
}

// A and P of nb heads (row-major f64) from their keys [nb, T, d].
Status FitGroup(const float* keys, int64_t nb, int64_t T, int d, const OkDmdOptions& o,
                GpuContext& ctx, double* a, double* p) {
  cudaStream_t st = ctx.stream();
  const int64_t dd = int64_t(d) * d;
  if (T < 2) {  // no pair: the model of Create (A = 0, P = I / sigma)
    KVC_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(a, 0, size_t(nb * dd) * sizeof(double), st),
                             "OkDmd: zero A");
    KVC_CUDA_RETURN_IF_ERROR(LaunchOkDmdFillIdentity(p, nb, d, 1.0 / o.sigma, st),
                             "OkDmd: P = I / sigma");
    return Status::OK();
  }
  DeviceMemoryPool& pool = ctx.pool();
  KVC_ASSIGN_OR_RETURN(DeviceBuffer g, pool.AllocateArray<double>(size_t(nb * dd)));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer yx, pool.AllocateArray<double>(size_t(nb * dd)));
  KVC_RETURN_IF_ERROR(
      TrajectoryMoments(keys, nb, T, d, o.sigma, ctx, g.as<double>(), yx.as<double>()));
  KVC_RETURN_IF_ERROR(InvertSpd(g.as<double>(), nb, d, ctx, p));
  // Row-major A = (Y X^T) P; column-major that is A^T = P^T (Y X^T)^T = P * [yx buffer].
  const double one = 1.0, zero = 0.0;
  KVC_CUBLAS_RETURN_IF_ERROR(
      cublasDgemmStridedBatched(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, d, d, d, &one, p, d, dd,
                                yx.as<double>(), d, dd, &zero, a, d, dd, int(nb)),
      "OkDmd: cublasDgemmStridedBatched (A)");
  return Status::OK();
}

}  // namespace

Result<OkDmdDeviceState> OkDmdPrefill(const OkDmdDeviceProblem& problem, const OkDmdOptions& o,
                                      GpuContext& ctx) {
  KVC_RETURN_IF_ERROR(ValidateProblem(problem));
  const int64_t B = problem.batch, T = problem.tokens;
  const int d = int(problem.head_dim);
  int k = 0;
  KVC_ASSIGN_OR_RETURN(std::vector<double> q0, InitialBases(d, problem.seeds, o, &k));
  KVC_ASSIGN_OR_RETURN(OkDmdDeviceState s, AllocateState(B, d, k, o, ctx.pool()));
  cudaStream_t st = ctx.stream();
  const int64_t dd = int64_t(d) * d;
  const int64_t group =
      std::clamp<int64_t>(kFitGroupBytes / std::max<int64_t>(1, 2 * T * d * 8), 1, B);
  for (int64_t b0 = 0; b0 < B; b0 += group) {
    const int64_t nb = std::min(group, B - b0);
    const float* keys = T > 0 ? problem.keys + b0 * T * d : nullptr;
    KVC_RETURN_IF_ERROR(
        FitGroup(keys, nb, T, d, o, ctx, s.a.as<double>() + b0 * dd, s.p.as<double>() + b0 * dd));
  }
  KVC_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(s.q.get(), q0.data(), q0.size() * sizeof(double), cudaMemcpyHostToDevice, st),
      "OkDmd: upload Q0");
  KVC_CUDA_RETURN_IF_ERROR(
      LaunchOkDmdPowerIteration(s.a.as<double>(), s.q.as<double>(), s.work.as<double>(), B, d, k,
                                o.power_iters, st),
      "OkDmd: power iteration");
  if (T >= 1) {
    KVC_CUDA_RETURN_IF_ERROR(
        LaunchOkDmdCopyKeyRow(problem.keys, B, T, T - 1, d, s.prev.as<double>(), st),
        "OkDmd: last key");
    s.has_prev = true;
  }
  return s;
}

Status OkDmdPush(OkDmdDeviceState& state, const float* keys, int64_t steps, GpuContext& ctx) {
  if (steps < 0 || (steps > 0 && keys == nullptr) || state.a.empty()) {
    return Status::InvalidArgument("OkDmdPush: need steps >= 0, keys and a prefilled state");
  }
  if (steps == 0) return Status::OK();
  cudaStream_t st = ctx.stream();
  int64_t start = 0;
  if (!state.has_prev) {  // the first key only becomes k_{t-1}
    KVC_CUDA_RETURN_IF_ERROR(LaunchOkDmdCopyKeyRow(keys, state.batch, steps, 0, state.head_dim,
                                                   state.prev.as<double>(), st),
                             "OkDmdPush: first key");
    state.has_prev = true;
    start = 1;
  }
  const OkDmdOptions& o = state.options;
  KVC_CUDA_RETURN_IF_ERROR(LaunchOkDmdPush(View(state), keys, steps, start, state.updates, o.lambda,
                                           o.sigma, o.refresh_every, st),
                           "OkDmdPush");
  state.updates += steps - start;
  return Status::OK();
}

Status OkDmdScoreKeys(const OkDmdDeviceState& state, const float* keys, int64_t count,
                      float* scores, GpuContext& ctx) {
  if (count < 0 || count > INT32_MAX || state.q.empty() ||
      (count > 0 && (keys == nullptr || scores == nullptr))) {
    return Status::InvalidArgument("OkDmdScoreKeys: need count in [0, 2^31), pointers, a state");
  }
  if (count == 0) return Status::OK();
  DeviceMemoryPool& pool = ctx.pool();
  cudaStream_t st = ctx.stream();
  const int64_t B = state.batch, d = state.head_dim, k = state.modes;
  KVC_ASSIGN_OR_RETURN(DeviceBuffer qf, pool.AllocateArray<float>(size_t(B * d * k)));
  KVC_CUDA_RETURN_IF_ERROR(LaunchOkDmdToFloat(state.q.as<double>(), B * d * k, qf.as<float>(), st),
                           "OkDmdScoreKeys: Q to f32");
  const int64_t group = std::clamp<int64_t>(kProjGroupBytes / (count * k * 4), 1, B);
  KVC_ASSIGN_OR_RETURN(DeviceBuffer proj, pool.AllocateArray<float>(size_t(group * count * k)));
  for (int64_t b0 = 0; b0 < B; b0 += group) {
    const int64_t nb = std::min(group, B - b0);
    GemmShape s;
    s.m = count, s.n = k, s.k = d;
    s.lda = d, s.ldb = k, s.ldc = k;
    s.stride_a = count * d, s.stride_b = d * k, s.stride_c = count * k;
    s.batch = nb;
    KVC_RETURN_IF_ERROR(Gemm(ctx.cublas(), s, 1.f, keys + b0 * count * d,
                             qf.as<float>() + b0 * d * k, 0.f, proj.as<float>(), MathMode::kF32));
    KVC_CUDA_RETURN_IF_ERROR(
        LaunchOkDmdRowSquaredNorms(proj.as<float>(), nb * count, int(k), scores + b0 * count, st),
        "OkDmdScoreKeys: squared norms");
  }
  return Status::OK();
}

Result<std::vector<float>> OkDmdScores(const OkDmdDeviceProblem& problem, const OkDmdOptions& o,
                                       GpuContext& ctx) {
  KVC_ASSIGN_OR_RETURN(OkDmdDeviceState s, OkDmdPrefill(problem, o, ctx));
  const size_t n = size_t(problem.batch * problem.tokens);
  KVC_ASSIGN_OR_RETURN(DeviceBuffer scores, ctx.pool().AllocateArray<float>(n));
  KVC_RETURN_IF_ERROR(OkDmdScoreKeys(s, problem.keys, problem.tokens, scores.as<float>(), ctx));
  return Download(scores.as<float>(), n, ctx.stream());
}

Result<OkDmdHostState> DownloadOkDmdState(const OkDmdDeviceState& state, GpuContext& ctx) {
  const size_t dd = size_t(state.batch) * state.head_dim * state.head_dim;
  const size_t dk = size_t(state.batch) * state.head_dim * state.modes;
  OkDmdHostState h;
  KVC_ASSIGN_OR_RETURN(h.a, Download(state.a.as<double>(), dd, ctx.stream()));
  KVC_ASSIGN_OR_RETURN(h.p, Download(state.p.as<double>(), dd, ctx.stream()));
  KVC_ASSIGN_OR_RETURN(h.q, Download(state.q.as<double>(), dk, ctx.stream()));
  KVC_ASSIGN_OR_RETURN(h.prev, Download(state.prev.as<double>(),
                                        size_t(state.batch) * state.head_dim, ctx.stream()));
  h.has_prev = state.has_prev;
  h.updates = state.updates;
  return h;
}

Result<std::vector<float>> OkDmdScoresOnHost(const std::vector<float>& keys, int64_t batch,
                                             int64_t tokens, int64_t head_dim,
                                             const std::vector<uint64_t>& seeds,
                                             const OkDmdOptions& o, GpuContext& ctx) {
  if (batch < 0 || tokens < 0 || head_dim < 0 ||
      keys.size() != size_t(batch) * size_t(tokens) * size_t(head_dim)) {
    return Status::InvalidArgument("OkDmdScoresOnHost: keys must hold batch * T * d floats");
  }
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dk, Upload(keys, ctx.pool(), ctx.stream()));
  OkDmdDeviceProblem p{dk.as<float>(), batch, tokens, head_dim, seeds};
  return OkDmdScores(p, o, ctx);
}

namespace {

// Scores of layers [l0, l0 + nl) into out (one upload, one batch of nl * H heads).
Status ScoreLayerGroup(const cpu::PreparedCache& c, int l0, int nl, const OkDmdOptions& o,
                       uint64_t seed, GpuContext& ctx, cpu::ScoreSet* out) {
  const int H = c.layout.n_kv_heads, d = c.d();
  const int64_t T = c.T();
  const size_t layer_elems = size_t(H) * T * d;
  cudaStream_t st = ctx.stream();
  KVC_ASSIGN_OR_RETURN(DeviceBuffer keys, ctx.pool().AllocateArray<float>(layer_elems * nl));
  OkDmdDeviceProblem p{keys.as<float>(), int64_t(nl) * H, T, d, {}};
  for (int l = l0; l < l0 + nl; ++l) {
    KVC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(keys.as<float>() + (l - l0) * layer_elems, c.K(l, 0),
                        layer_elems * sizeof(float), cudaMemcpyHostToDevice, st),
        "ScoreOkDmdGpu: upload keys");
    for (int h = 0; h < H; ++h) p.seeds.push_back(cpu::OkDmdHeadSeed(seed, l, h));
  }
  KVC_ASSIGN_OR_RETURN(OkDmdDeviceState s, OkDmdPrefill(p, o, ctx));
  const size_t n = size_t(p.batch) * T;
  KVC_ASSIGN_OR_RETURN(DeviceBuffer scores, ctx.pool().AllocateArray<float>(n));
  KVC_RETURN_IF_ERROR(OkDmdScoreKeys(s, p.keys, T, scores.as<float>(), ctx));
  KVC_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(out->at(l0, 0), scores.get(), n * sizeof(float), cudaMemcpyDeviceToHost, st),
      "ScoreOkDmdGpu: download scores");
  return ctx.Synchronize();
}

}  // namespace

Result<cpu::ScoreSet> ScoreOkDmdGpu(const cpu::PreparedCache& c, const OkDmdOptions& o,
                                    uint64_t seed, GpuContext& ctx) {
  KVC_RETURN_IF_ERROR(cpu::CheckPrepared(c));
  KVC_RETURN_IF_ERROR(cpu::OkDmdStream::Create(c.d(), o, seed).status());  // the CPU's checks
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads;
  const int64_t T = c.T();
  cpu::ScoreSet out = cpu::ScoreSet::Zeros(L, H, T);
  const int64_t layer_bytes = int64_t(H) * T * c.d() * int64_t(sizeof(float));
  const int per_call = int(std::clamp<int64_t>(kLayerGroupBytes / layer_bytes, 1, L));
  for (int l0 = 0; l0 < L; l0 += per_call) {
    KVC_RETURN_IF_ERROR(ScoreLayerGroup(c, l0, std::min(per_call, L - l0), o, seed, ctx, &out));
  }
  out.forced = cpu::SinksAndRecent(T, o.sinks, o.recent);
  return out;
}

}  // namespace kvc::cuda
