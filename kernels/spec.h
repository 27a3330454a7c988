// CompactionSpec: what a caller asks of the compactor. Plain structs, every field documented
// with its default (design §4). Thread safety: values.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kvc {

enum class Method : uint8_t {
  kAttentionMatching = 0,  // "am"
  kOkDmd = 1,              // "okdmd"
  kDynamicKv = 2,          // "dynamickv"
  kD2o = 3,                // "d2o"
  kStreamingLlm = 4,       // "streamingllm"
  kH2o = 5,                // "h2o"
  kSnapKv = 6,             // "snapkv"
  kPyramidKv = 7,          // "pyramidkv"
};
const char* MethodName(Method m);
// Accepts the names above (case-insensitive); NotSupported otherwise, listing the valid names.
Result<Method> ParseMethod(std::string_view name);

// How AM picks its keys.
enum class AmSelection : uint8_t {
  kHighestAttention = 0,  // "highest": score_j = sqrt(mean_i a_ij^2), top t
  kOmp = 1,               // "omp": one key per step, refit every step
  kOmpFast = 2,           // "omp-fast": progressive (k keys per step, refit every m steps)
  kScores = 3,            // "scores": another method's scores (AmOptions::selector) pick keys
};
const char* AmSelectionName(AmSelection s);
Result<AmSelection> ParseAmSelection(std::string_view name);

// How the total budget is spread over layers and heads.
enum class Allocator : uint8_t {
  kDefault = 0,    // the method's own: PyramidKV -> pyramid, DynamicKV -> dynamickv, D2O -> d2o,
                   // everything else -> uniform
  kUniform = 1,    // every (layer, head) gets the same budget
  kPyramid = 2,    // PyramidKV's linear layer schedule
  kDynamicKv = 3,  // DynamicKV's global top-k re-normalisation
  kD2o = 4,        // D2O's attention-variance layer ratios
  kAm = 5,         // data-driven: heads get the keys that buy the most held-out fidelity
};
const char* AllocatorName(Allocator a);
Result<Allocator> ParseAllocator(std::string_view name);

enum class Pooling : uint8_t { kAvg = 0, kMax = 1 };

// One stage of the OMP-fast schedule: while fewer than `up_to` keys are selected, add
// `keys_per_step` keys per step and refit the weights every `refit_every` steps.
struct OmpStage {
  int64_t up_to;
  int keys_per_step;
  int refit_every;
};

struct AmOptions {
  AmSelection selection = AmSelection::kHighestAttention;  // Default: highest attention.
  // With selection == kScores: the method whose scores choose the keys. Default: OK-DMD.
  Method selector = Method::kOkDmd;
  bool fit_beta = true;    // Default: true. False keeps beta = 0.
  bool fit_values = true;  // Default: true. False keeps the selected values.
  int nnls_pg_steps = 30;  // projected-gradient steps after clamp. Default: 30.
  // Values ridge lambda, scaled by ||X||_F^2 / t, pulling the fitted values towards the original
  // values of the kept keys (at 0 this is the plain least squares of design §4). A small ridge
  // keeps the fit from overfitting when the fit queries barely outnumber the kept keys (n ~ t):
  // at 2x on the synthetic presets, 0 loses to selection-only baselines and 1e-5 beats them all.
  // Default: 1e-5.
  double ridge = 1e-5;
  int refine_rounds = 0;  // drop beta < -7 and reselect, at most 3. Default: 0.
  // OMP-fast schedule. Default: (300: k=1, m=1), (1500: k=2, m=2), (rest: k=4, m=2).
  std::vector<OmpStage> omp_fast_schedule = {
      {300, 1, 1}, {1500, 2, 2}, {std::numeric_limits<int64_t>::max(), 4, 2}};
  // Explicit, labelled fallback when no q_ref was sent: use the keys as queries. Known to break
  // beta/value fitting on GQA models, so it selects only (beta = 0, values kept) unless
  // keys_as_queries_fit is also set. Default: false (AM without q_ref is an error).
  bool keys_as_queries = false;
  bool keys_as_queries_fit = false;
};

