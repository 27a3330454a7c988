#include "common/kv_io.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <optional>
#include <span>

namespace kvc {
namespace {

constexpr char kFormatKey[] = "format";
constexpr char kLayersKey[] = "n_layers";
constexpr char kQHeadsKey[] = "n_q_heads";
constexpr char kSourceTokensKey[] = "source_tokens";
constexpr int kMaxLayers = 1024;  // KvLayout::Validate's bound

std::string LayerName(int layer, std::string_view kind) {
  return "layers." + std::to_string(layer) + "." + std::string(kind);
}

Status Invalid(const std::string& source, const std::string& msg) {
  return Status::InvalidArgument(source + ": " + msg);
}

// ---- metadata ---------------------------------------------------------------------------------

struct Payload {
  std::vector<NamedTensor> tensors;
  SafetensorsMetadata metadata;
};

// Copies the user's metadata and adds the reserved keys; a user value for a reserved key must
// agree with what the layout says.
Result<SafetensorsMetadata> WithReserved(
    const std::map<std::string, std::string>& user,
    const std::vector<std::pair<std::string, std::string>>& reserved) {
  SafetensorsMetadata out(user.begin(), user.end());
  for (const auto& [key, value] : reserved) {
    auto it = out.find(key);
    if (it != out.end() && it->second != value) {
      return Status::InvalidArgument("metadata '" + key + "' is reserved: it is '" + it->second +
                                     "' but the cache says '" + value + "'");
    }
    out[key] = value;
  }
  return out;
}

// Reads an optional decimal integer from the metadata.
Result<std::optional<int64_t>> MetaInt(const SafetensorsReader& file, const char* key) {
  auto it = file.metadata().find(key);
  if (it == file.metadata().end()) return std::optional<int64_t>();
  const std::string& s = it->second;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
    return Invalid(file.source(), std::string("metadata '") + key +
                                      "' must be a decimal integer, got '" + s + "'");
  }
  return std::optional<int64_t>(v);
}

Status CheckFormat(const SafetensorsReader& file, std::string_view want, std::string_view other,
                   std::string_view loader_for_other) {
  auto it = file.metadata().find(kFormatKey);
  if (it == file.metadata().end() || it->second == want) return Status::OK();
  if (it->second == other) {
    return Invalid(file.source(), "file holds a " + std::string(other) + "; load it with " +
                                      std::string(loader_for_other));
  }
  if (it->second.starts_with("kvcompact.")) {
    return Status::NotSupported(file.source() + ": unknown format '" + it->second +
                                "' (this build reads " + std::string(want) + ")");
  }
  return Invalid(file.source(),
                 "metadata 'format' is '" + it->second + "', expected '" + std::string(want) + "'");
}

std::map<std::string, std::string> UserMetadata(const SafetensorsReader& file) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : file.metadata()) {
    if (k != kFormatKey && k != kLayersKey && k != kQHeadsKey && k != kSourceTokensKey) out[k] = v;
  }
  return out;
}

// ---- tensor names -----------------------------------------------------------------------------

// Parses "layers.{l}.{kind}" with l in canonical decimal below kMaxLayers.
bool ParseLayerName(std::string_view name, int* layer, std::string_view* kind) {
  constexpr std::string_view kPrefix = "layers.";
  if (!name.starts_with(kPrefix)) return false;
  name.remove_prefix(kPrefix.size());
  const size_t dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 4) return false;
  const std::string_view digits = name.substr(0, dot);
  if (digits.size() > 1 && digits[0] == '0') return false;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
  }
  int l = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), l);
  if (ec != std::errc() || end != digits.data() + digits.size() || l >= kMaxLayers) return false;
  *layer = l;
  *kind = name.substr(dot + 1);
  return true;
}

// Every tensor must be layers.{l}.{one of kinds}. Returns the layer count: the "n_layers"
// metadata if present (checked against the names), else the highest layer index + 1.
Result<int> LayerCount(const SafetensorsReader& file, std::span<const std::string_view> kinds) {
  int max_layer = -1;
  for (const std::string& name : file.names()) {
    int l = 0;
    std::string_view kind;
    if (!ParseLayerName(name, &l, &kind) ||
        std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) {
      std::string expected;
      for (std::string_view k : kinds) expected += (expected.empty() ? "" : "|") + std::string(k);
      return Invalid(file.source(), "unexpected tensor '" + name + "' (expected layers.{l}." +
                                        expected + " with l in 0.." +
                                        std::to_string(kMaxLayers - 1) + ")");
    }
    max_layer = std::max(max_layer, l);
  }
  KVC_ASSIGN_OR_RETURN(std::optional<int64_t> meta, MetaInt(file, kLayersKey));
  if (!meta) {
    if (max_layer < 0) return Invalid(file.source(), "file has no layers.{l}.* tensors");
    return max_layer + 1;
  }
  if (*meta < 1 || *meta > kMaxLayers) {
    return Invalid(file.source(), "metadata 'n_layers' = " + std::to_string(*meta) +
                                      " is outside 1.." + std::to_string(kMaxLayers));
  }
  if (max_layer >= *meta) {
    return Invalid(file.source(), "tensors of layer " + std::to_string(max_layer) +
                                      " but metadata 'n_layers' = " + std::to_string(*meta));
  }
  return static_cast<int>(*meta);
}

