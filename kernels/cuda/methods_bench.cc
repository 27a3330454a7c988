// Benchmark of the selection methods on the GPU (methods.h) against the CPU reference (kvc::cpu)
// on a Llama-3.1-8B-shaped cache: 32 layers x 8 KV heads (32 query heads, group 4), head_dim 128,
// T = 32768, a q_window of 32 rows, head budget T / 10.
//
// Each row is one method stage over the whole model. GPU times are wall-clock times of the
// methods.h entry points, which take the host PreparedCache: they include the host-to-device
// copies of K (and V for the merge) and the downloads, and end synchronised. CPU times are
// measured on the first --cpu-layers layers and extrapolated linearly to all layers (the stages
// are per layer), except the selection and DynamicKV's global budget step, which are measured on
// the whole model. The layers share one synthetic layer's data (the work does not depend on the
// values); the CPU reference uses the machine's BLAS threads.
//
// Usage: methods_bench [--layers L] [--tokens T] [--window W] [--ratio R] [--cpu-layers N]
//                      [--reps K]
// Without a CUDA device it prints why and exits with status 0 (nothing measured).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/budgets.h"
#include "kernels/cpu/d2o.h"
#include "kernels/cpu/pipeline.h"
#include "kernels/cuda/cases.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/methods.h"

