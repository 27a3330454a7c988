#include "storage/format.h"

#include <cstring>
#include <limits>

#include "storage/coding.h"

namespace kvc::storage {
namespace {

constexpr size_t kMaxNameBytes = 64;
constexpr size_t kMaxRank = 4;
constexpr size_t kMaxStringBytes = 16u << 20;  // one metadata / attribute key or value
constexpr size_t kChecksumBytes = 8;
constexpr uint8_t kMaxDType = static_cast<uint8_t>(DType::kI64);

const char* kTensorSuffix[3] = {"k", "v", "beta"};

std::string TensorName(int layer, int which) {
  return "layers." + std::to_string(layer) + "." + kTensorSuffix[which];
}

// The three tensor descriptions layer `layer` must have (checksums left zero).
void ExpectedTensors(const KvLayout& layout, int layer, int64_t total, TensorDesc out[3]) {
  const Shape kv{total, layout.head_dim};
  out[0] = {TensorName(layer, 0), layout.dtype, kv, 0, 0};
  out[1] = {TensorName(layer, 1), layout.dtype, kv, 0, 0};
  out[2] = {TensorName(layer, 2), DType::kF32, Shape{total}, 0, 0};
  for (int i = 0; i < 3; ++i) {
    out[i].nbytes = static_cast<uint64_t>(ShapeNumel(out[i].shape)) * DTypeSize(out[i].dtype);
  }
}

// Empty when `offsets` fit the layout (design §3), else what is wrong.
std::string CheckOffsets(const KvLayout& layout, int layer, const std::vector<int64_t>& offsets) {
  const std::string where = "layers." + std::to_string(layer) + ".offsets";
  if (static_cast<int>(offsets.size()) != layout.n_kv_heads + 1 || offsets[0] != 0) {
    return where + ": expected n_kv_heads+1 entries starting at 0";
  }
  for (int h = 0; h < layout.n_kv_heads; ++h) {
    const int64_t budget = offsets[h + 1] - offsets[h];
    if (budget < 0 || budget > layout.tokens) {
      return where + ": head " + std::to_string(h) + " budget " + std::to_string(budget) +
             " outside [0, T]";
    }
  }
  return {};
}

std::string CheckDesc(const TensorDesc& got, const TensorDesc& want) {
  if (got.name != want.name || got.dtype != want.dtype || got.shape != want.shape ||
      got.nbytes != want.nbytes) {
    return want.name + ": expected " + DTypeName(want.dtype) + " " + ShapeToString(want.shape) +
           ", found " + got.name + " " + DTypeName(got.dtype) + " " + ShapeToString(got.shape) +
           " (" + std::to_string(got.nbytes) + " bytes)";
  }
  return {};
}

// Empty when the decoded manifest is self-consistent, else what is wrong.
std::string CheckManifest(const Manifest& m) {
  const Status layout_ok = m.layout.Validate();
  if (!layout_ok.ok()) return layout_ok.message();
  if (static_cast<int>(m.offsets.size()) != m.layout.n_layers ||
      m.tensors.size() != 3 * m.offsets.size()) {
    return "layer or tensor count does not match the layout";
  }
  for (int l = 0; l < m.layout.n_layers; ++l) {
    std::string err = CheckOffsets(m.layout, l, m.offsets[l]);
    if (!err.empty()) return err;
    TensorDesc want[3];
    ExpectedTensors(m.layout, l, m.offsets[l].back(), want);
    for (int i = 0; i < 3; ++i) {
      err = CheckDesc(m.tensors[3 * l + i], want[i]);
      if (!err.empty()) return err;
    }
  }
  return {};
}

void PutStringMap(std::string* dst, const std::map<std::string, std::string>& m) {
  PutVarint64(dst, m.size());
  for (const auto& [k, v] : m) {
    PutLengthPrefixed(dst, k);
    PutLengthPrefixed(dst, v);
  }
}

// Decodes the body (between the version and the trailing checksum) into *m.
class BodyDecoder {
 public:
  BodyDecoder(std::string_view body, Manifest* m) : r_(body), m_(m) {}

