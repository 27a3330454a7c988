#include "storage/testing.h"

#include <unistd.h>

#include <atomic>
#include <cstring>

namespace kvc::storage::testing {
namespace {

uint64_t SplitMix(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Finite values of the tensor's dtype, from `state`.
void FillFinite(Tensor* t, uint64_t* state) {
  if (t->dtype() == DType::kF32) {
    float* p = t->data<float>();
    for (int64_t i = 0; i < t->numel(); ++i) {
      p[i] = static_cast<float>(static_cast<int64_t>(SplitMix(state) % 20001) - 10000) / 1000.f;
    }
    return;
  }
  // F16 / BF16: random bits with the top exponent bit cleared, so never Inf or NaN.
  uint16_t* p = t->data<uint16_t>();
  const int64_t n = t->numel();
  for (int64_t i = 0; i < n; i += 4) {
    uint64_t bits = SplitMix(state);
    for (int64_t j = i; j < n && j < i + 4; ++j, bits >>= 16) {
      p[j] = static_cast<uint16_t>(bits) & 0xbfffu;
    }
  }
}

CompactedLayer MakeLayer(const KvLayout& layout, const std::vector<int64_t>& budgets,
                         uint64_t* state) {
  CompactedLayer layer;
  layer.offsets.push_back(0);
  for (int64_t b : budgets) layer.offsets.push_back(layer.offsets.back() + b);
  const int64_t total = layer.offsets.back();
  layer.k = Tensor::Empty(layout.dtype, {total, layout.head_dim});
  layer.v = Tensor::Empty(layout.dtype, {total, layout.head_dim});
  layer.beta = Tensor::Empty(DType::kF32, {total});
  FillFinite(&layer.k, state);
  FillFinite(&layer.v, state);
  FillFinite(&layer.beta, state);
  return layer;
}

}  // namespace

CompactedCache MakeCache(uint64_t seed, const CacheShape& shape) {
  uint64_t state = seed * 0x2545f4914f6cdd1dull + 1;
  CompactedCache cache;
  cache.layout = {shape.n_layers, shape.n_kv_heads, shape.n_q_heads,
                  shape.head_dim, shape.dtype,      shape.tokens};
  for (int l = 0; l < shape.n_layers; ++l) {
    std::vector<int64_t> budgets;
    for (int h = 0; h < shape.n_kv_heads; ++h) {
      const uint64_t draw = SplitMix(&state);
      budgets.push_back(shape.fixed_budget >= 0
                            ? shape.fixed_budget
                            : static_cast<int64_t>(draw % (shape.max_budget + 1)));
    }
    cache.layers.push_back(MakeLayer(cache.layout, budgets, &state));
  }
  cache.metadata = {{"method", "am"}, {"seed", std::to_string(seed)}};
  return cache;
}

CompactedCache MakeCacheOfSize(uint64_t seed, uint64_t bytes) {
  constexpr int kLayers = 8, kHeads = 8, kDim = 128;
  constexpr uint64_t kRowBytes = 2 * kDim * 2 + 4;  // k and v rows (F16) + one beta
  const int64_t per_head =
      std::max<int64_t>(1, static_cast<int64_t>(bytes / kRowBytes / kLayers / kHeads));
  uint64_t state = seed * 0x2545f4914f6cdd1dull + 7;
  CompactedCache cache;
  cache.layout = {kLayers, kHeads, 4 * kHeads, kDim, DType::kF16, per_head * 4};
  for (int l = 0; l < kLayers; ++l) {
    cache.layers.push_back(MakeLayer(cache.layout, std::vector<int64_t>(kHeads, per_head), &state));
  }
  cache.metadata = {{"method", "am"}, {"seed", std::to_string(seed)}};
  return cache;
}

uint64_t PayloadBytes(const CompactedCache& cache) {
  uint64_t n = 0;
  for (const CompactedLayer& l : cache.layers) n += l.k.nbytes() + l.v.nbytes() + l.beta.nbytes();
  return n;
}

bool SameCache(const CompactedCache& a, const CompactedCache& b, std::string* why) {
  auto differ = [&](const std::string& what) {
    if (why) *why = what;
    return false;
  };
  if (!(a.layout == b.layout))
    return differ("layout " + a.layout.ToString() + " vs " + b.layout.ToString());
  if (a.metadata != b.metadata) return differ("metadata");
  if (a.layers.size() != b.layers.size()) return differ("layer count");
  for (size_t l = 0; l < a.layers.size(); ++l) {
    const CompactedLayer& x = a.layers[l];
    const CompactedLayer& y = b.layers[l];
    if (x.offsets != y.offsets) return differ("layer " + std::to_string(l) + " offsets");
    const Tensor* tx[3] = {&x.k, &x.v, &x.beta};
    const Tensor* ty[3] = {&y.k, &y.v, &y.beta};
    for (int i = 0; i < 3; ++i) {
      if (tx[i]->dtype() != ty[i]->dtype() || tx[i]->shape() != ty[i]->shape() ||
          std::memcmp(tx[i]->raw(), ty[i]->raw(), tx[i]->nbytes()) != 0) {
        return differ("layer " + std::to_string(l) + " tensor " + std::to_string(i));
      }
    }
  }
  return true;
}

StoreKey KeyFor(uint64_t i, std::string spec) {
  uint64_t state = i ^ 0x5bd1e995ull;
  std::string hash(32, '\0');
  for (int w = 0; w < 4; ++w) {
    const uint64_t v = SplitMix(&state);
    std::memcpy(hash.data() + 8 * w, &v, 8);
  }
  return {std::move(hash), std::move(spec)};
}

std::vector<std::string> ChainFor(uint64_t chain_seed, size_t n) {
  std::vector<std::string> chain;
  for (size_t i = 0; i < n; ++i) {
    // Distinct from KeyFor(i) for i < 2^32 and from every other (chain, index) pair.
    chain.push_back(KeyFor(((chain_seed + 1) << 32) | static_cast<uint32_t>(i)).block_hash);
  }
  return chain;
}

TempDir::TempDir(const std::string& prefix) {
  static std::atomic<int> counter{0};
  path_ = std::filesystem::temp_directory_path() /
          (prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace kvc::storage::testing
