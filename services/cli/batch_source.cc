#include "services/cli/batch_source.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "common/kv_io.h"
#include "common/safetensors.h"

namespace kvc::cli {
namespace {

std::string LayerName(int l, const char* kind) {
  return "layers." + std::to_string(l) + "." + kind;
}

struct FileStamp {
  uint64_t bytes = 0;
  int64_t mtime_ns = 0;
};

Result<FileStamp> Stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    if (err == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IOError("stat " + path + ": " + std::strerror(err));
  }
  return FileStamp{static_cast<uint64_t>(st.st_size),
                   int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
}

// K and V must be aligned to their element size in the file, or the reader would copy them and
// memory would no longer be bounded by one group.
Status CheckAligned(const SafetensorsReader& file) {
  for (const std::string& name : file.names()) {
    const SafetensorsEntry* e = file.Find(name);
    const bool kv = name.ends_with(".k") || name.ends_with(".v");
    if (kv && e->begin % DTypeSize(e->dtype) != 0) {
      return Status::NotSupported(
          file.source() + ": tensor '" + name +
          "' is not aligned to its element size in the file; batch streams only aligned dumps "
          "(kvcompact writes them so; re-save the dump or use kvcompact compact)");
    }
  }
  return Status::OK();
}

Result<std::optional<Tensor>> OptionalTensor(const SafetensorsReader& file, const std::string& n) {
  if (!file.Contains(n)) return std::optional<Tensor>();
  KVC_ASSIGN_OR_RETURN(Tensor t, file.Get(n));
  return std::optional<Tensor>(std::move(t));
}

}  // namespace

uint64_t DumpInfo::kv_bytes() const {
  const KvLayout& l = shape.layout;
  return static_cast<uint64_t>(l.n_layers) * 2 * l.n_kv_heads * l.tokens * l.head_dim *
         DTypeSize(l.dtype);
}

Result<DumpFile> DumpFile::Open(const std::string& path) {
  KVC_ASSIGN_OR_RETURN(FileStamp stamp, Stamp(path));
  KVC_ASSIGN_OR_RETURN(SafetensorsReader file, SafetensorsReader::Open(path));
  KVC_RETURN_IF_ERROR(CheckAligned(file));
  KvLoadOptions opts;
  opts.check_finite = false;  // the data is checked group by group, by Compact
  KVC_ASSIGN_OR_RETURN(KvCache cache, KvCacheFromSafetensors(file, opts));
  DumpFile d;
  d.info_.path = path;
  d.info_.file_bytes = stamp.bytes;
  d.info_.mtime_ns = stamp.mtime_ns;
  d.info_.shape.layout = cache.layout;
  if (cache.has_q_ref()) {
    d.info_.shape.q_ref_rows = cache.layers[0].q_ref->dim(1);
    d.info_.shape.q_dtype = cache.layers[0].q_ref->dtype();
  }
  if (cache.has_q_window()) {
    d.info_.shape.q_window_rows = cache.layers[0].q_window->dim(1);
    d.info_.shape.q_dtype = cache.layers[0].q_window->dtype();
  }
  d.info_.metadata = std::move(cache.metadata);
  return d;
}

Result<KvCache> DumpFile::Layers(int first, int count) const {
  const KvLayout& lay = info_.layout();
  if (first < 0 || count < 1 || first + count > lay.n_layers) {
    return Status::InvalidArgument(info_.path + ": layers [" + std::to_string(first) + ", " +
                                   std::to_string(first + count) + ") out of range");
  }
  KVC_ASSIGN_OR_RETURN(FileStamp stamp, Stamp(info_.path));
  if (stamp.bytes != info_.file_bytes || stamp.mtime_ns != info_.mtime_ns) {
    return Status::InvalidArgument(info_.path + ": the file changed while it was being read");
  }
  KVC_ASSIGN_OR_RETURN(SafetensorsReader file, SafetensorsReader::Open(info_.path));
  KvCache cache;
  cache.layout = lay;
  cache.layout.n_layers = count;
  cache.metadata = info_.metadata;
  for (int l = first; l < first + count; ++l) {
    LayerKv x;
    KVC_ASSIGN_OR_RETURN(x.k, file.Get(LayerName(l, "k")));
    KVC_ASSIGN_OR_RETURN(x.v, file.Get(LayerName(l, "v")));
    KVC_ASSIGN_OR_RETURN(x.q_window, OptionalTensor(file, LayerName(l, "q_window")));
    KVC_ASSIGN_OR_RETURN(x.q_ref, OptionalTensor(file, LayerName(l, "q_ref")));
    cache.layers.push_back(std::move(x));
  }
  KVC_RETURN_IF_ERROR(cache.Validate(/*check_finite=*/false).WithContext(info_.path));
  return cache;
}

Result<KvCache> DumpFile::Chunk(int first, int count, int64_t t0, int64_t t1,
                                const std::vector<int64_t>& q_rows) const {
  if (t0 < 0 || t1 <= t0 || t1 > info_.layout().tokens) {
    return Status::InvalidArgument(info_.path + ": chunk [" + std::to_string(t0) + ", " +
                                   std::to_string(t1) + ") out of range");
  }
  KVC_ASSIGN_OR_RETURN(KvCache views, Layers(first, count));
  KvCache chunk;
  chunk.layout = views.layout;
  chunk.layout.tokens = t1 - t0;
  chunk.metadata = views.metadata;
  for (const LayerKv& x : views.layers) {
    LayerKv c;
    c.k = SlicePositions(x.k, t0, t1);
    c.v = SlicePositions(x.v, t0, t1);
    if (x.q_ref) c.q_ref = q_rows.empty() ? x.q_ref->Clone() : GatherRows(*x.q_ref, q_rows);
    chunk.layers.push_back(std::move(c));
  }
  return chunk;
}

Tensor GatherRows(const Tensor& q, const std::vector<int64_t>& rows) {
  const int64_t heads = q.dim(0), n = q.dim(1), d = q.dim(2);
  const auto m = static_cast<int64_t>(rows.size());
  const size_t row_bytes = static_cast<size_t>(d) * DTypeSize(q.dtype());
  Tensor out = Tensor::Empty(q.dtype(), {heads, m, d});
  const auto* src = static_cast<const uint8_t*>(q.raw());
  auto* dst = static_cast<uint8_t*>(out.raw());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < m; ++i) {
      std::memcpy(dst + (h * m + i) * row_bytes, src + (h * n + rows[i]) * row_bytes, row_bytes);
    }
  }
  return out;
}

Tensor SlicePositions(const Tensor& kv, int64_t t0, int64_t t1) {
  const int64_t heads = kv.dim(0), T = kv.dim(1), d = kv.dim(2), n = t1 - t0;
  const size_t row_bytes = static_cast<size_t>(d) * DTypeSize(kv.dtype());
  Tensor out = Tensor::Empty(kv.dtype(), {heads, n, d});
  const auto* src = static_cast<const uint8_t*>(kv.raw());
  auto* dst = static_cast<uint8_t*>(out.raw());
  for (int64_t h = 0; h < heads; ++h) {
    std::memcpy(dst + h * n * row_bytes, src + (h * T + t0) * row_bytes, n * row_bytes);
  }
  return out;
}

}  // namespace kvc::cli
