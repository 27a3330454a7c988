#include "kernels/cpu/compact_stages.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "kernels/cpu/fidelity_eval.h"

namespace kvc::cpu {
namespace {

// SplitMix64: a tiny, fully specified generator, so the split is the same on every platform.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : x_(seed) {}
  uint64_t Next() {
    uint64_t z = (x_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t x_;
};

std::string At(int l, int h) {
  return "layer " + std::to_string(l) + " kv head " + std::to_string(h);
}

// Up to kKeysAsQueriesMax evenly spaced keys of each KV head, spread round-robin over the
// group's query heads: F32 [n_q, per, d].
Tensor KeysAsQueries(const Tensor& k, const KvLayout& lay) {
  const int g = lay.group(), d = lay.head_dim;
  const int64_t T = lay.tokens;
  const int64_t per = std::max<int64_t>(1, std::min<int64_t>(T, kKeysAsQueriesMax) / g);
  const int64_t pooled = per * g;
  Tensor q = Tensor::Empty(DType::kF32, {lay.n_q_heads, per, d});
  for (int hq = 0; hq < lay.n_q_heads; ++hq) {
    const int h = hq / g, r = hq % g;
    const float* src = k.data<float>() + static_cast<size_t>(h) * T * d;
    float* dst = q.data<float>() + static_cast<size_t>(hq) * per * d;
    for (int64_t i = 0; i < per; ++i) {
      const int64_t m = r + i * g;
      const int64_t pos = std::min<int64_t>(T - 1, m * T / pooled);
      std::memcpy(dst + i * d, src + pos * d, sizeof(float) * d);
    }
  }
  return q;
}

}  // namespace

std::vector<int64_t> HeldoutRowsImpl(int64_t rows, double fraction, uint64_t seed) {
  if (!(fraction > 0) || rows < 2) return {};
  const int64_t h =
      std::clamp<int64_t>(std::llround(fraction * static_cast<double>(rows)), 1, rows - 1);
  std::vector<int64_t> perm(static_cast<size_t>(rows));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  SplitMix64 rng(seed);
  for (int64_t i = rows - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng.Next() % static_cast<uint64_t>(i + 1));
    std::swap(perm[i], perm[j]);
  }
  perm.resize(static_cast<size_t>(h));
  std::sort(perm.begin(), perm.end());
  return perm;
}

Tensor GatherQueryRows(const Tensor& q, const std::vector<int64_t>& rows) {
  const int64_t heads = q.dim(0), n = q.dim(1), d = q.dim(2);
  const int64_t m = static_cast<int64_t>(rows.size());
  Tensor out = Tensor::Empty(DType::kF32, {heads, m, d});
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(out.data<float>() + (h * m + i) * d, q.data<float>() + (h * n + rows[i]) * d,
                  sizeof(float) * d);
    }
  }
  return out;
}

namespace {

Result<PreparedLayer> PrepareLayer(const LayerKv& src, const KvLayout& layout,
                                   const std::vector<int64_t>& heldout, bool keys_as_queries) {
  PreparedLayer dst;
  KVC_ASSIGN_OR_RETURN(dst.k, src.k.To(DType::kF32));
  KVC_ASSIGN_OR_RETURN(dst.v, src.v.To(DType::kF32));
  if (src.q_window) {
    KVC_ASSIGN_OR_RETURN(dst.q_window, src.q_window->To(DType::kF32));
  }
  if (src.q_ref) {
    KVC_ASSIGN_OR_RETURN(Tensor q, src.q_ref->To(DType::kF32));
    if (heldout.empty()) {
      dst.q_fit = q;
    } else {
      std::vector<char> is_held(static_cast<size_t>(q.dim(1)), 0);
      for (int64_t r : heldout) is_held[r] = 1;
      std::vector<int64_t> fit;
      for (int64_t r = 0; r < q.dim(1); ++r) {
        if (!is_held[r]) fit.push_back(r);
      }
      dst.q_fit = GatherQueryRows(q, fit);
      dst.q_heldout = GatherQueryRows(q, heldout);
    }
  } else if (keys_as_queries) {
    dst.q_fit = KeysAsQueries(dst.k, layout);
  }
  return dst;
}

}  // namespace

Result<PreparedCache> Prepare(const KvCache& cache, const std::vector<int64_t>& heldout,
                              bool keys_as_queries, ThreadPool* pool) {
  PreparedCache p;
  p.layout = cache.layout;
  p.layers.resize(cache.layers.size());
  auto one = [&](int64_t l) -> Status {
    KVC_ASSIGN_OR_RETURN(p.layers[l],
                         PrepareLayer(cache.layers[l], cache.layout, heldout, keys_as_queries));
    return Status::OK();
  };
  const int64_t L = static_cast<int64_t>(cache.layers.size());
  if (pool) {
    KVC_RETURN_IF_ERROR(pool->ParallelFor(L, one));
  } else {
    for (int64_t l = 0; l < L; ++l) KVC_RETURN_IF_ERROR(one(l));
  }
  return p;
}

