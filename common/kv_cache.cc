#include "common/kv_cache.h"

#include <limits>

namespace kvc {
namespace {

constexpr int kMaxLayers = 1024;
constexpr int kMaxHeads = 1024;
constexpr int kMaxHeadDim = 1024;
constexpr int64_t kMaxTokens = int64_t{1} << 24;

std::string Where(int layer, const char* name) {
  return "layers." + std::to_string(layer) + "." + name;
}

Status CheckTensor(const Tensor& t, const Shape& want, const char* name, int layer,
                   std::optional<DType> dtype, bool check_finite) {
  if (dtype && t.dtype() != *dtype) {
    return Status::InvalidArgument(Where(layer, name) + ": dtype " + DTypeName(t.dtype()) +
                                   ", expected " + DTypeName(*dtype));
  }
  if (!IsFloating(t.dtype())) {
    return Status::InvalidArgument(Where(layer, name) + ": dtype " + DTypeName(t.dtype()) +
                                   " is not floating");
  }
  if (t.shape() != want) {
    return Status::InvalidArgument(Where(layer, name) + ": shape " + ShapeToString(t.shape()) +
                                   ", expected " + ShapeToString(want));
  }
  int64_t bad = 0;
  if (check_finite && !t.AllFinite(&bad)) {
    return Status::InvalidArgument(Where(layer, name) + ": non-finite value (NaN or Inf) at flat index " +
                                   std::to_string(bad));
  }
  return Status::OK();
}

Status CheckQueries(const std::optional<Tensor>& q, const std::optional<Tensor>& first,
                    const KvLayout& L, const char* name, int layer, bool check_finite) {
  if (q.has_value() != first.has_value()) {
    return Status::InvalidArgument(Where(layer, name) + ": present in some layers only");
  }
  if (!q) return Status::OK();
  if (q->rank() != 3) {
    return Status::InvalidArgument(Where(layer, name) + ": rank " + std::to_string(q->rank()) +
                                   ", expected 3 [n_q_heads, N, head_dim]");
  }
  const Shape want{L.n_q_heads, first->dim(1), L.head_dim};
  if (q->dim(1) <= 0) return Status::InvalidArgument(Where(layer, name) + ": zero queries");
  return CheckTensor(*q, want, name, layer, std::nullopt, check_finite);
}

}  // namespace

Status KvLayout::Validate() const {
  auto bad = [&](const std::string& m) { return Status::InvalidArgument("layout " + ToString() + ": " + m); };
  if (n_layers <= 0 || n_layers > kMaxLayers) return bad("n_layers out of range (1..1024)");
  if (n_kv_heads <= 0 || n_kv_heads > kMaxHeads) return bad("n_kv_heads out of range (1..1024)");
  if (n_q_heads <= 0 || n_q_heads > kMaxHeads) return bad("n_q_heads out of range (1..1024)");
  if (n_q_heads % n_kv_heads != 0) return bad("n_q_heads must be a multiple of n_kv_heads (GQA)");
  if (head_dim <= 0 || head_dim > kMaxHeadDim) return bad("head_dim out of range (1..1024)");
  if (!IsFloating(dtype)) return bad("dtype must be F32, F16 or BF16");
  if (tokens <= 0 || tokens > kMaxTokens) return bad("tokens out of range (1..16777216)");
  return Status::OK();
}

std::string KvLayout::ToString() const {
  return "L=" + std::to_string(n_layers) + " kv=" + std::to_string(n_kv_heads) +
         " q=" + std::to_string(n_q_heads) + " d=" + std::to_string(head_dim) + " " +
         DTypeName(dtype) + " T=" + std::to_string(tokens);
}

Status KvCache::Validate(bool check_finite) const {
  KVC_RETURN_IF_ERROR(layout.Validate());
  if (static_cast<int>(layers.size()) != layout.n_layers) {
    return Status::InvalidArgument("cache has " + std::to_string(layers.size()) +
                                   " layers, layout says " + std::to_string(layout.n_layers));
  }
  const Shape kv{layout.n_kv_heads, layout.tokens, layout.head_dim};
  for (int l = 0; l < layout.n_layers; ++l) {
    const LayerKv& x = layers[l];
    KVC_RETURN_IF_ERROR(CheckTensor(x.k, kv, "k", l, layout.dtype, check_finite));
    KVC_RETURN_IF_ERROR(CheckTensor(x.v, kv, "v", l, layout.dtype, check_finite));
    KVC_RETURN_IF_ERROR(
        CheckQueries(x.q_window, layers[0].q_window, layout, "q_window", l, check_finite));
    KVC_RETURN_IF_ERROR(CheckQueries(x.q_ref, layers[0].q_ref, layout, "q_ref", l, check_finite));
  }
  return Status::OK();
}

Status CompactedCache::Validate() const {
  KVC_RETURN_IF_ERROR(layout.Validate());
  if (static_cast<int>(layers.size()) != layout.n_layers) {
    return Status::InvalidArgument("compacted cache has " + std::to_string(layers.size()) +
                                   " layers, layout says " + std::to_string(layout.n_layers));
  }
  for (int l = 0; l < layout.n_layers; ++l) {
    const CompactedLayer& x = layers[l];
    if (static_cast<int>(x.offsets.size()) != layout.n_kv_heads + 1 || x.offsets[0] != 0) {
      return Status::InvalidArgument(Where(l, "offsets") + ": expected n_kv_heads+1 entries from 0");
    }
    for (int h = 0; h < layout.n_kv_heads; ++h) {
      // Order first, so the subtraction cannot overflow on hostile offsets.
      if (x.offsets[h + 1] < x.offsets[h]) {
        return Status::InvalidArgument(Where(l, "offsets") + ": decreasing at head " +
                                       std::to_string(h));
      }
      const int64_t b = x.offsets[h + 1] - x.offsets[h];
      if (b > layout.tokens) {
        return Status::InvalidArgument(Where(l, "offsets") + ": head " + std::to_string(h) +
                                       " budget " + std::to_string(b) + " outside [0, T]");
      }
    }
    const Shape kv{x.total(), layout.head_dim};
    KVC_RETURN_IF_ERROR(CheckTensor(x.k, kv, "k", l, layout.dtype, true));
    KVC_RETURN_IF_ERROR(CheckTensor(x.v, kv, "v", l, layout.dtype, true));
    if (x.beta.dtype() != DType::kF32 || x.beta.shape() != Shape{x.total()}) {
      return Status::InvalidArgument(Where(l, "beta") + ": expected F32 " +
                                     ShapeToString({x.total()}) + ", got " + DTypeName(x.beta.dtype()) +
                                     " " + ShapeToString(x.beta.shape()));
    }
    const float* beta = x.beta.data<float>();
    for (int64_t i = 0; i < x.total(); ++i) {
      if (beta[i] != beta[i] || beta[i] == std::numeric_limits<float>::infinity()) {
        return Status::InvalidArgument(Where(l, "beta") + ": NaN or +Inf at " + std::to_string(i));
      }
    }
  }
  return Status::OK();
}

int64_t CompactedCache::total_entries() const {
  int64_t n = 0;
  for (const auto& l : layers) n += l.total();
  return n;
}

}  // namespace kvc
