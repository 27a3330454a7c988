// Host orchestration of the GPU OMP / OMP-fast selection (am_omp.h): the round plan, the scratch
// buffers and the per-round launch sequence.
#include "kernels/cuda/am_omp.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "kernels/cuda/context.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/nnls.cuh"

namespace kvc::cuda {
namespace {

constexpr int64_t kMaxRowTiles = 64;

const OmpFastStage& StageFor(const std::vector<OmpFastStage>& schedule, int64_t selected) {
  for (const OmpFastStage& s : schedule) {
    if (selected < s.up_to) return s;
  }
  return schedule.back();
}

// The plan of every head, [rounds, batch] row-major, plus per-round host maxima.
struct Plan {
  int64_t rounds = 0;
  std::vector<int32_t> picks, before, refit;
  std::vector<int32_t> max_picks;  // per round
  std::vector<int64_t> max_count;  // per round: max over refitting heads of before + picks
  bool any_refit(int64_t r) const { return max_count[r] > 0; }
};

Plan MakePlan(const RaggedLayout& out, int64_t tokens, const OmpFastOptions& o) {
  const int64_t B = out.batch();
  std::vector<std::vector<int64_t>> per(static_cast<size_t>(B));
  Plan plan;
  for (int64_t b = 0; b < B; ++b) {
    if (out.cols(b) < tokens) per[b] = OmpRoundSizes(out.cols(b), o.schedule);
    plan.rounds = std::max<int64_t>(plan.rounds, int64_t(per[b].size()));
  }
  const size_t cells = size_t(plan.rounds * B);
  plan.picks.assign(cells, 0);
  plan.before.assign(cells, 0);
  plan.refit.assign(cells, 0);
  plan.max_picks.assign(size_t(plan.rounds), 0);
  plan.max_count.assign(size_t(plan.rounds), 0);
  for (int64_t b = 0; b < B; ++b) {
    int64_t done = 0;
    const int64_t R = int64_t(per[b].size());
    for (int64_t r = 0; r < R; ++r) {
      const size_t cell = size_t(r * B + b);
      plan.picks[cell] = int32_t(per[b][r]);
      plan.before[cell] = int32_t(done);
      done += per[b][r];
      plan.refit[cell] = r + 1 < R ? 1 : 0;
      plan.max_picks[r] = std::max(plan.max_picks[r], int32_t(per[b][r]));
      if (plan.refit[cell] != 0) plan.max_count[r] = std::max(plan.max_count[r], done);
    }
  }
  return plan;
}

// Device state of one OmpFastSelect call.
struct OmpWork {
  int64_t batch = 0, n = 0, tokens = 0, row_tile = 1, tiles = 1;
  RaggedView full;  // batch x T, rows n (Phi)
  const int64_t* sel_off = nullptr;
  DeviceBuffer plan_picks, plan_before, plan_refit;
  DeviceBuffer partial, corr, taken, order, cols, w, v, y, step, r, u;
};

Status Allocate(const RaggedLayout& out, const Plan& plan, DeviceMemoryPool& pool, cudaStream_t st,
                OmpWork& k) {
  const size_t total = size_t(std::max<int64_t>(1, out.total()));
  const size_t bt = size_t(k.batch * k.tokens), bn = size_t(k.batch * k.n);
  KVC_ASSIGN_OR_RETURN(k.plan_picks, Upload(plan.picks, pool, st));
  KVC_ASSIGN_OR_RETURN(k.plan_before, Upload(plan.before, pool, st));
  KVC_ASSIGN_OR_RETURN(k.plan_refit, Upload(plan.refit, pool, st));
  KVC_ASSIGN_OR_RETURN(k.partial, pool.AllocateArray<float>(size_t(k.tiles) * bt));
  KVC_ASSIGN_OR_RETURN(k.corr, pool.AllocateArray<float>(bt));
  KVC_ASSIGN_OR_RETURN(k.taken, pool.AllocateArray<uint8_t>(bt));
  KVC_ASSIGN_OR_RETURN(k.order, pool.AllocateArray<int32_t>(total));
  KVC_ASSIGN_OR_RETURN(k.cols, pool.AllocateArray<float>(total * size_t(k.n)));
  KVC_ASSIGN_OR_RETURN(k.w, pool.AllocateArray<float>(total));
  KVC_ASSIGN_OR_RETURN(k.v, pool.AllocateArray<float>(total));
  KVC_ASSIGN_OR_RETURN(k.y, pool.AllocateArray<float>(total));
  KVC_ASSIGN_OR_RETURN(k.step, pool.AllocateArray<float>(size_t(k.batch)));
  KVC_ASSIGN_OR_RETURN(k.r, pool.AllocateArray<float>(bn));
  KVC_ASSIGN_OR_RETURN(k.u, pool.AllocateArray<float>(bn));
  return Status::OK();
}

// Heads whose budget is every key select all of them; the others start with nothing taken.
Status InitTaken(const RaggedLayout& out, OmpWork& k, cudaStream_t st) {
  uint8_t* taken = k.taken.as<uint8_t>();
  KVC_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(taken, 0, size_t(k.batch * k.tokens), st),
                           "OmpFastSelect: clear");
  for (int64_t b = 0; b < k.batch; ++b) {
    if (out.cols(b) == k.tokens) {
      KVC_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(taken + b * k.tokens, 1, size_t(k.tokens), st),
                               "OmpFastSelect: select all");
    }
  }
  return Status::OK();
}