Result<Tensor> Required(const SafetensorsReader& file, const std::string& name) {
  if (!file.Contains(name)) return Invalid(file.source(), "missing tensor '" + name + "'");
  return file.Get(name);
}

Result<std::optional<Tensor>> Optional(const SafetensorsReader& file, const std::string& name) {
  if (!file.Contains(name)) return std::optional<Tensor>();
  KVC_ASSIGN_OR_RETURN(Tensor t, file.Get(name));
  return std::optional<Tensor>(std::move(t));
}

Result<int> DimAsInt(const SafetensorsReader& file, const std::string& what, int64_t d) {
  if (d > INT_MAX) {
    return Invalid(file.source(), what + " = " + std::to_string(d) + " is out of range");
  }
  return static_cast<int>(d);
}

Status CheckRank(const SafetensorsReader& file, const std::string& name, const Tensor& t, int rank,
                 const char* dims) {
  if (t.rank() == rank) return Status::OK();
  return Invalid(file.source(), name + ": shape " + ShapeToString(t.shape()) + " has rank " +
                                    std::to_string(t.rank()) + ", expected " +
                                    std::to_string(rank) + " " + dims);
}

// Orders tensors by decreasing element size so each one is naturally aligned in the file.
void SortForAlignment(std::vector<NamedTensor>* tensors) {
  std::stable_sort(tensors->begin(), tensors->end(),
                   [](const NamedTensor& a, const NamedTensor& b) {
                     return DTypeSize(a.tensor.dtype()) > DTypeSize(b.tensor.dtype());
                   });
}

// ---- KvCache ----------------------------------------------------------------------------------

Result<Payload> KvPayload(const KvCache& cache) {
  KVC_RETURN_IF_ERROR(cache.Validate(/*check_finite=*/true).WithContext("cannot save KV cache"));
  Payload p;
  for (int l = 0; l < cache.layout.n_layers; ++l) {
    const LayerKv& x = cache.layers[l];
    p.tensors.push_back({LayerName(l, "k"), x.k});
    p.tensors.push_back({LayerName(l, "v"), x.v});
    if (x.q_window) p.tensors.push_back({LayerName(l, "q_window"), *x.q_window});
    if (x.q_ref) p.tensors.push_back({LayerName(l, "q_ref"), *x.q_ref});
  }
  SortForAlignment(&p.tensors);
  KVC_ASSIGN_OR_RETURN(
      p.metadata,
      WithReserved(cache.metadata, {{kFormatKey, kKvCacheFormat},
                                    {kLayersKey, std::to_string(cache.layout.n_layers)},
                                    {kQHeadsKey, std::to_string(cache.layout.n_q_heads)}}));
  return p;
}

// n_q_heads from the metadata, cross-checked against (or else taken from) layer 0's queries.
Result<int> QueryHeads(const SafetensorsReader& file, const LayerKv& layer0) {
  KVC_ASSIGN_OR_RETURN(std::optional<int64_t> meta, MetaInt(file, kQHeadsKey));
  using Query = std::pair<const std::optional<Tensor>*, const char*>;
  for (const auto& [q, kind] :
       {Query{&layer0.q_window, "q_window"}, Query{&layer0.q_ref, "q_ref"}}) {
    if (!q->has_value()) continue;
    const std::string name = LayerName(0, kind);
    KVC_RETURN_IF_ERROR(CheckRank(file, name, **q, 3, "[n_q_heads, N, head_dim]"));
    if (meta && *meta != (*q)->dim(0)) {
      return Invalid(file.source(), "metadata 'n_q_heads' = " + std::to_string(*meta) + " but " +
                                        name + " has " + std::to_string((*q)->dim(0)) + " heads");
    }
    return DimAsInt(file, name + " heads", (*q)->dim(0));
  }
  if (!meta) {
    return Invalid(file.source(),
                   "metadata 'n_q_heads' is required when the file has no query tensors");
  }
  if (*meta < 1 || *meta > INT_MAX) {
    return Invalid(file.source(),
                   "metadata 'n_q_heads' = " + std::to_string(*meta) + " must be positive");
  }
  return static_cast<int>(*meta);
}