namespace kvc::cuda {
namespace {

struct BenchOptions {
  int layers = 32;
  int64_t tokens = 32768;
  int64_t window = 32;
  double ratio = 10.0;
  int cpu_layers = 1;
  int reps = 1;
};

bool ParseArgs(int argc, char** argv, BenchOptions* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (v == nullptr) return false;
    ++i;
    if (a == "--layers") {
      o->layers = std::atoi(v);
    } else if (a == "--tokens") {
      o->tokens = std::atoll(v);
    } else if (a == "--window") {
      o->window = std::atoll(v);
    } else if (a == "--ratio") {
      o->ratio = std::atof(v);
    } else if (a == "--cpu-layers") {
      o->cpu_layers = std::atoi(v);
    } else if (a == "--reps") {
      o->reps = std::atoi(v);
    } else {
      return false;
    }
  }
  return o->layers >= 1 && o->tokens >= 2 && o->window >= 1 && o->window <= o->tokens &&
         o->ratio >= 1.0 && o->cpu_layers >= 1 && o->reps >= 1;
}

Tensor Normal(Shape shape, uint64_t seed) {
  return Tensor::FromVector(NormalVector(size_t(ShapeNumel(shape)), seed), shape);
}

// L layers sharing one layer's tensors (Tensor copies share storage).
cpu::PreparedCache MakeCache(const BenchOptions& o, int layers) {
  cpu::PreparedCache c;
  c.layout.n_layers = layers;
  c.layout.n_kv_heads = 8;
  c.layout.n_q_heads = 32;
  c.layout.head_dim = 128;
  c.layout.tokens = o.tokens;
  cpu::PreparedLayer layer;
  layer.k = Normal({8, o.tokens, 128}, 1);
  layer.v = Normal({8, o.tokens, 128}, 2);
  layer.q_window = Normal({32, o.window, 128}, 3);
  c.layers.assign(size_t(layers), layer);
  return c;
}

cpu::PreparedCache FirstLayers(const cpu::PreparedCache& c, int n) {
  cpu::PreparedCache s = c;
  s.layout.n_layers = std::min(n, c.layout.n_layers);
  s.layers.resize(size_t(s.layout.n_layers));
  return s;
}

// Best of `reps` wall-clock times in ms; aborts the benchmark on an error.
double TimeMs(int reps, const std::function<Status()>& f) {
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    const Status s = f();
    const auto t1 = std::chrono::steady_clock::now();
    if (!s.ok()) {
      std::fprintf(stderr, "error: %s\n", s.ToString().c_str());
      std::exit(1);
    }
    best = std::min(best, std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return best;
}

struct Row {
  std::string name;
  double gpu_ms;
  double cpu_ms;  // for all layers
  std::string cpu_note;
};

void Print(const std::vector<Row>& rows, int64_t layer_heads) {
  std::printf("%-28s %12s %14s %9s %14s %14s  %s\n", "stage", "GPU ms", "CPU ms", "speedup",
              "GPU us/(l,h)", "CPU us/(l,h)", "CPU time");
  for (const Row& r : rows) {
    std::printf("%-28s %12.2f %14.1f %8.1fx %14.2f %14.1f  %s\n", r.name.c_str(), r.gpu_ms,
                r.cpu_ms, r.cpu_ms / r.gpu_ms, 1e3 * r.gpu_ms / double(layer_heads),
                1e3 * r.cpu_ms / double(layer_heads), r.cpu_note.c_str());
  }
}

template <typename T>
Status Keep(const Result<T>& r) {
  return r.status();
}

// Scoring stages: GPU on every layer, CPU on the first layers, extrapolated.
void ScoringRows(const BenchOptions& o, const cpu::PreparedCache& c, const cpu::PreparedCache& sub,
                 int64_t budget, GpuContext& ctx, std::vector<Row>* rows) {
  const double scale = double(c.layout.n_layers) / double(sub.layout.n_layers);
  const std::string note = "extrapolated from " + std::to_string(sub.layout.n_layers) + " layer(s)";
  auto add = [&](const char* name, const std::function<Status()>& gpu,
                 const std::function<Status()>& cpu) {
    gpu().IgnoreError();  // warm-up: pool, handles
    rows->push_back({name, TimeMs(o.reps, gpu), scale * TimeMs(1, cpu), note});
  };
  add(
      "snapkv scores", [&] { return Keep(ScoreSnapKvGpu(c, {}, ctx)); },
      [&] { return Keep(cpu::ScoreSnapKv(sub, {})); });
  add(
      "dynamickv scores", [&] { return Keep(ScoreDynamicKvGpu(c, {}, ctx)); },
      [&] { return Keep(cpu::ScoreDynamicKv(sub, {})); });
  add(
      "h2o scores", [&] { return Keep(ScoreH2oGpu(c, {}, budget, ctx)); },
      [&] { return Keep(cpu::ScoreH2o(sub, {}, budget)); });
  add(
      "d2o scores", [&] { return Keep(ScoreD2oGpu(c, {}, budget, ctx)); },
      [&] { return Keep(cpu::ScoreD2o(sub, {}, budget)); });
  add(
      "d2o layer ratios", [&] { return Keep(D2oLayerRatiosGpu(c, {}, ctx)); },
      [&] { return Keep(cpu::D2oLayerRatios(sub, {})); });
}

int Main(int argc, char** argv) {
  BenchOptions o;
  if (!ParseArgs(argc, argv, &o)) {
    std::fprintf(stderr,
                 "usage: methods_bench [--layers L] [--tokens T] [--window W] [--ratio R] "
                 "[--cpu-layers N] [--reps K]\n");
    return 2;
  }
  if (DeviceCount() == 0) {
    std::printf("no CUDA device (%s): nothing measured\n", NoDeviceReason().c_str());
    return 0;
  }
  Result<std::unique_ptr<GpuContext>> ctx_or = GpuContext::Create(0);
  if (!ctx_or.ok()) {
    std::fprintf(stderr, "GpuContext: %s\n", ctx_or.status().ToString().c_str());
    return 1;
  }
  GpuContext& ctx = **ctx_or;
  const cpu::PreparedCache c = MakeCache(o, o.layers);
  const cpu::PreparedCache sub = FirstLayers(c, o.cpu_layers);
  const int64_t budget = std::max<int64_t>(1, std::llround(double(o.tokens) / o.ratio));
  std::printf(
      "%s\nlayout: %d layers x 8 kv heads (32 q heads), d 128, T %lld, window %lld, "
      "head budget %lld\n",
      DescribeDevice(ctx.info()).c_str(), o.layers, (long long)o.tokens, (long long)o.window,
      (long long)budget);
  std::vector<Row> rows;
  ScoringRows(o, c, sub, budget, ctx, &rows);

  CompactionSpec spec;
  spec.method = Method::kD2o;
  const cpu::ScoreSet d2o_scores = *cpu::ScoreD2o(c, spec.d2o, budget);  // whole model, on CPU
  // Uniform budgets (a 10x compaction of every head): D2O's own allocation keeps its uncompressed
  // layers whole, which would leave the CPU's first layers nothing to merge.
  const cpu::Budgets d2o_budgets(size_t(o.layers), std::vector<int64_t>(8, budget));
  const cpu::Selection sel = cpu::SelectTopK(d2o_scores, d2o_budgets);
  SelectTopKGpu(d2o_scores, d2o_budgets, ctx).status().IgnoreError();
  rows.push_back({"select top-k",
                  TimeMs(o.reps, [&] { return Keep(SelectTopKGpu(d2o_scores, d2o_budgets, ctx)); }),
                  TimeMs(1,
                         [&] {
                           cpu::SelectTopK(d2o_scores, d2o_budgets);
                           return Status::OK();
                         }),
                  "measured on all layers"});

  CompactionSpec dyn;
  dyn.method = Method::kDynamicKv;
  AllocateBudgetsGpu(c, d2o_scores, dyn, budget, ctx).status().IgnoreError();
  rows.push_back(
      {"dynamickv budgets",
       TimeMs(o.reps, [&] { return Keep(AllocateBudgetsGpu(c, d2o_scores, dyn, budget, ctx)); }),
       TimeMs(1, [&] { return Keep(cpu::AllocateBudgets(c, d2o_scores, dyn, budget)); }),
       "measured on all layers"});

  cpu::Selection sub_sel(sel.begin(), sel.begin() + sub.layout.n_layers);
  D2oMergeGpu(c, sel, spec.d2o, ctx).status().IgnoreError();
  rows.push_back({"d2o merge",
                  TimeMs(o.reps, [&] { return Keep(D2oMergeGpu(c, sel, spec.d2o, ctx)); }),
                  double(o.layers) / sub.layout.n_layers *
                      TimeMs(1, [&] { return Keep(cpu::D2oMerge(sub, sub_sel, spec.d2o)); }),
                  "extrapolated from " + std::to_string(sub.layout.n_layers) + " layer(s)"});
  Print(rows, int64_t(o.layers) * 8);
  return 0;
}

}  // namespace
}  // namespace kvc::cuda

int main(int argc, char** argv) { return kvc::cuda::Main(argc, argv); }