  Status Run() {
    if (!Layout() || !Offsets() || !Tensors() || !StringMap(&m_->metadata) || !Tokens() ||
        !StringMap(&m_->extras.attributes)) {
      return Status::Corruption("manifest: truncated or malformed " + std::string(what_));
    }
    if (!r_.done()) return Status::Corruption("manifest: trailing bytes after the body");
    return Status::OK();
  }

 private:
  bool Fail(const char* what) {
    what_ = what;
    return false;
  }
  bool Int(int* out) {
    uint32_t v;
    if (!r_.GetVarint32(&v) || v > static_cast<uint32_t>(std::numeric_limits<int>::max())) {
      return false;
    }
    *out = static_cast<int>(v);
    return true;
  }
  bool DTypeByte(DType* out) {
    uint8_t b;
    if (!r_.GetU8(&b) || b > kMaxDType) return false;
    *out = static_cast<DType>(b);
    return true;
  }
  // Counts are bounded by the bytes left (each element takes at least `min_bytes`), so no
  // allocation is sized by an unchecked number.
  bool Count(uint64_t* n, size_t min_bytes) {
    return r_.GetVarint64(n) && *n <= r_.remaining() / min_bytes;
  }

  bool Layout() {
    KvLayout& L = m_->layout;
    uint64_t tokens, created;
    if (!Int(&L.n_layers) || !Int(&L.n_kv_heads) || !Int(&L.n_q_heads) || !Int(&L.head_dim) ||
        !DTypeByte(&L.dtype) || !r_.GetVarint64(&tokens) || !r_.GetVarint64(&created)) {
      return Fail("layout");
    }
    L.tokens = static_cast<int64_t>(tokens);
    m_->created_at_micros = static_cast<int64_t>(created);
    // Bound the loops below before running them.
    if (!L.Validate().ok()) return Fail("layout (out of range)");
    return true;
  }

  bool Offsets() {
    const size_t per_layer = static_cast<size_t>(m_->layout.n_kv_heads) + 1;
    if (static_cast<uint64_t>(m_->layout.n_layers) * per_layer > r_.remaining()) {
      return Fail("offsets");
    }
    m_->offsets.assign(m_->layout.n_layers, std::vector<int64_t>(per_layer));
    for (auto& layer : m_->offsets) {
      for (int64_t& o : layer) {
        uint64_t v;
        if (!r_.GetVarint64(&v) || v > static_cast<uint64_t>(INT64_MAX)) return Fail("offsets");
        o = static_cast<int64_t>(v);
      }
    }
    return true;
  }

  bool Tensor(TensorDesc* t) {
    std::string_view name;
    uint8_t rank;
    if (!r_.GetLengthPrefixed(&name, kMaxNameBytes) || !DTypeByte(&t->dtype) || !r_.GetU8(&rank) ||
        rank > kMaxRank) {
      return false;
    }
    t->name.assign(name);
    t->shape.resize(rank);
    for (int64_t& d : t->shape) {
      uint64_t v;
      if (!r_.GetVarint64(&v) || v > (uint64_t{1} << 40)) return false;
      d = static_cast<int64_t>(v);
    }
    return r_.GetVarint64(&t->nbytes) && r_.GetFixed64(&t->checksum);
  }

  bool Tensors() {
    uint64_t n;
    if (!Count(&n, 12)) return Fail("tensor list");
    m_->tensors.resize(n);
    for (TensorDesc& t : m_->tensors) {
      if (!Tensor(&t)) return Fail("tensor list");
    }
    return true;
  }

  bool StringMap(std::map<std::string, std::string>* out) {
    uint64_t n;
    if (!Count(&n, 2)) return Fail("string map");
    for (uint64_t i = 0; i < n; ++i) {
      std::string_view k, v;
      if (!r_.GetLengthPrefixed(&k, kMaxStringBytes) ||
          !r_.GetLengthPrefixed(&v, kMaxStringBytes)) {
        return Fail("string map");
      }
      if (!out->emplace(k, v).second) return Fail("string map (duplicate key)");
    }
    return true;
  }