Result<KvLayout> KvLayoutFromLayer0(const SafetensorsReader& file, const Tensor& k0) {
  KVC_RETURN_IF_ERROR(CheckRank(file, "layers.0.k", k0, 3, "[n_kv_heads, T, head_dim]"));
  KvLayout layout;
  KVC_ASSIGN_OR_RETURN(layout.n_kv_heads, DimAsInt(file, "layers.0.k n_kv_heads", k0.dim(0)));
  KVC_ASSIGN_OR_RETURN(layout.head_dim, DimAsInt(file, "layers.0.k head_dim", k0.dim(2)));
  layout.tokens = k0.dim(1);
  layout.dtype = k0.dtype();
  return layout;
}

// ---- CompactedCache ---------------------------------------------------------------------------

Result<Payload> CompactedPayload(const CompactedCache& cache) {
  KVC_RETURN_IF_ERROR(cache.Validate().WithContext("cannot save compacted cache"));
  Payload p;
  for (int l = 0; l < cache.layout.n_layers; ++l) {
    const CompactedLayer& x = cache.layers[l];
    const auto n = static_cast<int64_t>(x.offsets.size());
    Tensor offsets = Tensor::Empty(DType::kI64, {n});
    std::copy(x.offsets.begin(), x.offsets.end(), offsets.data<int64_t>());
    p.tensors.push_back({LayerName(l, "k"), x.k});
    p.tensors.push_back({LayerName(l, "v"), x.v});
    p.tensors.push_back({LayerName(l, "beta"), x.beta});
    p.tensors.push_back({LayerName(l, "offsets"), std::move(offsets)});
  }
  SortForAlignment(&p.tensors);
  KVC_ASSIGN_OR_RETURN(
      p.metadata,
      WithReserved(cache.metadata, {{kFormatKey, kCompactedCacheFormat},
                                    {kLayersKey, std::to_string(cache.layout.n_layers)},
                                    {kQHeadsKey, std::to_string(cache.layout.n_q_heads)},
                                    {kSourceTokensKey, std::to_string(cache.layout.tokens)}}));
  return p;
}

Result<std::vector<int64_t>> ReadOffsets(const SafetensorsReader& file, int layer) {
  const std::string name = LayerName(layer, "offsets");
  KVC_ASSIGN_OR_RETURN(Tensor t, Required(file, name));
  KVC_RETURN_IF_ERROR(CheckRank(file, name, t, 1, "[n_kv_heads + 1]"));
  if (t.dtype() != DType::kI64) {
    return Invalid(file.source(), name + ": dtype " + DTypeName(t.dtype()) + ", expected I64");
  }
  if (t.numel() < 2) {
    return Invalid(file.source(), name + ": " + std::to_string(t.numel()) +
                                      " entries, expected n_kv_heads + 1 >= 2");
  }
  std::vector<int64_t> offsets(t.data<int64_t>(), t.data<int64_t>() + t.numel());
  // Checked here so that budgets (differences) can never overflow in later arithmetic.
  if (offsets[0] != 0) {
    return Invalid(file.source(),
                   name + ": first entry is " + std::to_string(offsets[0]) + ", expected 0");
  }
  for (size_t h = 1; h < offsets.size(); ++h) {
    if (offsets[h] < offsets[h - 1]) {
      return Invalid(file.source(), name + ": entries decrease at index " + std::to_string(h) +
                                        " (" + std::to_string(offsets[h - 1]) + " -> " +
                                        std::to_string(offsets[h]) + ")");
    }
  }
  return offsets;
}

Result<KvLayout> CompactedLayout(const SafetensorsReader& file, int n_layers,
                                 const std::vector<int64_t>& offsets0, const Tensor& k0) {
  KVC_RETURN_IF_ERROR(CheckRank(file, "layers.0.k", k0, 2, "[sum_h t_h, head_dim]"));
  KVC_ASSIGN_OR_RETURN(std::optional<int64_t> tokens, MetaInt(file, kSourceTokensKey));
  KVC_ASSIGN_OR_RETURN(std::optional<int64_t> q_heads, MetaInt(file, kQHeadsKey));
  if (!tokens) return Invalid(file.source(), "missing metadata 'source_tokens'");
  if (!q_heads) return Invalid(file.source(), "missing metadata 'n_q_heads'");
  KvLayout layout;
  layout.n_layers = n_layers;
  KVC_ASSIGN_OR_RETURN(layout.n_kv_heads, DimAsInt(file, "layers.0.offsets entries - 1",
                                                   static_cast<int64_t>(offsets0.size()) - 1));
  KVC_ASSIGN_OR_RETURN(layout.n_q_heads, DimAsInt(file, "metadata 'n_q_heads'", *q_heads));
  KVC_ASSIGN_OR_RETURN(layout.head_dim, DimAsInt(file, "layers.0.k head_dim", k0.dim(1)));
  layout.dtype = k0.dtype();
  layout.tokens = *tokens;
  return layout;
}

}  // namespace