Status CheckBudgets(const Budgets& budgets, const KvLayout& layout, int64_t head_budget) {
  const int L = layout.n_layers, H = layout.n_kv_heads;
  if (static_cast<int>(budgets.size()) != L) {
    return Status::Internal("budget allocation returned " + std::to_string(budgets.size()) +
                            " layers, expected " + std::to_string(L));
  }
  int64_t sum = 0;
  for (int l = 0; l < L; ++l) {
    if (static_cast<int>(budgets[l].size()) != H) {
      return Status::Internal("budget allocation: layer " + std::to_string(l) + " has " +
                              std::to_string(budgets[l].size()) + " heads");
    }
    for (int h = 0; h < H; ++h) {
      if (budgets[l][h] < 0 || budgets[l][h] > layout.tokens) {
        return Status::Internal("budget allocation: " + At(l, h) + " budget " +
                                std::to_string(budgets[l][h]) + " outside [0, T]");
      }
      sum += budgets[l][h];
    }
  }
  const int64_t want = int64_t{L} * H * head_budget;
  if (sum != want) {
    return Status::Internal("budget allocation total " + std::to_string(sum) + " != L*H*budget " +
                            std::to_string(want));
  }
  return Status::OK();
}

Status CheckSelection(const Selection& sel, const Budgets& budgets, const KvLayout& layout) {
  if (sel.size() != budgets.size()) return Status::Internal("selection: wrong layer count");
  for (size_t l = 0; l < sel.size(); ++l) {
    if (sel[l].size() != budgets[l].size()) return Status::Internal("selection: wrong head count");
    for (size_t h = 0; h < sel[l].size(); ++h) {
      const auto& s = sel[l][h];
      bool ok = static_cast<int64_t>(s.size()) == budgets[l][h];
      for (size_t i = 0; ok && i < s.size(); ++i) {
        ok = s[i] >= 0 && s[i] < layout.tokens && (i == 0 || s[i] > s[i - 1]);
      }
      if (!ok) {
        return Status::Internal("selection: " + At(int(l), int(h)) + " has " +
                                std::to_string(s.size()) + " positions for budget " +
                                std::to_string(budgets[l][h]) + " or is not sorted/unique");
      }
    }
  }
  return Status::OK();
}

Status CheckResults(const LayerResults& results, const Budgets& budgets, const KvLayout& layout) {
  if (results.size() != budgets.size()) return Status::Internal("post step: wrong layer count");
  const size_t d = static_cast<size_t>(layout.head_dim);
  for (size_t l = 0; l < results.size(); ++l) {
    if (results[l].size() != budgets[l].size()) {
      return Status::Internal("post step: wrong head count in layer " + std::to_string(l));
    }
    for (size_t h = 0; h < results[l].size(); ++h) {
      const HeadResult& r = results[l][h];
      const size_t t = r.positions.size();
      if (static_cast<int64_t>(t) != budgets[l][h] || r.k.size() != t * d || r.v.size() != t * d ||
          r.beta.size() != t) {
        return Status::Internal(
            "post step: " + At(int(l), int(h)) + " returned " + std::to_string(t) + " entries (k " +
            std::to_string(r.k.size()) + ", v " + std::to_string(r.v.size()) + ", beta " +
            std::to_string(r.beta.size()) + ") for budget " + std::to_string(budgets[l][h]));
      }
    }
  }
  return Status::OK();
}

Result<CompactedCache> Assemble(const KvLayout& layout, const LayerResults& results) {
  CompactedCache out;
  out.layout = layout;
  const int d = layout.head_dim;
  for (size_t l = 0; l < results.size(); ++l) {
    CompactedLayer cl;
    cl.offsets.push_back(0);
    for (const HeadResult& r : results[l]) {
      cl.offsets.push_back(cl.offsets.back() + static_cast<int64_t>(r.positions.size()));
    }
    const int64_t total = cl.offsets.back();
    std::vector<float> k, v, beta;
    k.reserve(static_cast<size_t>(total) * d);
    v.reserve(static_cast<size_t>(total) * d);
    for (const HeadResult& r : results[l]) {
      k.insert(k.end(), r.k.begin(), r.k.end());
      v.insert(v.end(), r.v.begin(), r.v.end());
      beta.insert(beta.end(), r.beta.begin(), r.beta.end());
    }
    cl.k = Tensor::Empty(layout.dtype, {total, d});
    cl.v = Tensor::Empty(layout.dtype, {total, d});
    ConvertBuffer(DType::kF32, k.data(), layout.dtype, cl.k.raw(), k.size());
    ConvertBuffer(DType::kF32, v.data(), layout.dtype, cl.v.raw(), v.size());
    cl.beta = Tensor::Empty(DType::kF32, {total});
    if (total > 0) std::memcpy(cl.beta.raw(), beta.data(), sizeof(float) * beta.size());
    if (!cl.k.AllFinite() || !cl.v.AllFinite()) {
      return Status::Internal("layer " + std::to_string(l) +
                              ": a compacted key or value is not "
                              "finite in " +
                              DTypeName(layout.dtype) +
                              " (a fitted value beyond the dtype's range?)");
    }
    out.layers.push_back(std::move(cl));
  }
  Status st = out.Validate();
  if (!st.ok()) return Status::Internal("assembled cache is invalid: " + st.ToString());
  return out;
}

Result<FidelityReport> FidelityOnHeldout(const PreparedCache& p, const CompactedCache& compacted,
                                         ThreadPool& pool) {
  std::vector<Tensor> k, v, q;
  for (const PreparedLayer& l : p.layers) {
    if (!l.q_heldout) return Status::Internal("fidelity: no held-out queries");
    k.push_back(l.k);
    v.push_back(l.v);
    q.push_back(*l.q_heldout);
  }
  return EvaluateFidelityF32(p.layout, k, v, compacted, q, pool);
}

}  // namespace kvc::cpu