  bool Tokens() {
    uint64_t n;
    if (!Count(&n, 1)) return Fail("source tokens");
    m_->extras.source_tokens.resize(n);
    for (uint32_t& t : m_->extras.source_tokens) {
      if (!r_.GetVarint32(&t)) return Fail("source tokens");
    }
    return true;
  }

  Reader r_;
  Manifest* m_;
  const char* what_ = "";
};

Tensor TensorFromBlob(const TensorDesc& desc, const BlobRef& blob) {
  const size_t align = DTypeSize(desc.dtype);
  if (desc.nbytes > 0 && reinterpret_cast<uintptr_t>(blob.data) % align == 0) {
    // The store hands out read-only views; Tensor's API is mutable, hence the cast.
    return Tensor::View(desc.dtype, desc.shape, const_cast<void*>(blob.data), blob.owner);
  }
  Tensor t = Tensor::Empty(desc.dtype, desc.shape);
  if (desc.nbytes > 0) std::memcpy(t.raw(), blob.data, desc.nbytes);
  return t;
}

}  // namespace

uint64_t Manifest::payload_bytes() const {
  uint64_t n = 0;
  for (const TensorDesc& t : tensors) n += t.nbytes;
  return n;
}

Status ValidateForStore(const CompactedCache& cache, bool check_values) {
  if (check_values) return cache.Validate();
  KVC_RETURN_IF_ERROR(cache.layout.Validate());
  if (static_cast<int>(cache.layers.size()) != cache.layout.n_layers) {
    return Status::InvalidArgument("compacted cache has " + std::to_string(cache.layers.size()) +
                                   " layers, layout says " + std::to_string(cache.layout.n_layers));
  }
  for (int l = 0; l < cache.layout.n_layers; ++l) {
    const CompactedLayer& layer = cache.layers[l];
    std::string err = CheckOffsets(cache.layout, l, layer.offsets);
    if (!err.empty()) return Status::InvalidArgument(err);
    TensorDesc want[3];
    ExpectedTensors(cache.layout, l, layer.total(), want);
    const kvc::Tensor* have[3] = {&layer.k, &layer.v, &layer.beta};
    for (int i = 0; i < 3; ++i) {
      TensorDesc got{want[i].name, have[i]->dtype(), have[i]->shape(), have[i]->nbytes(), 0};
      err = CheckDesc(got, want[i]);
      if (!err.empty()) return Status::InvalidArgument(err);
    }
  }
  return Status::OK();
}

std::string EncodeManifest(const Manifest& m) {
  std::string out;
  PutFixed32(&out, m.format_version);
  const KvLayout& L = m.layout;
  for (int v : {L.n_layers, L.n_kv_heads, L.n_q_heads, L.head_dim}) {
    PutVarint32(&out, static_cast<uint32_t>(v));
  }
  out.push_back(static_cast<char>(L.dtype));
  PutVarint64(&out, static_cast<uint64_t>(L.tokens));
  PutVarint64(&out, static_cast<uint64_t>(m.created_at_micros));
  for (const auto& layer : m.offsets) {
    for (int64_t o : layer) PutVarint64(&out, static_cast<uint64_t>(o));
  }
  PutVarint64(&out, m.tensors.size());
  for (const TensorDesc& t : m.tensors) {
    PutLengthPrefixed(&out, t.name);
    out.push_back(static_cast<char>(t.dtype));
    out.push_back(static_cast<char>(t.shape.size()));
    for (int64_t d : t.shape) PutVarint64(&out, static_cast<uint64_t>(d));
    PutVarint64(&out, t.nbytes);
    PutFixed64(&out, t.checksum);
  }
  PutStringMap(&out, m.metadata);
  PutVarint64(&out, m.extras.source_tokens.size());
  for (uint32_t t : m.extras.source_tokens) PutVarint32(&out, t);
  PutStringMap(&out, m.extras.attributes);
  PutFixed64(&out, Checksum64(out.data(), out.size()));
  return out;
}

Result<EncodedEntry> EncodeEntry(const CompactedCache& cache, const EntryExtras& extras,
                                 int64_t created_at_micros) {
  KVC_RETURN_IF_ERROR(ValidateForStore(cache, /*check_values=*/false));
  Manifest m;
  m.layout = cache.layout;
  m.metadata = cache.metadata;
  m.created_at_micros = created_at_micros;
  m.extras = extras;
  EncodedEntry out;
  for (int l = 0; l < cache.layout.n_layers; ++l) {
    const CompactedLayer& layer = cache.layers[l];
    m.offsets.push_back(layer.offsets);
    TensorDesc want[3];
    ExpectedTensors(cache.layout, l, layer.total(), want);
    const kvc::Tensor* have[3] = {&layer.k, &layer.v, &layer.beta};
    for (int i = 0; i < 3; ++i) {
      want[i].checksum = Checksum64(have[i]->raw(), want[i].nbytes);
      out.blobs.emplace_back(static_cast<const char*>(have[i]->raw()), want[i].nbytes);
      out.payload_bytes += want[i].nbytes;
      m.tensors.push_back(std::move(want[i]));
    }
  }
  out.manifest = EncodeManifest(m);
  return out;
}

Result<Manifest> DecodeManifest(std::string_view bytes) {
  Reader r(bytes);
  uint32_t version;
  if (!r.GetFixed32(&version)) return Status::Corruption("manifest: shorter than its version");
  if (version != kManifestFormatVersion) {
    return Status::NotSupported("manifest: format version " + std::to_string(version) +
                                " (this build reads version " +
                                std::to_string(kManifestFormatVersion) + ")");
  }
  if (bytes.size() < 4 + kChecksumBytes || bytes.size() > kMaxManifestBytes) {
    return Status::Corruption("manifest: size " + std::to_string(bytes.size()) + " out of range");
  }
  const size_t body_end = bytes.size() - kChecksumBytes;
  uint64_t stored;
  std::memcpy(&stored, bytes.data() + body_end, kChecksumBytes);
  if (Checksum64(bytes.data(), body_end) != stored) {
    return Status::Corruption("manifest: checksum mismatch");
  }
  Manifest m;
  m.format_version = version;
  KVC_RETURN_IF_ERROR(BodyDecoder(bytes.substr(4, body_end - 4), &m).Run());
  const std::string err = CheckManifest(m);
  if (!err.empty()) return Status::Corruption("manifest: " + err);
  return m;
}

Status VerifyBlob(const TensorDesc& desc, const void* data, size_t size) {
  if (size != desc.nbytes) {
    return Status::Corruption(desc.name + ": stored " + std::to_string(size) +
                              " bytes, manifest says " + std::to_string(desc.nbytes));
  }
  if (Checksum64(data, size) != desc.checksum) {
    return Status::Corruption(desc.name + ": checksum mismatch");
  }
  return Status::OK();
}

Result<CompactedCache> AssembleCache(const Manifest& manifest, std::span<const BlobRef> blobs) {
  if (blobs.size() != manifest.tensors.size()) {
    return Status::InvalidArgument("assemble: " + std::to_string(blobs.size()) + " blobs for " +
                                   std::to_string(manifest.tensors.size()) + " tensors");
  }
  CompactedCache cache;
  cache.layout = manifest.layout;
  cache.metadata = manifest.metadata;
  cache.layers.resize(manifest.layout.n_layers);
  for (size_t i = 0; i < blobs.size(); ++i) {
    const TensorDesc& desc = manifest.tensors[i];
    KVC_RETURN_IF_ERROR(VerifyBlob(desc, blobs[i].data, blobs[i].size));
    CompactedLayer& layer = cache.layers[i / 3];
    kvc::Tensor* slot[3] = {&layer.k, &layer.v, &layer.beta};
    *slot[i % 3] = TensorFromBlob(desc, blobs[i]);
  }
  for (int l = 0; l < manifest.layout.n_layers; ++l) cache.layers[l].offsets = manifest.offsets[l];
  return cache;
}

}  // namespace kvc::storage
