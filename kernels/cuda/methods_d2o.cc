// D2O's merge on the GPU (methods.h: D2oMergeGpu, D2oMergeRoundGpu), batched over chunks of whole
// layers: match and per-layer statistics on the device, the EMA threshold on the host
// (cpu::D2oThreshold, one small download per chunk), then the merge on the device.
#include <algorithm>
#include <limits>
#include <string>

#include "kernels/cpu/attention_scores.h"
#include "kernels/cuda/d2o_merge.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/methods.h"
#include "kernels/cuda/ragged.h"

namespace kvc::cuda {
namespace {

// Kept and evicted positions of layers [l0, l0 + lc), flat and ragged per head. A head that keeps
// nothing evicts nothing (the CPU has nothing to merge into); with merging off nothing is
// matched at all.
struct ChunkPositions {
  std::vector<int32_t> kept, evicted;
  std::vector<int64_t> kept_counts, evicted_counts;
};

ChunkPositions SplitPositions(const cpu::PreparedCache& c, const cpu::Selection& sel, int l0,
                              int lc, bool merge) {
  ChunkPositions p;
  const int64_t T = c.T();
  std::vector<char> is_kept(static_cast<size_t>(T));
  for (int l = l0; l < l0 + lc; ++l) {
    for (const std::vector<int64_t>& kept : sel[size_t(l)]) {
      p.kept_counts.push_back(int64_t(kept.size()));
      for (int64_t q : kept) p.kept.push_back(int32_t(q));
      int64_t n_ev = 0;
      if (merge && !kept.empty()) {
        std::fill(is_kept.begin(), is_kept.end(), 0);
        for (int64_t q : kept) is_kept[size_t(q)] = 1;
        for (int64_t e = 0; e < T; ++e) {
          if (is_kept[size_t(e)]) continue;
          p.evicted.push_back(int32_t(e));
          ++n_ev;
        }
      }
      p.evicted_counts.push_back(n_ev);
    }
  }
  return p;
}

// Device copies of one chunk.
struct ChunkDevice {
  DeviceBuffer k, v, kept, evicted;
  RaggedLayout kept_layout, evicted_layout;
};

Result<ChunkDevice> UploadChunk(const cpu::PreparedCache& c, const ChunkPositions& p, int l0,
                                int lc, GpuContext& ctx) {
  const cudaStream_t st = ctx.stream();
  const size_t layer_elems = size_t(c.layout.n_kv_heads) * size_t(c.T()) * size_t(c.d());
  ChunkDevice dev;
  KVC_ASSIGN_OR_RETURN(dev.k, ctx.pool().AllocateArray<float>(layer_elems * size_t(lc)));
  KVC_ASSIGN_OR_RETURN(dev.v, ctx.pool().AllocateArray<float>(layer_elems * size_t(lc)));
  for (int i = 0; i < lc; ++i) {
    const cpu::PreparedLayer& layer = c.layers[size_t(l0 + i)];
    KVC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dev.k.as<float>() + i * layer_elems, layer.k.data<float>(),
                        layer_elems * sizeof(float), cudaMemcpyHostToDevice, st),
        "d2o merge: upload K");
    KVC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dev.v.as<float>() + i * layer_elems, layer.v.data<float>(),
                        layer_elems * sizeof(float), cudaMemcpyHostToDevice, st),
        "d2o merge: upload V");
  }
  KVC_ASSIGN_OR_RETURN(dev.kept, Upload(p.kept, ctx.pool(), st));
  KVC_ASSIGN_OR_RETURN(dev.evicted, Upload(p.evicted, ctx.pool(), st));
  KVC_ASSIGN_OR_RETURN(dev.kept_layout, RaggedLayout::FromCounts(p.kept_counts, ctx.pool(), st));
  KVC_ASSIGN_OR_RETURN(dev.evicted_layout,
                       RaggedLayout::FromCounts(p.evicted_counts, ctx.pool(), st));
  return dev;
}

// tau_l per layer of the chunk from the device statistics (cpu::D2oThreshold, as MergeLayer).
Result<std::vector<double>> Thresholds(const DeviceBuffer& stats, int l0, int lc,
                                       const D2oOptions& o,
                                       std::vector<cpu::D2oThreshold>* thresholds,
                                       cudaStream_t st) {
  KVC_ASSIGN_OR_RETURN(std::vector<double> host, Download(stats.as<double>(), size_t(2 * lc), st));
  std::vector<double> tau(static_cast<size_t>(lc));
  for (int i = 0; i < lc; ++i) {
    const double sum = host[size_t(2 * i)];
    const int64_t positions = std::llround(host[size_t(2 * i + 1)]);
    tau[size_t(i)] = positions > 0 && o.merge
                         ? (*thresholds)[size_t(l0 + i)].Update(sum / double(positions), o)
                         : std::numeric_limits<double>::infinity();
  }
  return tau;
}

// Downloads the merged rows and cuts them into HeadResults.
Status Assemble(const cpu::PreparedCache& c, const cpu::Selection& sel, int l0, int lc,
                const RaggedLayout& kept, const DeviceBuffer& out_k, const DeviceBuffer& out_v,
                cpu::LayerResults* out, cudaStream_t st) {
  const int H = c.layout.n_kv_heads;
  const size_t d = size_t(c.d());
  const size_t n = size_t(kept.total()) * d;
  std::vector<float> k, v;
  if (n > 0) {
    KVC_ASSIGN_OR_RETURN(k, Download(out_k.as<float>(), n, st));
    KVC_ASSIGN_OR_RETURN(v, Download(out_v.as<float>(), n, st));
  }
  for (int i = 0; i < lc; ++i) {
    (*out)[size_t(l0 + i)].resize(size_t(H));
    for (int h = 0; h < H; ++h) {
      const int64_t b = int64_t(i) * H + h;
      cpu::HeadResult& r = (*out)[size_t(l0 + i)][size_t(h)];
      r.positions = sel[size_t(l0 + i)][size_t(h)];
      const size_t first = size_t(kept.offset(b)) * d, last = size_t(kept.offset(b + 1)) * d;
      r.k.assign(k.begin() + first, k.begin() + last);
      r.v.assign(v.begin() + first, v.begin() + last);
      r.beta.assign(r.positions.size(), 0.0f);
    }
  }
  return Status::OK();
}

