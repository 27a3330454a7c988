// OK-DMD on the GPU (design §4), batched over (layer, KV head): the prefill fit, the streaming RLS
// update, the basis refresh and the survival scores, with the semantics of kvc::cpu::OkDmdStream
// and kvc::cpu::ScoreOkDmd (kernels/cpu/okdmd.h, pipeline.h).
//
// For each batch entry b (one KV head of one layer) with keys K_b [T, d]:
//   prefill:  X = K[0:T-1]^T, Y = K[1:T]^T; G = X X^T + sigma I; P = G^-1 (Cholesky, LU fallback);
//             A = Y X^T P; Q0 = the CPU's seeded orthonormal basis (OkDmdStream::Create with the
//             entry's seed, so both sides start from the same d x k matrix), then power_iters
//             rounds Q <- qr(A Q) (Householder, LAPACK's conventions);
//   push:     per new key, OkDmdStream::Push's RLS update, refreshing Q every refresh_every
//   updates; scores:   score_i = ||Q^T k_i||^2, from f32 projections K Q (Q rounded to f32, as the
//   CPU
//             does) summed in f64.
// Precision: the fit and the streaming state are f64, as on the CPU (cuBLAS DGEMM for the
// trajectory moments, cuSOLVER DPOTRF for G); the score projections are f32. Scores match the CPU
// to f32 rounding of the projections (see gpu_compare_okdmd_test.cc for the tolerances). When
// T - 1 < k_modes (for T >= 2) A has rank below k and the trailing basis columns are set by
// rounding on both sides: such scores are valid but not comparable element by element.
//
// Memory: the fit converts keys to f64 trajectory pairs in groups of heads bounded by about
// 1 GiB, plus partial moments; the state is (2 d^2 + 2 d k + d) * 8 bytes per head.
// Stream semantics: work runs on ctx.stream(). OkDmdPrefill synchronises (it reads the Cholesky
// infos back); OkDmdPush and OkDmdScoreKeys only queue work; the functions returning host data
// synchronise. Device results are valid once the stream reaches them.
// Thread safety: one call at a time per GpuContext; an OkDmdDeviceState is used by one thread.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/pipeline.h"
#include "kernels/cuda/context.h"
#include "kernels/spec.h"

namespace kvc::cuda {

// Device inputs (not owned).
struct OkDmdDeviceProblem {
  const float* keys = nullptr;  // [batch, T, d] row-major, post-RoPE keys of each head
  int64_t batch = 0;
  int64_t tokens = 0;  // T
  int64_t head_dim = 0;
  // [batch]: the seed of each entry's random basis; kvc::cpu::OkDmdHeadSeed(seed, layer, head)
  // reproduces ScoreOkDmd.
  std::vector<uint64_t> seeds;
};

// The state of `batch` OkDmdStreams on the device (f64, row-major, as OkDmdStream's accessors).
struct OkDmdDeviceState {
  int64_t batch = 0;
  int head_dim = 0;
  int modes = 0;  // k = min(k_modes, d)
  OkDmdOptions options;
  DeviceBuffer a;     // [batch, d, d]
  DeviceBuffer p;     // [batch, d, d]
  DeviceBuffer q;     // [batch, d, k]
  DeviceBuffer prev;  // [batch, d]: k_{t-1}, meaningful when has_prev
  DeviceBuffer work;  // [batch, d, k]: QR workspace of the basis refresh
  bool has_prev = false;
  int64_t updates = 0;  // RLS updates applied to every head
};

// REQUIRES (else InvalidArgument): 1 <= batch <= 2^24, 0 <= T <= INT32_MAX,
// 1 <= d <= kOkDmdMaxHeadDim (1024), seeds.size() == batch, keys non-null when T > 0, and the
// options OkDmdStream::Create accepts (same message). Inputs must be finite (the caller checks).
// Internal when G is singular for some head even by LU (as the CPU).
Result<OkDmdDeviceState> OkDmdPrefill(const OkDmdDeviceProblem& problem, const OkDmdOptions& o,
                                      GpuContext& ctx);

// OkDmdStream::Push for keys[b, s], s = 0..steps-1, on every head b; keys: device
// [state.batch, steps, d]. steps = 0 does nothing. InvalidArgument on steps < 0 or a null pointer.
Status OkDmdPush(OkDmdDeviceState& state, const float* keys, int64_t steps, GpuContext& ctx);

// scores[b, i] = ||Q_b^T k_{b,i}||^2 for keys [state.batch, count, d] (device), scores
// [state.batch, count] (device). InvalidArgument on count outside [0, INT32_MAX] or null pointers.
Status OkDmdScoreKeys(const OkDmdDeviceState& state, const float* keys, int64_t count,
                      float* scores, GpuContext& ctx);

// Prefill on the problem's keys and scores of the same keys: [batch, T] on the host.
Result<std::vector<float>> OkDmdScores(const OkDmdDeviceProblem& problem, const OkDmdOptions& o,
                                       GpuContext& ctx);

// Host-side copy of a state, for tests and tools (synchronises).
struct OkDmdHostState {
  std::vector<double> a, p, q, prev;
  bool has_prev = false;
  int64_t updates = 0;
};
Result<OkDmdHostState> DownloadOkDmdState(const OkDmdDeviceState& state, GpuContext& ctx);

// OkDmdScores on host keys [batch, T, d]. InvalidArgument when keys.size() != batch * T * d.
Result<std::vector<float>> OkDmdScoresOnHost(const std::vector<float>& keys, int64_t batch,
                                             int64_t tokens, int64_t head_dim,
                                             const std::vector<uint64_t>& seeds,
                                             const OkDmdOptions& o, GpuContext& ctx);

// kvc::cpu::ScoreOkDmd on the GPU: the same checks and errors (CheckPrepared, then the options),
// the same per-head seeds (OkDmdHeadSeed(seed, l, h)) and the same forced positions (sinks and
// recent window). Layers are uploaded and scored in groups of up to 2 GiB of keys. Unlike the
// CPU, InvalidArgument for head_dim > kOkDmdMaxHeadDim (1024).
Result<cpu::ScoreSet> ScoreOkDmdGpu(const cpu::PreparedCache& c, const OkDmdOptions& o,
                                    uint64_t seed, GpuContext& ctx);

}  // namespace kvc::cuda
