#include "services/cli/batch_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>

#include "common/kv_io.h"
#include "common/safetensors.h"

namespace kvc::cli {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kTempTag = ".kvcbatch-";

Status Errno(const std::string& what, const std::string& path, int err) {
  return Status::IOError(what + " " + path + ": " + std::strerror(err));
}

Status WriteAll(int fd, const std::string& path, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Errno("write", path, errno);
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

// Appends `n` bytes of `in` (from offset 0) to `out`, in the kernel where it can.
Status CopyFile(int in, const std::string& in_path, int out, const std::string& out_path,
                uint64_t n) {
  loff_t off = 0;
  while (static_cast<uint64_t>(off) < n) {
    const ssize_t c = ::copy_file_range(in, &off, out, nullptr, n - off, 0);
    if (c > 0) continue;
    if (c < 0 && errno == EINTR) continue;
    if (c == 0) return Status::IOError(in_path + ": shorter than the bytes written to it");
    if (errno != EXDEV && errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL) {
      return Errno("copy_file_range", in_path + " -> " + out_path, errno);
    }
    std::vector<uint8_t> buf(size_t{4} << 20);  // the kernel cannot: copy through user space
    while (static_cast<uint64_t>(off) < n) {
      const ssize_t r = ::pread(in, buf.data(), std::min<uint64_t>(buf.size(), n - off), off);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        return r == 0 ? Status::IOError(in_path + ": short read") : Errno("read", in_path, errno);
      KVC_RETURN_IF_ERROR(WriteAll(out, out_path, buf.data(), static_cast<size_t>(r)));
      off += r;
    }
  }
  return Status::OK();
}

Status SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("open directory", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? Status::OK() : Errno("fsync directory", dir, err);
}

std::string LayerName(int l, const char* kind) {
  return "layers." + std::to_string(l) + "." + kind;
}

}  // namespace

bool IsBatchTemporary(std::string_view name) {
  return name.starts_with(".") && name.find(kTempTag) != std::string_view::npos &&
         name.ends_with(".tmp");
}

struct CompactedFileWriter::Stream {
  size_t elem = 0;
  std::string path;
  int fd = -1;
  uint64_t bytes = 0;
};

struct CompactedFileWriter::Record {
  std::string name;
  DType dtype;
  Shape shape;
  size_t elem;
  uint64_t offset;  // within its stream
  uint64_t nbytes;
};

Result<std::unique_ptr<CompactedFileWriter>> CompactedFileWriter::Create(
    const std::string& final_path, const KvLayout& layout) {
  KVC_RETURN_IF_ERROR(layout.Validate());
  static std::atomic<uint64_t> counter{0};
  const fs::path p(final_path);
  std::unique_ptr<CompactedFileWriter> w(new CompactedFileWriter());
  w->final_path_ = final_path;
  w->temp_prefix_ = (p.parent_path() / ("." + p.filename().string())).string() +
                    std::string(kTempTag) + std::to_string(::getpid()) + "-" +
                    std::to_string(counter++);
  w->layout_ = layout;
  return w;
}

CompactedFileWriter::~CompactedFileWriter() { Abandon(); }

void CompactedFileWriter::Abandon() {
  for (auto& s : streams_) {
    if (s->fd >= 0) ::close(s->fd);
    s->fd = -1;
    ::unlink(s->path.c_str());
  }
  streams_.clear();
  ::unlink((temp_prefix_ + ".out.tmp").c_str());
  done_ = true;
}

Status CompactedFileWriter::Append(const std::string& name, const Tensor& t) {
  const size_t elem = DTypeSize(t.dtype());
  auto it = std::find_if(streams_.begin(), streams_.end(),
                         [&](const auto& s) { return s->elem == elem; });
  if (it == streams_.end()) {
    auto s = std::make_unique<Stream>();
    s->elem = elem;
    s->path = temp_prefix_ + ".s" + std::to_string(elem) + ".tmp";
    s->fd = ::open(s->path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (s->fd < 0) return Errno("create", s->path, errno);
    streams_.push_back(std::move(s));
    it = streams_.end() - 1;
  }
  Stream& s = **it;
  KVC_RETURN_IF_ERROR(WriteAll(s.fd, s.path, t.raw(), t.nbytes()));
  records_.push_back(Record{name, t.dtype(), t.shape(), elem, s.bytes, t.nbytes()});
  s.bytes += t.nbytes();
  return Status::OK();
}

Status CompactedFileWriter::AppendLayer(const CompactedLayer& layer) {
  if (done_) return Status::FailedPrecondition("writer for " + final_path_ + " is closed");
  if (layers_written_ >= layout_.n_layers) {
    return Status::FailedPrecondition(final_path_ + ": more layers than the layout's " +
                                      std::to_string(layout_.n_layers));
  }
  CompactedCache one;
  one.layout = layout_;
  one.layout.n_layers = 1;
  one.layers.push_back(layer);
  const int l = layers_written_;
  Status st = one.Validate().WithContext(final_path_ + ": layer " + std::to_string(l));
  const auto n = static_cast<int64_t>(layer.offsets.size());
  Tensor offsets = Tensor::Empty(DType::kI64, {n});
  std::copy(layer.offsets.begin(), layer.offsets.end(), offsets.data<int64_t>());
  if (st.ok()) st = Append(LayerName(l, "k"), layer.k);
  if (st.ok()) st = Append(LayerName(l, "v"), layer.v);
  if (st.ok()) st = Append(LayerName(l, "beta"), layer.beta);
  if (st.ok()) st = Append(LayerName(l, "offsets"), offsets);
  if (!st.ok()) {
    Abandon();
    return st;
  }
  ++layers_written_;
  return Status::OK();
}

Status CompactedFileWriter::Finish(const std::map<std::string, std::string>& metadata) {
  if (done_) return Status::FailedPrecondition("writer for " + final_path_ + " is closed");
  if (layers_written_ != layout_.n_layers) {
    Abandon();
    return Status::FailedPrecondition(final_path_ + ": " + std::to_string(layers_written_) +
                                      " of " + std::to_string(layout_.n_layers) +
                                      " layers written");
  }
  std::map<std::string, std::string> md = metadata;
  const std::pair<std::string, std::string> reserved[] = {
      {"format", kCompactedCacheFormat},
      {"n_layers", std::to_string(layout_.n_layers)},
      {"n_q_heads", std::to_string(layout_.n_q_heads)},
      {"source_tokens", std::to_string(layout_.tokens)}};
  for (const auto& [key, value] : reserved) {
    auto it = md.find(key);
    if (it != md.end() && it->second != value) {
      Abandon();
      return Status::InvalidArgument("metadata '" + key + "' is reserved");
    }
    md[key] = value;
  }
  // Tensor order of the loader's writer: decreasing element size, then order of appending.
  std::stable_sort(streams_.begin(), streams_.end(),
                   [](const auto& a, const auto& b) { return a->elem > b->elem; });
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  nlohmann::ordered_json m = nlohmann::ordered_json::object();
  for (const auto& [k, v] : md) m[k] = v;
  h["__metadata__"] = std::move(m);
  uint64_t base = 0;
  for (const auto& s : streams_) {
    for (const Record& r : records_) {
      if (r.elem != s->elem) continue;
      h[r.name] = {{"dtype", DTypeName(r.dtype)},
                   {"shape", r.shape},
                   {"data_offsets", {base + r.offset, base + r.offset + r.nbytes}}};
    }
    base += s->bytes;
  }
  std::string header;
  try {
    header = h.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    Abandon();
    return Status::InvalidArgument(std::string("metadata is not valid UTF-8: ") + e.what());
  }
  header.append((8 - header.size() % 8) % 8, ' ');
  Status st = WriteFinal(header);
  Abandon();
  return st;
}

Status CompactedFileWriter::WriteFinal(const std::string& header) {
  const std::string tmp = temp_prefix_ + ".out.tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("create", tmp, errno);
  const uint64_t len = header.size();
  uint8_t le[8];
  std::memcpy(le, &len, 8);  // the format is little-endian, as is every supported host
  Status st = WriteAll(fd, tmp, le, 8);
  if (st.ok()) st = WriteAll(fd, tmp, header.data(), header.size());
  for (const auto& s : streams_) {
    if (st.ok()) st = CopyFile(s->fd, s->path, fd, tmp, s->bytes);
  }
  if (st.ok() && ::fsync(fd) != 0) st = Errno("fsync", tmp, errno);
  if (::close(fd) != 0 && st.ok()) st = Errno("close", tmp, errno);
  if (st.ok() && ::rename(tmp.c_str(), final_path_.c_str()) != 0) {
    st = Errno("rename", tmp + " -> " + final_path_, errno);
  }
  if (!st.ok()) return st;
  const std::string dir = fs::path(final_path_).parent_path().string();
  return SyncDirectory(dir.empty() ? "." : dir);
}

}  // namespace kvc::cli

namespace kvc::cli {
namespace {

Result<int64_t> MetaInt(const SafetensorsReader& file, const char* key) {
  auto it = file.metadata().find(key);
  if (it == file.metadata().end()) {
    return Status::InvalidArgument(file.source() + ": missing metadata '" + key + "'");
  }
  int64_t v = 0;
  const std::string& s = it->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v <= 0) {
    return Status::InvalidArgument(file.source() + ": metadata '" + key + "' = '" + s +
                                   "' is not a positive integer");
  }
  return v;
}

// The layout recorded in a compacted file's header, and a check that it holds exactly the
// tensors of n_layers layers.
Result<KvLayout> CompactedLayoutOf(const SafetensorsReader& file) {
  auto fmt = file.metadata().find("format");
  if (fmt == file.metadata().end() || fmt->second != kCompactedCacheFormat) {
    return Status::InvalidArgument(file.source() + ": not a " + std::string(kCompactedCacheFormat) +
                                   " file");
  }
  KvLayout lay;
  KVC_ASSIGN_OR_RETURN(const int64_t n_layers, MetaInt(file, "n_layers"));
  KVC_ASSIGN_OR_RETURN(const int64_t n_q, MetaInt(file, "n_q_heads"));
  KVC_ASSIGN_OR_RETURN(lay.tokens, MetaInt(file, "source_tokens"));
  if (n_layers > (1 << 16) || file.size() != static_cast<size_t>(n_layers) * 4) {
    return Status::InvalidArgument(file.source() + ": " + std::to_string(file.size()) +
                                   " tensors for " + std::to_string(n_layers) + " layers");
  }
  for (int l = 0; l < n_layers; ++l) {
    for (const char* kind : {"k", "v", "beta", "offsets"}) {
      if (!file.Contains(LayerName(l, kind))) {
        return Status::InvalidArgument(file.source() + ": missing " + LayerName(l, kind));
      }
    }
  }
  const SafetensorsEntry* k = file.Find("layers.0.k");
  const SafetensorsEntry* off = file.Find("layers.0.offsets");
  if (k->shape.size() != 2 || off->shape.size() != 1 || off->shape[0] < 2) {
    return Status::InvalidArgument(file.source() + ": layer 0 has malformed k or offsets");
  }
  lay.n_layers = static_cast<int>(n_layers);
  lay.n_q_heads = static_cast<int>(n_q);
  lay.n_kv_heads = static_cast<int>(off->shape[0] - 1);
  lay.head_dim = static_cast<int>(k->shape[1]);
  lay.dtype = k->dtype;
  KVC_RETURN_IF_ERROR(lay.Validate().WithContext(file.source()));
  return lay;
}

Result<CompactedLayer> ReadLayer(const SafetensorsReader& file, int l) {
  CompactedLayer x;
  KVC_ASSIGN_OR_RETURN(x.k, file.Get(LayerName(l, "k")));
  KVC_ASSIGN_OR_RETURN(x.v, file.Get(LayerName(l, "v")));
  KVC_ASSIGN_OR_RETURN(x.beta, file.Get(LayerName(l, "beta")));
  KVC_ASSIGN_OR_RETURN(Tensor off, file.Get(LayerName(l, "offsets")));
  if (off.dtype() != DType::kI64 || off.rank() != 1) {
    return Status::InvalidArgument(file.source() + ": " + LayerName(l, "offsets") +
                                   " must be I64 [n_kv_heads + 1]");
  }
  x.offsets.assign(off.data<int64_t>(), off.data<int64_t>() + off.numel());
  return x;
}

}  // namespace

Result<OutputInfo> VerifyCompactedFile(const std::string& path) {
  OutputInfo info;
  {
    KVC_ASSIGN_OR_RETURN(SafetensorsReader file, SafetensorsReader::Open(path));
    KVC_ASSIGN_OR_RETURN(info.layout, CompactedLayoutOf(file));
    for (const auto& [k, v] : file.metadata()) {
      if (k != "format" && k != "n_layers" && k != "n_q_heads" && k != "source_tokens") {
        info.metadata[k] = v;
      }
    }
  }
  for (int l = 0; l < info.layout.n_layers; ++l) {
    // A fresh mapping per layer: the pages of the layers checked before are released.
    KVC_ASSIGN_OR_RETURN(SafetensorsReader file, SafetensorsReader::Open(path));
    CompactedCache one;
    one.layout = info.layout;
    one.layout.n_layers = 1;
    KVC_ASSIGN_OR_RETURN(CompactedLayer x, ReadLayer(file, l));
    one.layers.push_back(std::move(x));
    KVC_RETURN_IF_ERROR(one.Validate().WithContext(path + ": layer " + std::to_string(l)));
    info.entries += one.layers[0].total();
  }
  return info;
}

}  // namespace kvc::cli