// Power iterations, projected-gradient steps and the new residual of the refitting heads.
Status Refit(const float* z, const OmpFastOptions& o, int64_t max_count, const int32_t* picks,
             const int32_t* before, const int32_t* active, OmpWork& k, cudaStream_t st) {
  float *w = k.w.as<float>(), *v = k.v.as<float>(), *y = k.y.as<float>();
  float *r = k.r.as<float>(), *u = k.u.as<float>(), *step = k.step.as<float>();
  const float* cols = k.cols.as<float>();
  for (int it = 0; it < o.power_iters; ++it) {
    KVC_CUDA_RETURN_IF_ERROR(LaunchOmpColsMatVec(cols, v, nullptr, k.batch, k.n, active, picks,
                                                 before, k.sel_off, u, st),
                             "OmpFastSelect: Phi_S v");
    KVC_CUDA_RETURN_IF_ERROR(LaunchOmpColsMatTVec(cols, u, k.batch, k.n, max_count, active, picks,
                                                  before, k.sel_off, nullptr, 0.f, 0.f, y, st),
                             "OmpFastSelect: Phi_S^T u");
    KVC_CUDA_RETURN_IF_ERROR(
        LaunchOmpNormalize(y, k.batch, active, picks, before, k.sel_off, v, step, st),
        "OmpFastSelect: normalise");
  }
  for (int s = 0; s <= o.refit_pg_steps; ++s) {
    KVC_CUDA_RETURN_IF_ERROR(
        LaunchOmpColsMatVec(cols, w, z, k.batch, k.n, active, picks, before, k.sel_off, r, st),
        "OmpFastSelect: residual");
    if (s == o.refit_pg_steps) break;  // the last residual feeds the next round's corr
    KVC_CUDA_RETURN_IF_ERROR(LaunchOmpColsMatTVec(cols, r, k.batch, k.n, max_count, active, picks,
                                                  before, k.sel_off, step, o.lower, o.upper, w, st),
                             "OmpFastSelect: projected step");
  }
  return Status::OK();
}

Status RunRound(const float* phi, const float* z, const OmpFastOptions& o, const Plan& plan,
                int64_t round, OmpWork& k, cudaStream_t st) {
  const int64_t B = k.batch;
  const int32_t* picks = k.plan_picks.as<int32_t>() + round * B;
  const int32_t* before = k.plan_before.as<int32_t>() + round * B;
  const int32_t* refit = k.plan_refit.as<int32_t>() + round * B;
  float* corr = k.corr.as<float>();
  KVC_CUDA_RETURN_IF_ERROR(LaunchRaggedMatTVecPartial(phi, k.r.as<float>(), k.full, k.row_tile,
                                                      k.partial.as<float>(), st),
                           "OmpFastSelect: Phi^T r");
  KVC_CUDA_RETURN_IF_ERROR(
      LaunchOmpCorrFinalize(k.partial.as<float>(), k.tiles, B * k.tokens, corr, st),
      "OmpFastSelect: corr");
  KVC_CUDA_RETURN_IF_ERROR(LaunchOmpPick(corr, B, k.tokens, picks, before, k.sel_off,
                                         k.taken.as<uint8_t>(), k.order.as<int32_t>(), st),
                           "OmpFastSelect: pick");
  KVC_CUDA_RETURN_IF_ERROR(
      LaunchOmpAddColumns(phi, corr, B, k.n, k.tokens, plan.max_picks[round], picks, before,
                          k.sel_off, k.order.as<int32_t>(), o.lower, o.upper, k.cols.as<float>(),
                          k.w.as<float>(), k.v.as<float>(), st),
      "OmpFastSelect: add columns");
  if (!plan.any_refit(round)) return Status::OK();
  return Refit(z, o, plan.max_count[round], picks, before, refit, k, st);
}

}  // namespace

