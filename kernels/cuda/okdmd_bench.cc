// GPU benchmark of OK-DMD scoring (okdmd.h) on a Llama-3.1-8B-shaped cache: 32 layers x 8 KV
// heads, head_dim 128, T = 32768 by default, against the CPU reference kvc::cpu::ScoreOkDmd in the
// same run. Prints, per full model: the GPU end to end from host memory (ScoreOkDmdGpu, uploads
// included), the GPU with the keys already resident (prefill fit + scores, split), one streaming
// RLS step over every head, and the CPU reference timed on --cpu-layers layers and scaled to the
// model; then the agreement of the GPU and CPU scores on those layers (Nmse, top-T/8 overlap).
// The layers reuse one synthetic layer's keys (reference_okdmd.h): the work does not depend on the
// values; each layer still gets its own basis seeds.
//
// Usage: cuda_okdmd_bench [--layers L] [--tokens T] [--cpu-layers N] [--reps K] [--push-steps S]
// Without a CUDA device it prints why and exits with status 0 (nothing measured).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/okdmd.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/okdmd.h"
#include "kernels/cuda/reference_okdmd.h"
#include "kernels/cuda/reference_ops.h"

namespace kvc::cuda {
namespace {

struct BenchOptions {
  int layers = 32;
  int64_t tokens = 32768;
  int cpu_layers = 2;
  int reps = 3;
  int64_t push_steps = 256;
};

bool ParseArgs(int argc, char** argv, BenchOptions* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (v == nullptr) return false;
    if (a == "--layers") {
      o->layers = std::atoi(v);
    } else if (a == "--tokens") {
      o->tokens = std::atoll(v);
    } else if (a == "--cpu-layers") {
      o->cpu_layers = std::atoi(v);
    } else if (a == "--reps") {
      o->reps = std::atoi(v);
    } else if (a == "--push-steps") {
      o->push_steps = std::atoll(v);
    } else {
      return false;
    }
    ++i;
  }
  return o->layers >= 1 && o->tokens >= 2 && o->cpu_layers >= 0 && o->reps >= 1 &&
         o->push_steps >= 1;
}

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// `layers` layers viewing the keys and values of `base`'s first layer (no copies).
cpu::PreparedCache Replicate(const cpu::PreparedCache& base, int layers) {
  cpu::PreparedCache c;
  c.layout = base.layout;
  c.layout.n_layers = layers;
  const cpu::PreparedLayer& l0 = base.layers[0];
  for (int l = 0; l < layers; ++l) {
    cpu::PreparedLayer layer;
    layer.k = Tensor::View(DType::kF32, l0.k.shape(), const_cast<void*>(l0.k.raw()), nullptr);
    layer.v = Tensor::View(DType::kF32, l0.v.shape(), const_cast<void*>(l0.v.raw()), nullptr);
    c.layers.push_back(std::move(layer));
  }
  return c;
}

// Best of `reps` wall-clock runs of fn (which returns a Status and synchronises).
template <typename Fn>
Result<double> BestOf(int reps, Fn fn) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    KVC_RETURN_IF_ERROR(fn());
    best = std::min(best, Seconds(t0));
  }
  return best;
}

struct ResidentTimes {
  double prefill_s = 0;
  double scores_s = 0;
  double push_step_s = 0;
};

// Prefill + scores with every layer's keys on the device (one batch of L * H heads), then
// `push_steps` streaming updates of every head.
Result<ResidentTimes> TimeResident(const OkDmdCase& c, const cpu::PreparedCache& base,
                                   const BenchOptions& bo, GpuContext& ctx) {
  const size_t layer_elems = size_t(c.heads) * c.tokens * c.head_dim;
  KVC_ASSIGN_OR_RETURN(DeviceBuffer keys,
                       ctx.pool().AllocateArray<float>(layer_elems * size_t(bo.layers)));
  for (int l = 0; l < bo.layers; ++l) {
    KVC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(keys.as<float>() + l * layer_elems, base.K(0, 0),
                        layer_elems * sizeof(float), cudaMemcpyHostToDevice, ctx.stream()),
        "bench: upload");
  }
  OkDmdCase all = c;
  all.layers = bo.layers;
  OkDmdDeviceProblem p{keys.as<float>(), all.batch(), c.tokens, c.head_dim, HeadSeeds(all)};
  KVC_ASSIGN_OR_RETURN(DeviceBuffer scores,
                       ctx.pool().AllocateArray<float>(size_t(p.batch * c.tokens)));
  ResidentTimes t;
  OkDmdDeviceState state;
  KVC_ASSIGN_OR_RETURN(t.prefill_s, BestOf(bo.reps, [&]() -> Status {
                         KVC_ASSIGN_OR_RETURN(state, OkDmdPrefill(p, c.options, ctx));
                         return ctx.Synchronize();
                       }));
  KVC_ASSIGN_OR_RETURN(
      t.scores_s, BestOf(bo.reps, [&]() -> Status {
        KVC_RETURN_IF_ERROR(OkDmdScoreKeys(state, p.keys, c.tokens, scores.as<float>(), ctx));
        return ctx.Synchronize();
      }));
  // Streaming: the first push_steps keys of every head again, as new keys.
  const int64_t steps = std::min(bo.push_steps, c.tokens);
  KVC_ASSIGN_OR_RETURN(DeviceBuffer pushed,
                       ctx.pool().AllocateArray<float>(size_t(p.batch * steps * c.head_dim)));
  KVC_CUDA_RETURN_IF_ERROR(
      cudaMemcpy2DAsync(pushed.get(), steps * c.head_dim * sizeof(float), keys.get(),
                        c.tokens * c.head_dim * sizeof(float), steps * c.head_dim * sizeof(float),
                        size_t(p.batch), cudaMemcpyDeviceToDevice, ctx.stream()),
      "bench: push keys");
  KVC_ASSIGN_OR_RETURN(double push_s, BestOf(1, [&]() -> Status {
                         KVC_RETURN_IF_ERROR(OkDmdPush(state, pushed.as<float>(), steps, ctx));
                         return ctx.Synchronize();
                       }));
  t.push_step_s = push_s / double(steps);
  return t;
}

