#include "services/transport/wire.h"

#include <xxhash.h>

#include <cstring>
#include <type_traits>

namespace kvc::transport {
namespace {

constexpr int kMaxRank = 4;
constexpr int64_t kMaxDim = int64_t{1} << 40;
constexpr uint64_t kMaxTensorBytes = uint64_t{1} << 44;
constexpr size_t kMaxTensors = 4 * 1024;
constexpr size_t kMaxMetadata = 1024;

class Writer {
 public:
  template <typename T>
  void Put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  void PutBytes(std::string_view s) {
    Put<uint32_t>(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  template <typename T>
  bool Get(T* v) {
    if (in_.size() < sizeof(T)) return false;
    std::memcpy(v, in_.data(), sizeof(T));
    in_.remove_prefix(sizeof(T));
    return true;
  }
  bool GetBytes(std::string* s) {
    uint32_t n = 0;
    if (!Get(&n) || in_.size() < n) return false;
    s->assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  size_t left() const { return in_.size(); }

 private:
  std::string_view in_;
};

Status Truncated(const char* what) {
  return Status::Corruption(std::string("payload descriptor truncated in ") + what);
}

bool KnownDType(uint8_t d) { return d <= static_cast<uint8_t>(DType::kI64); }
bool KnownRole(uint8_t r) { return r >= 1 && r <= static_cast<uint8_t>(TensorRole::kOffsets); }

Status DecodeTensor(Reader& r, TensorDesc* t) {
  uint8_t role = 0, dtype = 0, rank = 0, reserved = 0;
  if (!r.Get(&role) || !r.Get(&dtype) || !r.Get(&rank) || !r.Get(&reserved) || !r.Get(&t->layer)) {
    return Truncated("tensor entry");
  }
  if (!KnownRole(role)) return Status::Corruption("unknown tensor role " + std::to_string(role));
  if (!KnownDType(dtype)) return Status::Corruption("unknown dtype " + std::to_string(dtype));
  if (rank > kMaxRank) return Status::Corruption("tensor rank " + std::to_string(rank) + " > 4");
  t->role = static_cast<TensorRole>(role);
  t->dtype = static_cast<DType>(dtype);
  t->shape.resize(rank);
  for (auto& d : t->shape) {
    if (!r.Get(&d)) return Truncated("tensor shape");
    if (d < 0 || d > kMaxDim) return Status::Corruption("tensor dimension out of range");
  }
  if (!r.Get(&t->nbytes)) return Truncated("tensor size");
  return Status::OK();
}

Status DecodeLayout(Reader& r, KvLayout* l) {
  uint8_t dtype = 0;
  uint8_t reserved[7];
  if (!r.Get(&l->n_layers) || !r.Get(&l->n_kv_heads) || !r.Get(&l->n_q_heads) ||
      !r.Get(&l->head_dim) || !r.Get(&dtype) || !r.Get(&reserved) || !r.Get(&l->tokens)) {
    return Truncated("layout");
  }
  if (!KnownDType(dtype)) return Status::Corruption("unknown layout dtype");
  l->dtype = static_cast<DType>(dtype);
  return Status::OK();
}

std::string Where(const TensorDesc& t) {
  return "layers." + std::to_string(t.layer) + "." + TensorRoleName(t.role);
}

Status CheckOne(const TensorDesc& t, TensorRole role, int layer, const Shape& shape,
                std::optional<DType> dtype) {
  if (t.role != role || t.layer != layer) {
    return Status::InvalidArgument("expected layers." + std::to_string(layer) + "." +
                                   TensorRoleName(role) + ", got " + Where(t));
  }
  if (dtype ? t.dtype != *dtype : !IsFloating(t.dtype)) {
    return Status::InvalidArgument(Where(t) + ": unexpected dtype " + DTypeName(t.dtype));
  }
  if (t.shape != shape) {
    return Status::InvalidArgument(Where(t) + ": shape " + ShapeToString(t.shape) + ", expected " +
                                   ShapeToString(shape));
  }
  return Status::OK();
}

Status CheckKvCache(const PayloadDescriptor& d) {
  const KvLayout& L = d.layout;
  const auto& ts = d.tensors;
  const bool qw = ts.size() > 2 && ts[2].role == TensorRole::kQWindow;
  const bool qr = ts.size() > 2 && (ts[2].role == TensorRole::kQRef ||
                                    (qw && ts.size() > 3 && ts[3].role == TensorRole::kQRef));
  const size_t per_layer = 2 + (qw ? 1 : 0) + (qr ? 1 : 0);
  if (ts.size() != per_layer * static_cast<size_t>(L.n_layers)) {
    return Status::InvalidArgument("kv cache payload lists " + std::to_string(ts.size()) +
                                   " tensors for " + std::to_string(L.n_layers) + " layers");
  }
  const Shape kv{L.n_kv_heads, L.tokens, L.head_dim};
  auto q_shape = [&](size_t i) {
    return Shape{L.n_q_heads, ts[i].shape.size() == 3 ? ts[i].shape[1] : -1, L.head_dim};
  };
  const Shape qw_shape = qw ? q_shape(2) : Shape{};
  const Shape qr_shape = qr ? q_shape(qw ? 3 : 2) : Shape{};
  if ((qw && qw_shape[1] <= 0) || (qr && qr_shape[1] <= 0)) {
    return Status::InvalidArgument("query tensors need shape [n_q_heads, N > 0, head_dim]");
  }
  for (int l = 0; l < L.n_layers; ++l) {
    size_t i = per_layer * l;
    KVC_RETURN_IF_ERROR(CheckOne(ts[i++], TensorRole::kK, l, kv, L.dtype));
    KVC_RETURN_IF_ERROR(CheckOne(ts[i++], TensorRole::kV, l, kv, L.dtype));
    if (qw) KVC_RETURN_IF_ERROR(CheckOne(ts[i++], TensorRole::kQWindow, l, qw_shape, {}));
    if (qr) KVC_RETURN_IF_ERROR(CheckOne(ts[i++], TensorRole::kQRef, l, qr_shape, {}));
  }
  return Status::OK();
}

Status CheckCompacted(const PayloadDescriptor& d) {
  const KvLayout& L = d.layout;
  const auto& ts = d.tensors;
  if (ts.size() != 4 * static_cast<size_t>(L.n_layers)) {
    return Status::InvalidArgument("compacted payload lists " + std::to_string(ts.size()) +
                                   " tensors for " + std::to_string(L.n_layers) + " layers");
  }
  for (int l = 0; l < L.n_layers; ++l) {
    const TensorDesc* t = &ts[4 * l];
    const int64_t rows = t[0].shape.empty() ? -1 : t[0].shape[0];
    if (rows < 0 || rows > int64_t{L.n_kv_heads} * L.tokens) {
      return Status::InvalidArgument(Where(t[0]) + ": row count outside [0, n_kv_heads * T]");
    }
    const Shape kv{rows, L.head_dim};
    KVC_RETURN_IF_ERROR(CheckOne(t[0], TensorRole::kK, l, kv, L.dtype));
    KVC_RETURN_IF_ERROR(CheckOne(t[1], TensorRole::kV, l, kv, L.dtype));
    KVC_RETURN_IF_ERROR(CheckOne(t[2], TensorRole::kBeta, l, Shape{rows}, DType::kF32));
    KVC_RETURN_IF_ERROR(
        CheckOne(t[3], TensorRole::kOffsets, l, Shape{L.n_kv_heads + 1}, DType::kI64));
  }
  return Status::OK();
}

}  // namespace

const char* FrameTypeName(FrameType type) {
  switch (type) {
    case FrameType::kHello:
      return "hello";
    case FrameType::kHelloAck:
      return "hello_ack";
    case FrameType::kHeader:
      return "header";
    case FrameType::kAck:
      return "ack";
    case FrameType::kTensor:
      return "tensor";
    case FrameType::kEnd:
      return "end";
    case FrameType::kResult:
      return "result";
    case FrameType::kCancel:
      return "cancel";
    case FrameType::kFetchRequest:
      return "fetch_request";
    case FrameType::kFetchError:
      return "fetch_error";
  }
  return "unknown";
}

const char* TensorRoleName(TensorRole role) {
  switch (role) {
    case TensorRole::kK:
      return "k";
    case TensorRole::kV:
      return "v";
    case TensorRole::kQWindow:
      return "q_window";
    case TensorRole::kQRef:
      return "q_ref";
    case TensorRole::kBeta:
      return "beta";
    case TensorRole::kOffsets:
      return "offsets";
  }
  return "unknown";
}

Result<FrameHeader> ParseFrameHeader(const void* data, size_t len) {
  FrameHeader h;
  if (data == nullptr || len != sizeof(FrameHeader)) {
    return Status::Corruption("frame header of " + std::to_string(len) + " bytes, expected 40");
  }
  std::memcpy(&h, data, sizeof(h));
  if (h.magic != kFrameMagic) return Status::Corruption("bad frame magic");
  if (h.version != kWireVersion) {
    return Status::NotSupported("wire version " + std::to_string(h.version) +
                                ", this build speaks " + std::to_string(kWireVersion));
  }
  const auto t = static_cast<uint16_t>(h.type);
  if (t < 1 || t > static_cast<uint16_t>(FrameType::kFetchError)) {
    return Status::NotSupported("unknown frame type " + std::to_string(t));
  }
  return h;
}

uint64_t PayloadDescriptor::total_bytes() const {
  uint64_t n = 0;
  for (const auto& t : tensors) n += t.nbytes;
  return n;
}

std::string EncodeDescriptor(const PayloadDescriptor& d) {
  Writer w;
  w.Put(kDescriptorMagic);
  w.Put(kWireVersion);
  w.Put(static_cast<uint8_t>(d.kind));
  w.Put(uint8_t{0});
  w.Put(d.layout.n_layers);
  w.Put(d.layout.n_kv_heads);
  w.Put(d.layout.n_q_heads);
  w.Put(d.layout.head_dim);
  w.Put(static_cast<uint8_t>(d.layout.dtype));
  for (int i = 0; i < 7; ++i) w.Put(uint8_t{0});
  w.Put(d.layout.tokens);
  w.Put(static_cast<uint32_t>(d.tensors.size()));
  for (const auto& t : d.tensors) {
    w.Put(static_cast<uint8_t>(t.role));
    w.Put(static_cast<uint8_t>(t.dtype));
    w.Put(static_cast<uint8_t>(t.shape.size()));
    w.Put(uint8_t{0});
    w.Put(t.layer);
    for (int64_t dim : t.shape) w.Put(dim);
    w.Put(t.nbytes);
  }
  w.Put(static_cast<uint32_t>(d.metadata.size()));
  for (const auto& [k, v] : d.metadata) {
    w.PutBytes(k);
    w.PutBytes(v);
  }
  return w.Take();
}

Result<PayloadDescriptor> DecodeDescriptor(std::string_view bytes) {
  if (bytes.size() > kMaxDescriptorBytes) return Status::Corruption("payload descriptor too large");
  Reader r(bytes);
  uint32_t magic = 0;
  uint16_t version = 0;
  uint8_t kind = 0, reserved = 0;
  if (!r.Get(&magic) || !r.Get(&version) || !r.Get(&kind) || !r.Get(&reserved)) {
    return Truncated("preamble");
  }
  if (magic != kDescriptorMagic) return Status::Corruption("bad payload descriptor magic");
  if (version != kWireVersion) {
    return Status::NotSupported("payload descriptor version " + std::to_string(version));
  }
  if (kind != 1 && kind != 2)
    return Status::NotSupported("unknown payload kind " + std::to_string(kind));
  PayloadDescriptor d;
  d.kind = static_cast<PayloadKind>(kind);
  KVC_RETURN_IF_ERROR(DecodeLayout(r, &d.layout));
  uint32_t n = 0;
  if (!r.Get(&n)) return Truncated("tensor count");
  if (n > kMaxTensors) return Status::Corruption("too many tensors: " + std::to_string(n));
  d.tensors.resize(n);
  for (auto& t : d.tensors) KVC_RETURN_IF_ERROR(DecodeTensor(r, &t));
  uint32_t m = 0;
  if (!r.Get(&m)) return Truncated("metadata count");
  if (m > kMaxMetadata) return Status::Corruption("too many metadata entries");
  for (uint32_t i = 0; i < m; ++i) {
    std::string k, v;
    if (!r.GetBytes(&k) || !r.GetBytes(&v)) return Truncated("metadata");
    d.metadata[std::move(k)] = std::move(v);
  }
  if (r.left() != 0) return Status::Corruption("trailing bytes after payload descriptor");
  KVC_RETURN_IF_ERROR(CheckDescriptor(d));
  return d;
}

Status CheckDescriptor(const PayloadDescriptor& d) {
  for (const auto& t : d.tensors) {
    uint64_t want = DTypeSize(t.dtype);
    bool overflow = false;
    for (int64_t dim : t.shape) {
      overflow |= dim < 0 || __builtin_mul_overflow(want, static_cast<uint64_t>(dim), &want);
    }
    if (overflow || want > kMaxTensorBytes || want != t.nbytes) {
      return Status::Corruption(Where(t) + ": announced " + std::to_string(t.nbytes) +
                                " bytes for shape " + ShapeToString(t.shape));
    }
  }
  KVC_RETURN_IF_ERROR(d.layout.Validate());
  return d.kind == PayloadKind::kKvCache ? CheckKvCache(d) : CheckCompacted(d);
}

uint64_t Checksum(const void* data, size_t len) { return XXH3_64bits(data, len); }

}  // namespace kvc::transport