// One chunk of layers: upload, match, statistics, thresholds, merge, download.
Status MergeChunk(const cpu::PreparedCache& c, const cpu::Selection& sel, const D2oOptions& o,
                  int l0, int lc, std::vector<cpu::D2oThreshold>* thresholds,
                  cpu::LayerResults* out, GpuContext& ctx) {
  const cudaStream_t st = ctx.stream();
  const ChunkPositions pos = SplitPositions(c, sel, l0, lc, o.merge);
  KVC_ASSIGN_OR_RETURN(ChunkDevice dev, UploadChunk(c, pos, l0, lc, ctx));
  D2oMergeBatch m;
  m.k = dev.k.as<float>();
  m.v = dev.v.as<float>();
  m.layers = lc;
  m.heads = c.layout.n_kv_heads;
  m.tokens = c.T();
  m.dim = c.d();
  m.kept = dev.kept.as<int32_t>();
  m.evicted = dev.evicted.as<int32_t>();
  m.kept_layout = &dev.kept_layout;
  m.evicted_layout = &dev.evicted_layout;
  const size_t n_ev = pos.evicted.size();
  KVC_ASSIGN_OR_RETURN(DeviceBuffer s, ctx.pool().AllocateArray<float>(n_ev));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer target, ctx.pool().AllocateArray<int32_t>(n_ev));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer mean, ctx.pool().AllocateArray<double>(size_t(lc) * c.T()));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer stats, ctx.pool().AllocateArray<double>(size_t(2 * lc)));
  KVC_RETURN_IF_ERROR(
      MatchEvicted(m, s.as<float>(), target.as<int32_t>(), ctx.cublas(), ctx.pool(), st));
  KVC_RETURN_IF_ERROR(EvictedMeanSimilarity(m, s.as<float>(), mean.as<double>(), stats.as<double>(),
                                            ctx.pool(), st));
  KVC_ASSIGN_OR_RETURN(std::vector<double> tau, Thresholds(stats, l0, lc, o, thresholds, st));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer dev_tau, Upload(tau, ctx.pool(), st));
  const size_t out_elems = pos.kept.size() * size_t(c.d());
  KVC_ASSIGN_OR_RETURN(DeviceBuffer out_k, ctx.pool().AllocateArray<float>(out_elems));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer out_v, ctx.pool().AllocateArray<float>(out_elems));
  KVC_RETURN_IF_ERROR(MergeEvicted(m, s.as<float>(), target.as<int32_t>(), mean.as<double>(),
                                   dev_tau.as<double>(), out_k.as<float>(), out_v.as<float>(),
                                   ctx.pool(), st));
  return Assemble(c, sel, l0, lc, dev.kept_layout, out_k, out_v, out, st);
}

}  // namespace

Result<cpu::LayerResults> D2oMergeRoundGpu(const cpu::PreparedCache& c, const cpu::Selection& sel,
                                           const D2oOptions& o,
                                           std::vector<cpu::D2oThreshold>* thresholds,
                                           GpuContext& ctx, const GpuMethodsOptions& mo) {
  KVC_RETURN_IF_ERROR(cpu::CheckPrepared(c));
  KVC_RETURN_IF_ERROR(cpu::CheckD2oSelection(c, sel));
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads;
  if (thresholds->empty()) thresholds->resize(size_t(L));
  if (static_cast<int>(thresholds->size()) != L) {
    return Status::InvalidArgument("d2o merge: one threshold per layer is required");
  }
  const int64_t T = c.T(), d = c.d();
  if (H > 65535 || int64_t(H) * T >= (int64_t(1) << 31) || d > 65536) {
    return Status::InvalidArgument("d2o merge (GPU): needs H <= 65535, H * T < 2^31, d <= 65536");
  }
  // Whole layers per chunk: K and V, and the gathered keys, of about merge_bytes each.
  const int64_t layer_bytes = int64_t(sizeof(float)) * H * T * d;
  int64_t per_chunk =
      std::max<int64_t>(1, int64_t(mo.merge_bytes) / std::max<int64_t>(layer_bytes, 1));
  per_chunk = std::min<int64_t>({per_chunk, L, 65535 / H, ((int64_t(1) << 31) - 1) / (H * T)});
  per_chunk = std::max<int64_t>(per_chunk, 1);
  cpu::LayerResults out(static_cast<size_t>(L));
  for (int l0 = 0; l0 < L; l0 += int(per_chunk)) {
    const int lc = int(std::min<int64_t>(per_chunk, L - l0));
    KVC_RETURN_IF_ERROR(MergeChunk(c, sel, o, l0, lc, thresholds, &out, ctx));
  }
  return out;
}

Result<cpu::LayerResults> D2oMergeGpu(const cpu::PreparedCache& c, const cpu::Selection& sel,
                                      const D2oOptions& o, GpuContext& ctx,
                                      const GpuMethodsOptions& mo) {
  std::vector<cpu::D2oThreshold> fresh;
  return D2oMergeRoundGpu(c, sel, o, &fresh, ctx, mo);
}

}  // namespace kvc::cuda
