#include "services/transport/testing.h"

#include <cstring>

namespace kvc::transport::testing {
namespace {

uint64_t SplitMix(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

Tensor Make(DType dtype, Shape shape, uint64_t seed) {
  Tensor t = Tensor::Empty(dtype, std::move(shape));
  FillDeterministic(t, seed);
  return t;
}

std::string DiffTensor(const Tensor& a, const Tensor& b, const std::string& name) {
  if (a.dtype() != b.dtype()) return name + ": dtype differs";
  if (a.shape() != b.shape()) {
    return name + ": shape " + ShapeToString(a.shape()) + " vs " + ShapeToString(b.shape());
  }
  if (a.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) != 0) return name + ": bytes differ";
  return "";
}

std::string Name(size_t layer, const char* what) {
  return "layers." + std::to_string(layer) + "." + what;
}

}  // namespace

KvLayout SmallLayout(int64_t tokens, DType dtype) {
  KvLayout l;
  l.n_layers = 3;
  l.n_kv_heads = 2;
  l.n_q_heads = 4;
  l.head_dim = 16;
  l.dtype = dtype;
  l.tokens = tokens;
  return l;
}

void FillDeterministic(Tensor& t, uint64_t seed) {
  uint64_t state = seed * 0x2545f4914f6cdd1dull + 1;
  const int64_t n = t.numel();
  switch (t.dtype()) {
    case DType::kF32:
      for (int64_t i = 0; i < n; ++i) {
        t.data<float>()[i] = static_cast<float>(SplitMix(state) >> 40) / 8388608.0f - 1.0f;
      }
      break;
    case DType::kF16:
    case DType::kBF16: {
      auto* p = t.data<uint16_t>();
      for (int64_t i = 0; i < n; ++i) {
        const float f = static_cast<float>(SplitMix(state) >> 40) / 8388608.0f - 1.0f;
        p[i] = t.dtype() == DType::kF16 ? FloatToHalf(f) : FloatToBf16(f);
      }
      break;
    }
    default: {
      auto* p = static_cast<uint8_t*>(t.raw());
      for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<uint8_t>(SplitMix(state));
    }
  }
}

KvCache MakeKvCache(const KvLayout& L, int64_t q_window, int64_t q_ref, uint64_t seed) {
  KvCache c;
  c.layout = L;
  c.metadata["seed"] = std::to_string(seed);
  c.metadata["model"] = "synthetic";
  uint64_t s = seed * 1000;
  for (int l = 0; l < L.n_layers; ++l) {
    LayerKv x;
    x.k = Make(L.dtype, {L.n_kv_heads, L.tokens, L.head_dim}, ++s);
    x.v = Make(L.dtype, {L.n_kv_heads, L.tokens, L.head_dim}, ++s);
    if (q_window > 0) x.q_window = Make(DType::kF32, {L.n_q_heads, q_window, L.head_dim}, ++s);
    if (q_ref > 0) x.q_ref = Make(DType::kF32, {L.n_q_heads, q_ref, L.head_dim}, ++s);
    c.layers.push_back(std::move(x));
  }
  return c;
}

CompactedCache MakeCompactedCache(const KvLayout& L, int64_t base, uint64_t seed) {
  CompactedCache c;
  c.layout = L;
  c.metadata["method"] = "synthetic";
  c.metadata["seed"] = std::to_string(seed);
  uint64_t s = seed * 1000;
  for (int l = 0; l < L.n_layers; ++l) {
    CompactedLayer x;
    x.offsets.push_back(0);
    for (int h = 0; h < L.n_kv_heads; ++h) {
      x.offsets.push_back(x.offsets.back() + std::min<int64_t>(L.tokens, base + h));
    }
    x.k = Make(L.dtype, {x.total(), L.head_dim}, ++s);
    x.v = Make(L.dtype, {x.total(), L.head_dim}, ++s);
    x.beta = Make(DType::kF32, {x.total()}, ++s);
    c.layers.push_back(std::move(x));
  }
  return c;
}

std::string DiffKvCache(const KvCache& a, const KvCache& b) {
  if (!(a.layout == b.layout))
    return "layout " + a.layout.ToString() + " vs " + b.layout.ToString();
  if (a.metadata != b.metadata) return "metadata differs";
  if (a.layers.size() != b.layers.size()) return "layer count differs";
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const LayerKv& x = a.layers[l];
    const LayerKv& y = b.layers[l];
    std::string d = DiffTensor(x.k, y.k, Name(l, "k"));
    if (d.empty()) d = DiffTensor(x.v, y.v, Name(l, "v"));
    if (d.empty() && x.q_window.has_value() != y.q_window.has_value())
      d = Name(l, "q_window presence");
    if (d.empty() && x.q_window) d = DiffTensor(*x.q_window, *y.q_window, Name(l, "q_window"));
    if (d.empty() && x.q_ref.has_value() != y.q_ref.has_value()) d = Name(l, "q_ref presence");
    if (d.empty() && x.q_ref) d = DiffTensor(*x.q_ref, *y.q_ref, Name(l, "q_ref"));
    if (!d.empty()) return d;
  }
  return "";
}

std::string DiffCompacted(const CompactedCache& a, const CompactedCache& b) {
  if (!(a.layout == b.layout))
    return "layout " + a.layout.ToString() + " vs " + b.layout.ToString();
  if (a.metadata != b.metadata) return "metadata differs";
  if (a.layers.size() != b.layers.size()) return "layer count differs";
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const CompactedLayer& x = a.layers[l];
    const CompactedLayer& y = b.layers[l];
    if (x.offsets != y.offsets) return Name(l, "offsets") + " differ";
    std::string d = DiffTensor(x.k, y.k, Name(l, "k"));
    if (d.empty()) d = DiffTensor(x.v, y.v, Name(l, "v"));
    if (d.empty()) d = DiffTensor(x.beta, y.beta, Name(l, "beta"));
    if (!d.empty()) return d;
  }
  return "";
}

}  // namespace kvc::transport::testing
