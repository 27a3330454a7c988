// GpuBackend: the ComputeBackend (kernels/backend.h) over the CUDA kernels, on every local GPU.
//
// What runs on the GPU (everything else answers NotSupported, so the front runs the CPU
// function for that stage):
//   - AttentionMatchingFit for highest-attention, OMP and OMP-fast selection (sel empty) and for
//     a fixed selection (AmSelection::kScores: the selection goes to AmFit as a 0/1 selector, so
//     exactly those keys are kept), with beta and values fitting on or off (am_fit.h). Not on
//     the GPU: refine_rounds > 0.
//   - ScoreHighestAttention (AM's scores when the allocator needs them).
//   - ComputeScores for SnapKV / PyramidKV, DynamicKV, H2O and D2O (methods.h; layers sharded
//     across the devices) and OK-DMD (okdmd.h; on the first device); StreamingLLM stays on
//     the CPU (it reads no attention).
//   - D2oMerge (methods.h D2oMergeGpu; on the first device: thresholds run across layers).
//   - AllocateBudgets for DynamicKV and D2O (methods.h AllocateBudgetsGpu; first device, over
//     the all-gathered scores).
// Per layer, the KV heads are one batch (pooled GQA queries: kv head h reads q_fit heads
// h*g..h*g+g-1, contiguous, so a layer's q_fit is [H, g*N, d] as is); a batch that runs out of
// device memory is halved and retried down to one head (GpuBackendOptions::max_batch_heads caps
// it from the start). Results are downloaded into cpu::LayerResults / cpu::ScoreSet.
//
// Several GPUs: one GpuContext per device and an NCCL communicator over them (nccl_comm.h; size
// one with one GPU). Layer l runs on device l mod D, one host thread per device. Scores are
// all-gathered with ncclAllGather so that every device, and then the host, holds the full
// [L, H, T] set that budget allocation reads.
//
// Numerics: f32 throughout (TF32 score products with GpuBackendOptions::tf32). The AM fit
// follows am_fit.h with the CPU front's ridge towards the kept values (values_toward_kept), but
// not its range safeguard (ridge escalation when fitted values leave 4x the head's |V| range):
// held-out cosine agrees with the CPU front within about 5e-3, and for a fixed selection the
// kept positions are identical. GPU OMP-fast refits by projected gradient only (am_omp.h), so
// its picks differ from the CPU's. Results are not bit-identical to the CPU's.
//
// Thread safety: every method may be called from any thread; calls are serialised by one mutex
// (a call uses all of the backend's GpuContexts and its communicator together, and a
// GpuContext takes one call at a time). Concurrent compactions sharing a backend take turns on
// the GPU stages while their CPU stages run in parallel.
// Ownership: the backend owns its contexts and communicator; inputs are borrowed for the call.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "common/status.h"
#include "kernels/backend.h"
#include "kernels/backend_factory.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/nccl_comm.h"

namespace kvc::cuda {

class GpuBackend final : public ComputeBackend {
 public:
  // Creates a context on every device of options.devices (all devices when empty) and the
  // communicator over them. Errors as kvc::MakeGpuBackend (kernels/backend_factory.h).
  static Result<std::unique_ptr<GpuBackend>> Create(const GpuBackendOptions& options);
  ~GpuBackend() override;
  GpuBackend(const GpuBackend&) = delete;
  GpuBackend& operator=(const GpuBackend&) = delete;

  const char* name() const override { return "cuda"; }
  // Devices in use (rank r is devices()[r]).
  const std::vector<int>& devices() const { return devices_; }

  Result<cpu::ScoreSet> ComputeScores(const cpu::PreparedCache& c, const CompactionSpec& spec,
                                      int64_t head_budget) override;
  Result<cpu::ScoreSet> ScoreHighestAttention(const cpu::PreparedCache& c) override;
  Result<cpu::LayerResults> AttentionMatchingFit(const cpu::PreparedCache& c,
                                                 const cpu::Selection& sel,
                                                 const cpu::Budgets& budgets,
                                                 const AmOptions& o) override;
  Result<cpu::LayerResults> D2oMerge(const cpu::PreparedCache& c, const cpu::Selection& sel,
                                     const D2oOptions& o) override;
  // DynamicKV's and D2O's allocators (their statistics on the first device, methods.h
  // AllocateBudgetsGpu); the others are plain arithmetic and answer NotSupported.
  Result<cpu::Budgets> AllocateBudgets(const cpu::PreparedCache& c, const cpu::ScoreSet& scores,
                                       const CompactionSpec& spec, int64_t head_budget) override;

  // The score all-gather on its own, for tests: rank r contributes `per_rank[r]` (host floats,
  // every entry the same length); returns what rank `read_rank` received (size() * length
  // floats, rank order). InvalidArgument for mismatched lengths or a bad rank.
  Result<std::vector<float>> AllGatherForTest(const std::vector<std::vector<float>>& per_rank,
                                              int read_rank);

 private:
  // Computes one layer's [H, T] scores into device memory of the given context.
  using LayerScorer =
      std::function<Status(const cpu::PreparedCache& c, int layer, GpuContext& ctx, float* scores)>;

  // A GPU scorer that returns host scores for a cache (whole-cache entry points of the method
  // kernels); ShardedHostScores runs it on each layer's one-layer sub-cache.
  using HostScorer =
      std::function<Result<cpu::ScoreSet>(const cpu::PreparedCache& one_layer, GpuContext& ctx)>;

  GpuBackend() = default;
  // Runs fn(rank, ctx) for every rank, one host thread per device with that device current;
  // the first error in rank order wins. REQUIRES: mu_ held.
  Status ForEachDevice(const std::function<Status(int rank, GpuContext& ctx)>& fn);
  // Scores of every layer, layer l computed on rank l mod D, then all-gathered. REQUIRES: mu_.
  Result<cpu::ScoreSet> ShardedScores(const cpu::PreparedCache& c, const LayerScorer& scorer,
                                      std::vector<int64_t> forced);
  // ShardedScores over a HostScorer: each layer's [1, H, T] result is copied into its shard;
  // the forced positions are layer 0's. REQUIRES: mu_ held.
  Result<cpu::ScoreSet> ShardedHostScores(const cpu::PreparedCache& c, const HostScorer& scorer);
  // All-gathers `count` floats from send[r] into recv[r] (size() * count) on every rank and
  // synchronises every stream. REQUIRES: mu_ held; buffers from the ranks' pools.
  Status GatherAndSync(const std::vector<DeviceBuffer>& send, const std::vector<DeviceBuffer>& recv,
                       size_t count);

  GpuBackendOptions options_;
  std::vector<int> devices_;
  std::vector<std::unique_ptr<GpuContext>> contexts_;  // one per rank
  std::unique_ptr<NcclComms> comms_;                   // destroyed before the contexts
  std::mutex mu_;
};

}  // namespace kvc::cuda
