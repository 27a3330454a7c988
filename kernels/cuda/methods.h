// The selection methods on the GPU (design §4: SnapKV, PyramidKV, DynamicKV, H2O, D2O), with the
// exact semantics of their CPU counterparts in kvc::cpu (kernels/cpu/pipeline.h, budgets.h,
// d2o.h), so a GPU backend can call these instead: same inputs (a host PreparedCache), same
// validation and error messages, same outputs (host ScoreSet / Budgets / Selection /
// LayerResults). Work is batched over (layer, KV head); see window_attention.h for the scoring
// and d2o_merge.cuh for the merge.
//
// Numerics: scores are f32 GEMMs and f32 softmax probabilities summed in double (as the CPU);
// results agree with the CPU to f32 rounding (the comparison harness states each tolerance).
// Selections and budgets are integer decisions taken on those values: they agree exactly except
// where two candidates are within rounding of each other.
//
// Budget allocation: the statistics are computed on the GPU and the CPU's allocation arithmetic
// is reused on the host (cpu::D2oRatiosFromSigma, cpu::D2oBudgetsFromRatios,
// cpu::DynamicKvLayerBudgets, cpu::BudgetsFromShares). Uniform and PyramidKV budgets need no
// statistics and the AM allocator has no GPU version: AllocateBudgetsGpu runs those on the CPU.
//
// Stream semantics: every function synchronises ctx.stream() before returning (results are on
// the host). Thread safety: one call at a time per GpuContext.
// Errors: InvalidArgument as the CPU functions; ResourceExhausted when device memory runs out;
// other codes from the CUDA libraries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/d2o.h"
#include "kernels/cpu/pipeline.h"
#include "kernels/cuda/context.h"
#include "kernels/spec.h"

namespace kvc::cuda {

struct GpuMethodsOptions {
  // Bound on the f32 attention-score buffer and on the keys uploaded per chunk of layers.
  // Default: 1 GiB.
  size_t score_bytes = size_t(1) << 30;
  // Bound on the K, V and gathered key buffers of one chunk of layers in the D2O merge.
  // Default: 512 MiB.
  size_t merge_bytes = size_t(512) << 20;
};

// ---- Scoring (as cpu::ScoreSnapKv, ScoreDynamicKv, ScoreH2o, ScoreD2o) --------------------------
Result<cpu::ScoreSet> ScoreSnapKvGpu(const cpu::PreparedCache& c, const SnapKvOptions& o,
                                     GpuContext& ctx, const GpuMethodsOptions& mo = {});
Result<cpu::ScoreSet> ScoreDynamicKvGpu(const cpu::PreparedCache& c, const DynamicKvOptions& o,
                                        GpuContext& ctx, const GpuMethodsOptions& mo = {});
Result<cpu::ScoreSet> ScoreH2oGpu(const cpu::PreparedCache& c, const H2oOptions& o,
                                  int64_t head_budget, GpuContext& ctx,
                                  const GpuMethodsOptions& mo = {});
Result<cpu::ScoreSet> ScoreD2oGpu(const cpu::PreparedCache& c, const D2oOptions& o,
                                  int64_t head_budget, GpuContext& ctx,
                                  const GpuMethodsOptions& mo = {});

// ---- Budgets ------------------------------------------------------------------------------------
// As cpu::D2oLayerRatios: sigma_l (min-max variance of the window attention's column sums) on the
// GPU, then cpu::D2oRatiosFromSigma.
Result<std::vector<double>> D2oLayerRatiosGpu(const cpu::PreparedCache& c, const D2oOptions& o,
                                              GpuContext& ctx, const GpuMethodsOptions& mo = {});

// As cpu::DynamicKvLayerBudgets: each head's top candidates (the per-head ragged top-k of
// topk.cuh) on the GPU; the global re-normalisation runs on the host over those candidates only
// (ReducedCandidateSet). REQUIRES: scores.scores.size() == L * H * T.
Result<std::vector<int64_t>> DynamicKvLayerBudgetsGpu(const cpu::ScoreSet& scores,
                                                      const DynamicKvOptions& o, int64_t w,
                                                      int64_t cap, GpuContext& ctx);

// As cpu::AllocateBudgets (every allocator; see above for which parts run where).
Result<cpu::Budgets> AllocateBudgetsGpu(const cpu::PreparedCache& c, const cpu::ScoreSet& scores,
                                        const CompactionSpec& spec, int64_t head_budget,
                                        GpuContext& ctx, const GpuMethodsOptions& mo = {});

// ---- Selection (as cpu::SelectTopK)
// --------------------------------------------------------------- Forced positions first (in
// cpu::SelectTopK's priority), then the top scores, ties to the lower position; NaN ranks lowest.
// One difference: a score of +inf ties with FLT_MAX. REQUIRES (else InvalidArgument):
// scores.scores.size() == L * H * T, T < 2^31.
Result<cpu::Selection> SelectTopKGpu(const cpu::ScoreSet& scores, const cpu::Budgets& budgets,
                                     GpuContext& ctx);

// ---- D2O merge (as cpu::D2oMerge / cpu::D2oMergeRound)
// -------------------------------------------
Result<cpu::LayerResults> D2oMergeGpu(const cpu::PreparedCache& c, const cpu::Selection& sel,
                                      const D2oOptions& o, GpuContext& ctx,
                                      const GpuMethodsOptions& mo = {});
Result<cpu::LayerResults> D2oMergeRoundGpu(const cpu::PreparedCache& c, const cpu::Selection& sel,
                                           const D2oOptions& o,
                                           std::vector<cpu::D2oThreshold>* thresholds,
                                           GpuContext& ctx, const GpuMethodsOptions& mo = {});

// ---- Host helpers (exposed for tests)
// ------------------------------------------------------------ The ScoreSet on which
// cpu::DynamicKvLayerBudgets(reduced, o, w, cap) equals cpu::DynamicKvLayerBudgets(scores, o, w,
// cap): T' = size + w; head b's first `size` entries are its top `size` prefix scores in ascending
// position order (values[b * size + i], NaN already mapped to -inf); the window entries are 0.
// Candidate order (value, layer, head, position) is preserved because positions keep their relative
// order. REQUIRES: size >= 1.
cpu::ScoreSet ReducedCandidateSet(int L, int H, const std::vector<float>& values, int64_t size,
                                  int64_t w);

// cpu::SelectTopK's forced-position priority: the sinks (the run starting at 0) oldest first,
// then the others most recent first; positions outside [0, T) and repeats dropped.
std::vector<int32_t> ForcedPriority(const std::vector<int64_t>& forced, int64_t T);

}  // namespace kvc::cuda