std::vector<OmpFastStage> PlainOmpSchedule() {
  return {OmpFastStage{std::numeric_limits<int64_t>::max(), 1, 1}};
}

std::vector<int64_t> OmpRoundSizes(int64_t t, const std::vector<OmpFastStage>& schedule) {
  std::vector<int64_t> rounds;
  int64_t size = 0, pending = 0;
  int since_refit = 0;
  while (size < t) {
    const OmpFastStage& stage = StageFor(schedule, size);
    const int64_t want = std::min<int64_t>(stage.keys_per_step, t - size);
    size += want;
    pending += want;
    if (++since_refit >= stage.refit_every || size == t) {
      rounds.push_back(pending);
      pending = 0;
      since_refit = 0;
    }
  }
  return rounds;
}

Status CheckOmpFastOptions(const OmpFastOptions& o) {
  if (o.schedule.empty()) return Status::InvalidArgument("OMP: empty schedule");
  for (const OmpFastStage& s : o.schedule) {
    if (s.keys_per_step < 1 || s.refit_every < 1) {
      return Status::InvalidArgument("OMP: schedule needs keys_per_step >= 1 and refit_every >= 1");
    }
    if (int64_t(s.keys_per_step) * s.refit_every > INT32_MAX / 2) {
      return Status::InvalidArgument("OMP: keys per round out of range");
    }
  }
  if (o.refit_pg_steps < 0 || o.power_iters < 1) {
    return Status::InvalidArgument("OMP: need refit_pg_steps >= 0 and power_iters >= 1");
  }
  if (!(o.lower > 0.f && o.lower <= o.upper && std::isfinite(o.upper))) {
    return Status::InvalidArgument("OMP: need 0 < lower <= upper < inf");
  }
  return Status::OK();
}

Status OmpFastSelect(const float* phi, const float* z, int64_t batch, int64_t n, int64_t tokens,
                     const RaggedLayout& out, const OmpFastOptions& o, int32_t* indices,
                     DeviceMemoryPool& pool, cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(CheckOmpFastOptions(o));
  KVC_RETURN_IF_ERROR(CheckRagged(out, n, "OmpFastSelect"));
  if (out.batch() != batch || tokens < 1 || tokens > INT32_MAX || out.max_cols() > tokens) {
    return Status::InvalidArgument("OmpFastSelect: need out.batch() == batch and budgets <= T");
  }
  if (phi == nullptr || z == nullptr || (indices == nullptr && out.total() > 0)) {
    return Status::InvalidArgument("OmpFastSelect: null pointer");
  }
  if (out.total() == 0) return Status::OK();
  const Plan plan = MakePlan(out, tokens, o);
  OmpWork k;
  k.batch = batch;
  k.n = n;
  k.tokens = tokens;
  k.row_tile = std::max<int64_t>(1, (n + kMaxRowTiles - 1) / kMaxRowTiles);
  k.tiles = (n + k.row_tile - 1) / k.row_tile;
  k.sel_off = out.device_offsets();
  KVC_ASSIGN_OR_RETURN(RaggedLayout full, RaggedLayout::Uniform(batch, tokens, pool, stream));
  k.full = full.View(n);
  KVC_RETURN_IF_ERROR(Allocate(out, plan, pool, stream, k));
  KVC_RETURN_IF_ERROR(InitTaken(out, k, stream));
  KVC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(k.r.get(), z, size_t(batch * n) * sizeof(float),
                                           cudaMemcpyDeviceToDevice, stream),
                           "OmpFastSelect: r = z");
  for (int64_t round = 0; round < plan.rounds; ++round) {
    KVC_RETURN_IF_ERROR(RunRound(phi, z, o, plan, round, k, stream));
  }
  return FromCuda(
      LaunchOmpCompact(k.taken.as<uint8_t>(), batch, tokens, k.sel_off, indices, stream),
      "OmpFastSelect: compact");
}

}  // namespace kvc::cuda
