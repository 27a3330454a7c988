#include "services/cli/batch_group.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <utility>

namespace kvc::cli {
namespace {

std::string GroupName(const LayerGroup& g) {
  return "layers [" + std::to_string(g.first) + ", " + std::to_string(g.first + g.count) + ")";
}

bool Cancelled(const GroupHooks& hooks) {
  return hooks.cancel != nullptr && hooks.cancel->load(std::memory_order_relaxed);
}

uint64_t KvBytes(const KvLayout& lay, int layers, int64_t tokens) {
  return static_cast<uint64_t>(layers) * 2 * lay.n_kv_heads * tokens * lay.head_dim *
         DTypeSize(lay.dtype);
}

std::vector<int64_t> HeldoutFor(const DumpInfo& info, const CompactionSpec& spec) {
  if (info.shape.q_ref_rows == 0) return {};
  return HeldoutRows(info.shape.q_ref_rows, spec.heldout_fraction, spec.seed);
}

// Per-head accumulation of the kept entries of one layer over the chunks.
struct LayerAccumulator {
  std::vector<std::vector<uint8_t>> k, v;  // per head, rows of head_dim elements
  std::vector<std::vector<float>> beta;

  void Append(const CompactedLayer& x, size_t row_bytes) {
    const int H = static_cast<int>(x.offsets.size()) - 1;
    k.resize(H), v.resize(H), beta.resize(H);
    for (int h = 0; h < H; ++h) {
      const int64_t a = x.offsets[h], b = x.offsets[h + 1];
      const auto* kp = static_cast<const uint8_t*>(x.k.raw());
      const auto* vp = static_cast<const uint8_t*>(x.v.raw());
      k[h].insert(k[h].end(), kp + a * row_bytes, kp + b * row_bytes);
      v[h].insert(v[h].end(), vp + a * row_bytes, vp + b * row_bytes);
      beta[h].insert(beta[h].end(), x.beta.data<float>() + a, x.beta.data<float>() + b);
    }
  }