Result<KvCache> KvCacheFromSafetensors(const SafetensorsReader& file,
                                       const KvLoadOptions& options) {
  KVC_RETURN_IF_ERROR(
      CheckFormat(file, kKvCacheFormat, kCompactedCacheFormat, "LoadCompactedCache"));
  static constexpr std::string_view kKinds[] = {"k", "v", "q_window", "q_ref"};
  KVC_ASSIGN_OR_RETURN(const int n_layers, LayerCount(file, kKinds));
  KvCache cache;
  cache.layers.resize(n_layers);
  for (int l = 0; l < n_layers; ++l) {
    LayerKv& x = cache.layers[l];
    KVC_ASSIGN_OR_RETURN(x.k, Required(file, LayerName(l, "k")));
    KVC_ASSIGN_OR_RETURN(x.v, Required(file, LayerName(l, "v")));
    KVC_ASSIGN_OR_RETURN(x.q_window, Optional(file, LayerName(l, "q_window")));
    KVC_ASSIGN_OR_RETURN(x.q_ref, Optional(file, LayerName(l, "q_ref")));
  }
  KVC_ASSIGN_OR_RETURN(cache.layout, KvLayoutFromLayer0(file, cache.layers[0].k));
  cache.layout.n_layers = n_layers;
  KVC_ASSIGN_OR_RETURN(cache.layout.n_q_heads, QueryHeads(file, cache.layers[0]));
  cache.metadata = UserMetadata(file);
  KVC_RETURN_IF_ERROR(cache.Validate(options.check_finite).WithContext(file.source()));
  return cache;
}

Result<CompactedCache> CompactedCacheFromSafetensors(const SafetensorsReader& file) {
  KVC_RETURN_IF_ERROR(CheckFormat(file, kCompactedCacheFormat, kKvCacheFormat, "LoadKvCache"));
  static constexpr std::string_view kKinds[] = {"k", "v", "beta", "offsets"};
  KVC_ASSIGN_OR_RETURN(const int n_layers, LayerCount(file, kKinds));
  CompactedCache cache;
  cache.layers.resize(n_layers);
  for (int l = 0; l < n_layers; ++l) {
    CompactedLayer& x = cache.layers[l];
    KVC_ASSIGN_OR_RETURN(x.k, Required(file, LayerName(l, "k")));
    KVC_ASSIGN_OR_RETURN(x.v, Required(file, LayerName(l, "v")));
    KVC_ASSIGN_OR_RETURN(x.beta, Required(file, LayerName(l, "beta")));
    KVC_ASSIGN_OR_RETURN(x.offsets, ReadOffsets(file, l));
  }
  KVC_ASSIGN_OR_RETURN(cache.layout,
                       CompactedLayout(file, n_layers, cache.layers[0].offsets, cache.layers[0].k));
  cache.metadata = UserMetadata(file);
  KVC_RETURN_IF_ERROR(cache.Validate().WithContext(file.source()));
  return cache;
}

Result<std::vector<uint8_t>> EncodeKvCache(const KvCache& cache) {
  KVC_ASSIGN_OR_RETURN(Payload p, KvPayload(cache));
  return EncodeSafetensors(p.tensors, p.metadata);
}

Status SaveKvCache(const std::string& path, const KvCache& cache) {
  KVC_ASSIGN_OR_RETURN(Payload p, KvPayload(cache));
  return WriteSafetensors(path, p.tensors, p.metadata);
}

Result<KvCache> LoadKvCache(const std::string& path, const KvLoadOptions& options) {
  KVC_ASSIGN_OR_RETURN(SafetensorsReader file, SafetensorsReader::Open(path, options.open));
  return KvCacheFromSafetensors(file, options);
}

Result<std::vector<uint8_t>> EncodeCompactedCache(const CompactedCache& cache) {
  KVC_ASSIGN_OR_RETURN(Payload p, CompactedPayload(cache));
  return EncodeSafetensors(p.tensors, p.metadata);
}

Status SaveCompactedCache(const std::string& path, const CompactedCache& cache) {
  KVC_ASSIGN_OR_RETURN(Payload p, CompactedPayload(cache));
  return WriteSafetensors(path, p.tensors, p.metadata);
}

Result<CompactedCache> LoadCompactedCache(const std::string& path, const KvLoadOptions& options) {
  KVC_ASSIGN_OR_RETURN(SafetensorsReader file, SafetensorsReader::Open(path, options.open));
  return CompactedCacheFromSafetensors(file);
}

}  // namespace kvc