int Run(const BenchOptions& bo) {
  if (DeviceCount() == 0) {
    std::printf("cuda_okdmd_bench: no CUDA device (%s); nothing measured\n",
                NoDeviceReason().c_str());
    return 0;
  }
  Result<std::unique_ptr<GpuContext>> ctx_r = GpuContext::Create(0);
  if (!ctx_r.ok()) {
    std::fprintf(stderr, "cuda_okdmd_bench: %s\n", ctx_r.status().ToString().c_str());
    return 1;
  }
  GpuContext& ctx = **ctx_r;
  const OkDmdCase c = OkDmdBenchmarkCase(1, bo.tokens);
  std::printf("device: %s\n", DescribeDevice(ctx.info()).c_str());
  std::printf("layout: %d layers x %d KV heads, d %d, T %lld, k_modes %d, power_iters %d\n",
              bo.layers, c.heads, c.head_dim, static_cast<long long>(c.tokens), c.options.k_modes,
              c.options.power_iters);
  const cpu::PreparedCache base = MakeOkDmdCache(c);
  const cpu::PreparedCache model = Replicate(base, bo.layers);
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "cuda_okdmd_bench: %s\n", s.ToString().c_str());
    return 1;
  };
  Result<cpu::ScoreSet> gpu = ScoreOkDmdGpu(Replicate(base, 1), c.options, c.seed, ctx);  // warm-up
  if (!gpu.ok()) return fail(gpu.status());
  Result<double> e2e = BestOf(bo.reps, [&]() -> Status {
    gpu = ScoreOkDmdGpu(model, c.options, c.seed, ctx);
    return gpu.status();
  });
  if (!e2e.ok()) return fail(e2e.status());
  Result<ResidentTimes> res = TimeResident(c, base, bo, ctx);
  if (!res.ok()) return fail(res.status());
  std::printf("GPU end to end (ScoreOkDmdGpu, uploads included): %.3f s per model\n", *e2e);
  std::printf("GPU keys resident: prefill fit %.3f s + scores %.3f s = %.3f s per model\n",
              res->prefill_s, res->scores_s, res->prefill_s + res->scores_s);
  std::printf("GPU streaming RLS update: %.1f us per step (all %d heads)\n", res->push_step_s * 1e6,
              bo.layers * c.heads);
  if (bo.cpu_layers == 0) return 0;
  const int cl = std::min(bo.cpu_layers, bo.layers);
  const cpu::PreparedCache part = Replicate(base, cl);
  const auto t0 = std::chrono::steady_clock::now();
  Result<cpu::ScoreSet> cpu_scores = cpu::ScoreOkDmd(part, c.options, c.seed);
  const double cpu_s = Seconds(t0) * double(bo.layers) / double(cl);
  if (!cpu_scores.ok()) return fail(cpu_scores.status());
  std::printf("CPU reference (kvc::cpu::ScoreOkDmd, %d layers timed): %.3f s per model\n", cl,
              cpu_s);
  std::printf("speed-up: end to end %.1fx, keys resident %.1fx\n", cpu_s / *e2e,
              cpu_s / (res->prefill_s + res->scores_s));
  const std::vector<float> head(gpu->scores.begin(),
                                gpu->scores.begin() + int64_t(cl) * c.heads * c.tokens);
  std::printf(
      "agreement on %d layers: scores nmse %.3g, min top-T/8 overlap %.4f\n", cl,
      ref::Nmse(head, cpu_scores->scores),
      ref::MinTopKOverlap(head, cpu_scores->scores, int64_t(cl) * c.heads, c.tokens, c.tokens / 8));
  return 0;
}

}  // namespace
}  // namespace kvc::cuda

int main(int argc, char** argv) {
  kvc::cuda::BenchOptions o;
  if (!kvc::cuda::ParseArgs(argc, argv, &o)) {
    std::fprintf(stderr,
                 "usage: cuda_okdmd_bench [--layers L] [--tokens T] [--cpu-layers N] [--reps K] "
                 "[--push-steps S]\n");
    return 2;
  }
  return kvc::cuda::Run(o);
}