  CompactedLayer Build(const KvLayout& lay) {
    const size_t row_bytes = static_cast<size_t>(lay.head_dim) * DTypeSize(lay.dtype);
    CompactedLayer out;
    out.offsets.assign(1, 0);
    for (int h = 0; h < lay.n_kv_heads; ++h) {
      const int64_t n =
          h < static_cast<int>(beta.size()) ? static_cast<int64_t>(beta[h].size()) : 0;
      out.offsets.push_back(out.offsets.back() + n);
    }
    const int64_t total = out.offsets.back();
    out.k = Tensor::Empty(lay.dtype, {total, lay.head_dim});
    out.v = Tensor::Empty(lay.dtype, {total, lay.head_dim});
    out.beta = Tensor::Empty(DType::kF32, {total});
    for (size_t h = 0; h < beta.size(); ++h) {
      const int64_t a = out.offsets[h];
      if (beta[h].empty()) continue;
      std::memcpy(static_cast<uint8_t*>(out.k.raw()) + a * row_bytes, k[h].data(), k[h].size());
      std::memcpy(static_cast<uint8_t*>(out.v.raw()) + a * row_bytes, v[h].data(), v[h].size());
      std::memcpy(out.beta.data<float>() + a, beta[h].data(), beta[h].size() * sizeof(float));
    }
    return out;
  }
};

// Every chunk of the group at head budget `hb`, concatenated per head.
Result<std::vector<CompactedLayer>> CompactChunks(const DumpFile& dump, const DocumentPlan& plan,
                                                  const LayerGroup& g, int64_t hb,
                                                  const std::vector<int64_t>& fit_rows, bool report,
                                                  const GroupHooks& hooks) {
  const KvLayout& lay = dump.info().layout();
  const size_t row_bytes = static_cast<size_t>(lay.head_dim) * DTypeSize(lay.dtype);
  const std::vector<int64_t>& bounds = plan.chunk_bounds;
  const std::vector<int64_t> budgets = ChunkBudgets(bounds, hb);
  std::vector<LayerAccumulator> acc(g.count);
  for (size_t c = 0; c + 1 < bounds.size(); ++c) {
    if (Cancelled(hooks)) return Status::Cancelled("interrupted");
    if (budgets[c] > 0) {
      KVC_ASSIGN_OR_RETURN(KvCache chunk,
                           dump.Chunk(g.first, g.count, bounds[c], bounds[c + 1], fit_rows));
      CompactionSpec s = g.spec;
      s.budget = budgets[c];
      s.heldout_fraction = 0;  // the held-out rows were removed from q_ref above
      s.gate.min_cosine = 0;   // the gate applies to the whole context, below
      Result<CompactionResult> r = Compact(chunk, s);
      if (!r.ok()) {
        return r.status().WithContext(GroupName(g) + ", tokens [" + std::to_string(bounds[c]) +
                                      ", " + std::to_string(bounds[c + 1]) + ")");
      }
      for (int l = 0; l < g.count; ++l) acc[l].Append(r->cache.layers[l], row_bytes);
    }
    if (report && hooks.progress) hooks.progress(KvBytes(lay, g.count, bounds[c + 1] - bounds[c]));
  }
  std::vector<CompactedLayer> out;
  for (LayerAccumulator& a : acc) out.push_back(a.Build(lay));
  return out;
}

// A view of rows [a, b) of a [rows, d] tensor (or [rows] when d == 0).
Tensor RowView(const Tensor& t, int64_t a, int64_t b, int64_t d) {
  const size_t row = static_cast<size_t>(std::max<int64_t>(d, 1)) * DTypeSize(t.dtype());
  auto* p = static_cast<uint8_t*>(const_cast<void*>(t.raw())) + a * row;
  return Tensor::View(t.dtype(), d > 0 ? Shape{b - a, d} : Shape{b - a}, p, nullptr);
}

// Held-out fidelity of one kv head of one layer against the whole context.
Result<std::vector<HeadFidelity>> HeadFidelityOf(const DumpFile& dump, int layer, int h,
                                                 const CompactedLayer& comp,
                                                 const std::vector<int64_t>& held, int threads) {
  KVC_ASSIGN_OR_RETURN(KvCache full, dump.Layers(layer, 1));  // a fresh mapping per head
  const KvLayout& lay = full.layout;
  const int g = lay.group();
  const int64_t T = lay.tokens, d = lay.head_dim;
  KvLayout one{1, 1, g, lay.head_dim, lay.dtype, T};
  const size_t head_bytes = static_cast<size_t>(T * d) * DTypeSize(lay.dtype);
  KvCache f;
  f.layout = one;
  LayerKv x;
  x.k = Tensor::View(lay.dtype, {1, T, d},
                     static_cast<uint8_t*>(full.layers[0].k.raw()) + h * head_bytes, nullptr);
  x.v = Tensor::View(lay.dtype, {1, T, d},
                     static_cast<uint8_t*>(full.layers[0].v.raw()) + h * head_bytes, nullptr);
  f.layers.push_back(std::move(x));
  const Tensor& q = *full.layers[0].q_ref;
  const Tensor qh = GatherRows(q, held);  // [n_q, N_heldout, d]
  const size_t qbytes = static_cast<size_t>(held.size() * d) * DTypeSize(q.dtype());
  Tensor queries =
      Tensor::View(q.dtype(), {g, static_cast<int64_t>(held.size()), d},
                   static_cast<uint8_t*>(const_cast<void*>(qh.raw())) + h * g * qbytes, nullptr);
  CompactedCache c;
  c.layout = one;
  CompactedLayer cl;
  const int64_t a = comp.offsets[h], b = comp.offsets[h + 1];
  cl.k = RowView(comp.k, a, b, d);
  cl.v = RowView(comp.v, a, b, d);
  cl.beta = RowView(comp.beta, a, b, 0);
  cl.offsets = {0, b - a};
  c.layers.push_back(std::move(cl));
  KVC_ASSIGN_OR_RETURN(FidelityReport rep, EvaluateFidelity(f, c, {queries}, threads));
  for (HeadFidelity& hf : rep.heads) {
    hf.layer = layer;
    hf.q_head += h * g;
    hf.kv_head = h;
  }
  return rep.heads;
}

// Chunked path (also used for groups with budget 0): see the header.
Result<GroupResult> CompactByChunks(const DumpFile& dump, const DocumentPlan& plan,
                                    const LayerGroup& g, const GroupHooks& hooks) {
  const DumpInfo& info = dump.info();
  const int64_t T = info.layout().tokens;
  const std::vector<int64_t> held = HeldoutFor(info, g.spec);
  const std::vector<int64_t> fit = FitRows(info.shape.q_ref_rows, held);
  GroupResult res;
  res.gate.requested = g.spec.gate.min_cosine > 0;
  res.gate.min_cosine = g.spec.gate.min_cosine;
  int64_t hb = g.head_budget;
  for (;;) {
    KVC_ASSIGN_OR_RETURN(res.layers,
                         CompactChunks(dump, plan, g, hb, fit, res.gate.rounds == 0, hooks));
    res.gate.rounds += 1;
    res.gate.budgets_tried.push_back(hb);
    res.heads.clear();
    double sum = 0;
    for (int l = 0; !held.empty() && l < g.count; ++l) {
      for (int h = 0; h < info.layout().n_kv_heads; ++h) {
        if (Cancelled(hooks)) return Status::Cancelled("interrupted");
        KVC_ASSIGN_OR_RETURN(
            std::vector<HeadFidelity> f,
            HeadFidelityOf(dump, g.first + l, h, res.layers[l], held, plan.threads));
        for (const HeadFidelity& x : f) sum += x.cosine;
        res.heads.insert(res.heads.end(), f.begin(), f.end());
      }
    }
    res.heldout_per_head = static_cast<int64_t>(held.size());
    if (!res.heads.empty()) res.gate.cosines.push_back(sum / static_cast<double>(res.heads.size()));
    if (!res.gate.requested) break;
    res.gate.passed = !res.gate.cosines.empty() && res.gate.cosines.back() >= res.gate.min_cosine;
    if (res.gate.passed || res.gate.rounds > g.spec.gate.max_rounds || hb >= T) break;
    const auto raised =
        static_cast<int64_t>(std::ceil(static_cast<double>(hb) * g.spec.gate.escalation));
    hb = std::min(T, std::max(hb + 1, raised));
  }
  return res;
}

Result<GroupResult> CompactWhole(const DumpFile& dump, const LayerGroup& g,
                                 const GroupHooks& hooks) {
  if (Cancelled(hooks)) return Status::Cancelled("interrupted");
  KVC_ASSIGN_OR_RETURN(KvCache cache, dump.Layers(g.first, g.count));
  Result<CompactionResult> r = Compact(cache, g.spec);
  if (!r.ok()) return r.status().WithContext(GroupName(g));
  GroupResult res;
  res.layers = std::move(r->cache.layers);
  res.gate = r->gate;
  if (r->fidelity) {
    res.heldout_per_head = r->fidelity->queries_per_head;
    for (HeadFidelity h : r->fidelity->heads) {
      h.layer += g.first;
      res.heads.push_back(h);
    }
  }
  if (hooks.progress) hooks.progress(KvBytes(cache.layout, g.count, cache.layout.tokens));
  return res;
}

}  // namespace

std::vector<int64_t> FitRows(int64_t rows, const std::vector<int64_t>& heldout) {
  std::vector<int64_t> out;
  size_t j = 0;
  for (int64_t i = 0; i < rows; ++i) {
    if (j < heldout.size() && heldout[j] == i) {
      ++j;
    } else {
      out.push_back(i);
    }
  }
  return out;
}

Result<GroupResult> CompactGroup(const DumpFile& dump, const DocumentPlan& plan,
                                 const LayerGroup& group, const GroupHooks& hooks) {
  if (!plan.chunked() && group.head_budget > 0) return CompactWhole(dump, group, hooks);
  return CompactByChunks(dump, plan, group, hooks);
}

}  // namespace kvc::cli
