#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>

namespace kvc {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swapping");

namespace {

using Json = nlohmann::json;

constexpr char kMetadataKey[] = "__metadata__";
// A safetensors header nests at most 3 levels (root -> entry -> shape); anything much deeper is
// rejected while parsing so a hostile header cannot make the parser build a deep tree.
constexpr int kMaxJsonDepth = 16;

Status Corrupt(std::string_view source, const std::string& msg) {
  return Status::Corruption(std::string(source) + ": " + msg);
}

std::string ErrnoText(int err) { return std::generic_category().message(err); }

Status ErrnoStatus(const char* op, const std::string& path, int err) {
  if (err == ENOENT) return Status::NotFound(path + ": no such file");
  return Status::IOError(std::string(op) + " " + path + ": " + ErrnoText(err));
}

uint64_t LoadU64Le(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;  // the host is little-endian (static_assert above)
}

// Thrown from inside the JSON parser callback only; caught in ParseHeaderJson.
struct JsonTooDeep {};

// Parses the header text, rejecting duplicate keys (which the DOM would silently merge) and
// excessive nesting. The message of a syntax error carries the byte position in the header.
Status ParseHeaderJson(std::string_view source, const char* text, size_t n, Json* out) {
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto cb = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth > kMaxJsonDepth) throw JsonTooDeep{};
    switch (event) {
      case Json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!open_objects.empty() &&
            !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
          duplicate = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  try {
    *out = Json::parse(text, text + n, cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const JsonTooDeep&) {
    return Corrupt(source, "header JSON nests deeper than " + std::to_string(kMaxJsonDepth) +
                               " levels; not a safetensors header");
  } catch (const Json::exception& e) {
    return Corrupt(source, std::string("header is not valid JSON: ") + e.what());
  }
  if (!duplicate.empty()) return Corrupt(source, "header has duplicate key '" + duplicate + "'");
  return Status::OK();
}

// Reads a JSON value that must be a non-negative integer fitting in int64.
Status ReadU63(std::string_view source, const std::string& what, const Json& v, uint64_t* out) {
  if (v.is_number_integer() && !v.is_number_unsigned()) {
    return Corrupt(source, what + " is negative (" + v.dump() + ")");
  }
  if (!v.is_number_unsigned()) {
    return Corrupt(source, what + " must be a non-negative integer, got " + v.dump());
  }
  const uint64_t x = v.get<uint64_t>();
  if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Corrupt(source, what + " " + std::to_string(x) + " is too large");
  }
  *out = x;
  return Status::OK();
}

Status ParseShape(std::string_view source, const std::string& name, const Json& v, Shape* shape) {
  if (!v.is_array()) return Corrupt(source, "tensor '" + name + "': \"shape\" must be an array");
  // The product of the non-zero dims must fit in int64 so that element counts never overflow,
  // whatever the order of the dims.
  uint64_t product = 1;
  for (size_t i = 0; i < v.size(); ++i) {
    uint64_t d = 0;
    KVC_RETURN_IF_ERROR(
        ReadU63(source, "tensor '" + name + "': dimension " + std::to_string(i), v[i], &d));
    if (d > 0 && (__builtin_mul_overflow(product, d, &product) ||
                  product > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
      return Corrupt(source, "tensor '" + name + "': shape " + v.dump() + " has too many elements");
    }
    shape->push_back(static_cast<int64_t>(d));
  }
  return Status::OK();
}

Status ParseOffsets(std::string_view source, const std::string& name, const Json& v,
                    uint64_t data_size, SafetensorsEntry* e) {
  if (!v.is_array() || v.size() != 2) {
    return Corrupt(source, "tensor '" + name + "': \"data_offsets\" must be [begin, end]");
  }
  KVC_RETURN_IF_ERROR(ReadU63(source, "tensor '" + name + "': begin offset", v[0], &e->begin));
  KVC_RETURN_IF_ERROR(ReadU63(source, "tensor '" + name + "': end offset", v[1], &e->end));
  if (e->end < e->begin) {
    return Corrupt(source, "tensor '" + name + "': end offset " + std::to_string(e->end) +
                               " is before begin offset " + std::to_string(e->begin));
  }
  if (e->end > data_size) {
    return Corrupt(source, "tensor '" + name + "': end offset " + std::to_string(e->end) +
                               " is beyond the data buffer (" + std::to_string(data_size) +
                               " bytes)");
  }
  return Status::OK();
}

Status ParseEntry(std::string_view source, const std::string& name, const Json& v,
                  uint64_t data_size, SafetensorsEntry* e) {
  if (!v.is_object()) return Corrupt(source, "tensor '" + name + "': entry must be an object");
  for (const auto& [key, unused] : v.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return Corrupt(source, "tensor '" + name + "': unknown field '" + key + "'");
    }
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!v.contains(field)) {
      return Corrupt(source, "tensor '" + name + "': missing field \"" + field + "\"");
    }
  }
  e->name = name;
  const Json& dtype = v["dtype"];
  if (!dtype.is_string())
    return Corrupt(source, "tensor '" + name + "': \"dtype\" must be a string");
  Result<DType> dt = ParseDType(dtype.get<std::string>());
  if (!dt.ok()) return dt.status().WithContext(std::string(source) + ": tensor '" + name + "'");
  e->dtype = *dt;
  KVC_RETURN_IF_ERROR(ParseShape(source, name, v["shape"], &e->shape));
  KVC_RETURN_IF_ERROR(ParseOffsets(source, name, v["data_offsets"], data_size, e));
  // numel fits in int64 (ParseShape); the byte count may not fit in uint64 only for absurd
  // shapes, which then cannot match a range inside the buffer anyway.
  uint64_t nbytes = 0;
  const bool overflow = __builtin_mul_overflow(static_cast<uint64_t>(ShapeNumel(e->shape)),
                                               DTypeSize(e->dtype), &nbytes);
  if (overflow || nbytes != e->end - e->begin) {
    return Corrupt(source, "tensor '" + name + "': " + std::to_string(e->end - e->begin) +
                               " bytes in data_offsets, but shape " + ShapeToString(e->shape) +
                               " x " + DTypeName(e->dtype) + " needs " +
                               (overflow ? std::string("more than 2^64") : std::to_string(nbytes)));
  }
  return Status::OK();
}

Status ParseMetadata(std::string_view source, const Json& v, SafetensorsMetadata* out) {
  if (!v.is_object()) return Corrupt(source, "\"__metadata__\" must be an object");
  for (const auto& [key, value] : v.items()) {
    if (!value.is_string()) {
      return Corrupt(source, "metadata '" + key + "' must be a string, got " + value.type_name());
    }
    (*out)[key] = value.get<std::string>();
  }
  return Status::OK();
}

// entries sorted by (begin, end): each must start where the previous ended, and the last must
// end at the end of the buffer.
Status CheckCoverage(std::string_view source, const std::vector<SafetensorsEntry>& entries,
                     uint64_t data_size) {
  uint64_t pos = 0;
  const SafetensorsEntry* prev = nullptr;
  for (const SafetensorsEntry& e : entries) {
    if (e.begin < pos) {
      return Corrupt(
          source, "tensors '" + prev->name + "' and '" + e.name + "' overlap in the data buffer");
    }
    if (e.begin > pos) {
      return Corrupt(source, "data buffer has a hole: bytes [" + std::to_string(pos) + ", " +
                                 std::to_string(e.begin) + ") belong to no tensor");
    }
    pos = e.end;
    prev = &e;
  }
  if (pos != data_size) {
    return Corrupt(source, "data buffer has " + std::to_string(data_size - pos) +
                               " trailing bytes that belong to no tensor");
  }
  return Status::OK();
}

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

std::shared_ptr<void> AllocAligned(size_t n) {
  void* p = std::aligned_alloc(64, ((n ? n : 1) + 63) / 64 * 64);
  if (p == nullptr) return nullptr;
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

Status ReadFully(int fd, const std::string& path, uint8_t* dst, size_t n) {
  size_t done = 0;
  while (done < n) {
    const ssize_t r = ::pread(fd, dst + done, n - done, static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus("read", path, errno);
    if (r == 0) return Status::IOError(path + ": file shrank while being read");
    done += static_cast<size_t>(r);
  }
  return Status::OK();
}

}  // namespace

Result<SafetensorsReader> SafetensorsReader::Parse(std::span<const uint8_t> bytes,
                                                   std::shared_ptr<void> owner,
                                                   std::string_view source) {
  if (bytes.size() < 8) {
    return Corrupt(source, "file is " + std::to_string(bytes.size()) +
                               " bytes, shorter than the 8-byte header length");
  }
  const uint64_t n = LoadU64Le(bytes.data());
  if (n > kSafetensorsMaxHeaderBytes) {
    return Corrupt(source, "header length " + std::to_string(n) + " exceeds the limit of " +
                               std::to_string(kSafetensorsMaxHeaderBytes) + " bytes");
  }
  if (n > bytes.size() - 8) {
    return Corrupt(source, "header length " + std::to_string(n) + " exceeds the " +
                               std::to_string(bytes.size() - 8) + " bytes after the length");
  }
  Json header;
  KVC_RETURN_IF_ERROR(
      ParseHeaderJson(source, reinterpret_cast<const char*>(bytes.data() + 8), n, &header));
  if (!header.is_object()) {
    return Corrupt(source, std::string("header must be a JSON object, got ") + header.type_name());
  }
  SafetensorsReader r;
  r.source_ = std::string(source);
  const uint64_t data_size = bytes.size() - 8 - n;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      KVC_RETURN_IF_ERROR(ParseMetadata(source, value, &r.metadata_));
      continue;
    }
    SafetensorsEntry e;
    KVC_RETURN_IF_ERROR(ParseEntry(source, key, value, data_size, &e));
    r.entries_.push_back(std::move(e));
  }
  std::stable_sort(r.entries_.begin(), r.entries_.end(),
                   [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  KVC_RETURN_IF_ERROR(CheckCoverage(source, r.entries_, data_size));
  for (size_t i = 0; i < r.entries_.size(); ++i) {
    r.names_.push_back(r.entries_[i].name);
    r.index_.emplace(r.entries_[i].name, i);
  }
  r.owner_ = std::move(owner);
  r.data_ = bytes.data() + 8 + n;
  return r;
}

Result<SafetensorsReader> SafetensorsReader::ParseCopy(std::span<const uint8_t> bytes,
                                                       std::string_view source) {
  std::shared_ptr<void> buf = AllocAligned(bytes.size());
  if (buf == nullptr) {
    return Status::ResourceExhausted(std::string(source) + ": cannot allocate " +
                                     std::to_string(bytes.size()) + " bytes");
  }
  if (!bytes.empty()) std::memcpy(buf.get(), bytes.data(), bytes.size());
  std::span<const uint8_t> copy(static_cast<const uint8_t*>(buf.get()), bytes.size());
  return Parse(copy, std::move(buf), source);
}

Result<SafetensorsReader> SafetensorsReader::Open(const std::string& path,
                                                  const SafetensorsOpenOptions& options) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path, errno);
  FdCloser closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus("stat", path, errno);
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(path + ": not a regular file");
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    return Corrupt(
        path, "file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  std::shared_ptr<void> owner;
  const bool map = size >= options.mmap_threshold_bytes;
  if (map) {
    // PROT_WRITE with MAP_PRIVATE: tensors are writable copy-on-write; the file never changes.
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return ErrnoStatus("mmap", path, errno);
    owner = std::shared_ptr<void>(p, [size](void* q) { ::munmap(q, size); });
  } else {
    owner = AllocAligned(size);
    if (owner == nullptr) {
      return Status::ResourceExhausted(path + ": cannot allocate " + std::to_string(size) +
                                       " bytes");
    }
    KVC_RETURN_IF_ERROR(ReadFully(fd, path, static_cast<uint8_t*>(owner.get()), size));
  }
  std::span<const uint8_t> bytes(static_cast<const uint8_t*>(owner.get()), size);
  Result<SafetensorsReader> r = Parse(bytes, std::move(owner), path);
  if (r.ok()) r->mapped_ = map;
  return r;
}

bool SafetensorsReader::Contains(std::string_view name) const {
  return index_.find(name) != index_.end();
}

const SafetensorsEntry* SafetensorsReader::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Result<Tensor> SafetensorsReader::Get(std::string_view name) const {
  const SafetensorsEntry* e = Find(name);
  if (e == nullptr) {
    return Status::NotFound(source_ + ": no tensor named '" + std::string(name) + "'");
  }
  // The storage is never read-only through our own paths (mapped copy-on-write or owned), and
  // Parse documents that writes need writable memory.
  auto* p = const_cast<uint8_t*>(data_ + e->begin);
  if (reinterpret_cast<uintptr_t>(p) % DTypeSize(e->dtype) == 0) {
    return Tensor::View(e->dtype, e->shape, p, owner_);
  }
  Tensor copy = Tensor::Empty(e->dtype, e->shape);
  if (copy.nbytes() > 0) std::memcpy(copy.raw(), p, copy.nbytes());
  return copy;
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

// The JSON header, padded with spaces so that 8 + size is a multiple of 8.
Result<std::string> BuildHeader(std::span<const NamedTensor> tensors,
                                const SafetensorsMetadata& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h[kMetadataKey] = std::move(m);
  }
  std::set<std::string_view> seen;
  uint64_t offset = 0;
  for (const NamedTensor& t : tensors) {
    if (t.name.empty()) return Status::InvalidArgument("safetensors: empty tensor name");
    if (t.name == kMetadataKey) {
      return Status::InvalidArgument("safetensors: tensor name '__metadata__' is reserved");
    }
    if (!seen.insert(t.name).second) {
      return Status::InvalidArgument("safetensors: duplicate tensor name '" + t.name + "'");
    }
    for (int64_t d : t.tensor.shape()) {
      if (d < 0) {
        return Status::InvalidArgument("safetensors: tensor '" + t.name + "' has shape " +
                                       ShapeToString(t.tensor.shape()));
      }
    }
    if (t.tensor.nbytes() > 0 && t.tensor.raw() == nullptr) {
      return Status::InvalidArgument("safetensors: tensor '" + t.name + "' has no storage");
    }
    const uint64_t end = offset + t.tensor.nbytes();
    h[t.name] = {{"dtype", DTypeName(t.tensor.dtype())},
                 {"shape", t.tensor.shape()},
                 {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text;
  try {
    text = h.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    return Status::InvalidArgument(std::string("safetensors: cannot encode header (tensor names "
                                               "and metadata must be valid UTF-8): ") +
                                   e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

void AppendU64Le(uint64_t v, uint8_t* out) { std::memcpy(out, &v, 8); }

Status WriteAll(int fd, const std::string& path, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoStatus("write", path, errno);
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

Status WriteContents(int fd, const std::string& path, const std::string& header,
                     std::span<const NamedTensor> tensors) {
  uint8_t len[8];
  AppendU64Le(header.size(), len);
  KVC_RETURN_IF_ERROR(WriteAll(fd, path, len, 8));
  KVC_RETURN_IF_ERROR(WriteAll(fd, path, header.data(), header.size()));
  for (const NamedTensor& t : tensors) {
    KVC_RETURN_IF_ERROR(WriteAll(fd, path, t.tensor.raw(), t.tensor.nbytes()));
  }
  if (::fsync(fd) != 0) return ErrnoStatus("fsync", path, errno);
  return Status::OK();
}

Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open directory", dir, errno);
  FdCloser closer{fd};
  if (::fsync(fd) != 0) return ErrnoStatus("fsync directory", dir, errno);
  return Status::OK();
}

std::string TempPathFor(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

}  // namespace

Result<std::vector<uint8_t>> EncodeSafetensors(std::span<const NamedTensor> tensors,
                                               const SafetensorsMetadata& metadata) {
  KVC_ASSIGN_OR_RETURN(std::string header, BuildHeader(tensors, metadata));
  size_t total = 8 + header.size();
  for (const NamedTensor& t : tensors) total += t.tensor.nbytes();
  std::vector<uint8_t> out(total);
  AppendU64Le(header.size(), out.data());
  std::memcpy(out.data() + 8, header.data(), header.size());
  size_t pos = 8 + header.size();
  for (const NamedTensor& t : tensors) {
    if (t.tensor.nbytes() > 0) std::memcpy(out.data() + pos, t.tensor.raw(), t.tensor.nbytes());
    pos += t.tensor.nbytes();
  }
  return out;
}

Status WriteSafetensors(const std::string& path, std::span<const NamedTensor> tensors,
                        const SafetensorsMetadata& metadata) {
  KVC_ASSIGN_OR_RETURN(std::string header, BuildHeader(tensors, metadata));
  const std::string tmp = TempPathFor(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    return Status::IOError("create " + tmp + ": " + ErrnoText(err));
  }
  Status st = WriteContents(fd, tmp, header, tensors);
  if (::close(fd) != 0 && st.ok()) {
    const int err = errno;
    st = Status::IOError("close " + tmp + ": " + ErrnoText(err));
  }
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    st = Status::IOError("rename " + tmp + " to " + path + ": " + ErrnoText(err));
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  return SyncDirectory(dir.empty() ? "." : dir);
}

}  // namespace kvc
