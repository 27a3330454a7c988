// safetensors reading and writing.
//
// Format (little-endian): an 8-byte u64 N, then N bytes of JSON header, then the data buffer.
// The header is an object mapping tensor name -> {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets relative to the start of the data buffer) plus an optional "__metadata__" object of
// string -> string. The reader is strict: the data buffer must be indexed exactly (no overlaps,
// no holes, nothing past the last tensor), every byte range must match shape x dtype size, and
// anything unexpected in the header is rejected.
//
// Error codes used by the reader:
//   Corruption      the bytes are not a well-formed safetensors file (the message names what)
//   NotSupported    a dtype other than F32, F16, BF16, I32, I64
//   NotFound        Open() of a missing file; Get() of a name that is not in the file
//   IOError         the OS failed to open, stat, map or read the file
// and by the writer: InvalidArgument for bad names/duplicates, IOError for the OS.
//
// Thread safety: a SafetensorsReader is immutable after construction; concurrent const calls
// are safe. Tensors it returns share its storage (see Tensor for sharing rules).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "common/tensor.h"

namespace kvc {

using SafetensorsMetadata = std::map<std::string, std::string>;

// The largest JSON header the reader accepts.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = uint64_t{100} << 20;

// Where one tensor lives in the data buffer.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t begin = 0;  // byte offset into the data buffer
  uint64_t end = 0;    // one past the last byte
};

struct SafetensorsOpenOptions {
  // Files of at least this many bytes are memory-mapped (MAP_PRIVATE, readable and writable
  // copy-on-write: writes to tensors never reach the file); smaller files are read into memory.
  // A writable private mapping counts against the kernel's commit limit, which matters only
  // under strict overcommit (vm.overcommit_memory=2). Default: 1 MiB.
  uint64_t mmap_threshold_bytes = uint64_t{1} << 20;
};

class SafetensorsReader {
 public:
  // Opens and validates the file at `path`. NotFound if it does not exist; IOError if the OS
  // fails; Corruption/NotSupported as listed above. A mapped file must not be truncated while
  // any tensor from it is alive (the OS would deliver SIGBUS).
  static Result<SafetensorsReader> Open(const std::string& path,
                                        const SafetensorsOpenOptions& options = {});

  // Validates `bytes` as a safetensors file without copying them. `owner` keeps the bytes alive
  // for as long as the reader or any tensor from it exists (may be null if the caller guarantees
  // that). Tensors alias `bytes`: writing through them is allowed only if that memory is
  // writable. `source` names the bytes in error messages.
  static Result<SafetensorsReader> Parse(std::span<const uint8_t> bytes,
                                         std::shared_ptr<void> owner,
                                         std::string_view source = "<memory>");

  // Like Parse, but first copies `bytes` into storage owned by the reader (always writable).
  static Result<SafetensorsReader> ParseCopy(std::span<const uint8_t> bytes,
                                             std::string_view source = "<memory>");

  // Tensor names in data-buffer order (the order the writer wrote them).
  const std::vector<std::string>& names() const { return names_; }
  size_t size() const { return entries_.size(); }
  bool Contains(std::string_view name) const;
  // Where `name` lives, or nullptr if it is not in the file.
  const SafetensorsEntry* Find(std::string_view name) const;

  // The tensor `name`, sharing the reader's storage (no copy) when its bytes are aligned to its
  // element size, which holds for files whose tensors are ordered by decreasing element size
  // (as kv_io writes them). A misaligned tensor is copied into aligned storage. NotFound if the
  // name is absent.
  Result<Tensor> Get(std::string_view name) const;

  // The "__metadata__" entries (empty if the file has none).
  const SafetensorsMetadata& metadata() const { return metadata_; }
  // True if the file was memory-mapped (Open only).
  bool mapped() const { return mapped_; }
  // The path, or the source given to Parse.
  const std::string& source() const { return source_; }

 private:
  SafetensorsReader() = default;

  std::shared_ptr<void> owner_;
  const uint8_t* data_ = nullptr;          // start of the data buffer
  std::vector<SafetensorsEntry> entries_;  // sorted by begin
  std::vector<std::string> names_;
  std::map<std::string, size_t, std::less<>> index_;
  SafetensorsMetadata metadata_;
  std::string source_;
  bool mapped_ = false;
};

// One tensor to write. The tensor must be host-contiguous (every Tensor is).
struct NamedTensor {
  std::string name;
  Tensor tensor;
};

// Encodes `tensors`, in the given order, and `metadata` as a safetensors byte string. The header
// is padded with spaces so the data buffer starts at an 8-byte boundary; a tensor is naturally
// aligned in a mapped file when every tensor before it has an element size at least as large
// (order tensors by decreasing element size to get that). InvalidArgument for an empty,
// duplicate or reserved ("__metadata__") name, or text that is not valid UTF-8.
Result<std::vector<uint8_t>> EncodeSafetensors(std::span<const NamedTensor> tensors,
                                               const SafetensorsMetadata& metadata = {});

// Writes the same bytes as EncodeSafetensors to `path` atomically: a temporary file in the same
// directory is written, fsynced and renamed over `path`, and the directory is fsynced. On any
// error `path` is left as it was and the temporary file is removed.
Status WriteSafetensors(const std::string& path, std::span<const NamedTensor> tensors,
                        const SafetensorsMetadata& metadata = {});

}  // namespace kvc