struct OkDmdOptions {
  int k_modes = 16;        // Default: 16 (clamped to head_dim).
  double lambda = 0.995;   // RLS forgetting factor. Default: 0.995.
  double sigma = 1e-5;     // ridge on P. Default: 1e-5.
  int sinks = 4;           // Default: 4.
  int recent = 16;         // Default: 16.
  int refresh_every = 16;  // basis refresh period in streaming steps. Default: 16.
  int power_iters = 10;    // Q <- qr(A Q) rounds at prefill. Default: 10.
};

struct StreamingLlmOptions {
  int sinks = 4;  // Default: 4. The rest of each head's budget is the most recent tokens.
};

struct H2oOptions {
  // Recent tokens always kept, as a fraction of the head budget. Default: 0.5 (H2O's split of
  // the budget between heavy hitters and recent tokens).
  double recent_fraction = 0.5;
};

struct SnapKvOptions {
  int kernel = 7;                   // pooling kernel (5-7). Default: 7.
  Pooling pooling = Pooling::kAvg;  // Default: avg.
  // Window queries used: the last `window` rows of q_window (0 = all sent). Default: 0.
  int window = 0;
};

struct PyramidKvOptions {
  double beta = 20.0;  // min = (cap - w) / beta. Default: 20.
};

struct DynamicKvOptions {
  int window = 8;                   // Default: 8.
  int kernel = 7;                   // Default: 7.
  Pooling pooling = Pooling::kAvg;  // Default: avg.
  double radio_max = 10.0;          // Default: 10.
  int every_m = 4;                  // progressive mode period. Default: 4.
  bool progressive = false;         // Default: false (one global step over all layers).
};

struct D2oOptions {
  double hh_ratio = 0.1;      // Default: 0.1.
  double recent_ratio = 0.1;  // Default: 0.1.
  double ema_alpha = 0.5;     // Default: 0.5.
  double ema_beta = 0.5;      // Default: 0.5.
  int sinks = 4;              // Default: 4.
  bool merge = true;          // Default: true.
  // Layers kept whole (negative counts from the end). Default: {0, 1, -1}.
  std::vector<int> uncompressed_layers = {0, 1, -1};
};

// Quality gate (design §4): after compaction, measure held-out fidelity; below min_cosine raise
// the budget by `escalation` and retry, at most max_rounds times.
struct GateOptions {
  double min_cosine = 0.0;  // mean held-out cosine floor; 0 disables the gate. Default: 0.
  double escalation = 1.5;  // Default: 1.5.
  int max_rounds = 4;       // Default: 4.
};

struct CompactionSpec {
  Method method = Method::kAttentionMatching;  // Default: AM.
  // Compaction ratio T / (average keys kept per head). Default: 10. Ignored when budget > 0.
  double ratio = 10.0;
  // Average keys kept per (layer, kv head); the total L * H * budget is respected exactly.
  // Default: 0 (use ratio: budget = max(1, round(T / ratio))).
  int64_t budget = 0;
  Allocator allocator = Allocator::kDefault;
  double heldout_fraction = 0.2;  // share of q_ref held out for fidelity. Default: 0.2.
  uint64_t seed = 0;              // every random choice derives from it. Default: 0.
  int threads = 0;                // worker threads; 0 = hardware concurrency. Default: 0.

  AmOptions am;
  OkDmdOptions okdmd;
  StreamingLlmOptions streaming;
  H2oOptions h2o;
  SnapKvOptions snapkv;
  PyramidKvOptions pyramid;
  DynamicKvOptions dynamickv;
  D2oOptions d2o;
  GateOptions gate;

  // Range checks on every field; InvalidArgument naming the field.
  Status Validate() const;
  // Keys kept per head on average for a source of T tokens, in [1, T].
  int64_t PerHeadBudget(int64_t tokens) const;
  // A stable one-line JSON description (goes into metadata and the spec hash).
  std::string ToJson() const;
};

// The allocator `spec` resolves to: spec.allocator, or for kDefault the method's own
// (PyramidKV -> pyramid, DynamicKV -> dynamickv, D2O -> d2o, everything else -> uniform).
Allocator ResolvedAllocator(const CompactionSpec& spec);

}  // namespace kvc
