// Writing and checking compacted-cache files layer by layer, so that neither needs the whole
// compacted cache in memory.
//
// CompactedFileWriter produces exactly the bytes SaveCompactedCache would write for the same
// cache and metadata (same tensor order, header and padding), but receives the cache one layer
// at a time: tensors go to scratch files, one per element size, and Finish() writes the header
// and copies the scratch files behind it (in the kernel, with copy_file_range). Nothing appears
// under the final name until the complete file has been written and fsynced; then it is renamed
// into place and the directory is fsynced. Temporary and scratch files are named
// "<dir>/.<final name>.kvcbatch-<pid>-<n>.<what>.tmp" (IsBatchTemporary recognises them), and
// are removed on every error, by Abandon(), and by the destructor of an unfinished writer; a
// killed process leaves them behind for the next run to clean.
//
// Thread safety: a writer is used by one thread at a time; distinct writers are independent.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"

namespace kvc::cli {

// True for names CompactedFileWriter gives its temporary and scratch files.
bool IsBatchTemporary(std::string_view file_name);

class CompactedFileWriter {
 public:
  // Prepares to write a cache of `layout` (n_layers layers) to `final_path`. Creates nothing
  // yet. InvalidArgument for an invalid layout.
  static Result<std::unique_ptr<CompactedFileWriter>> Create(const std::string& final_path,
                                                             const KvLayout& layout);
  ~CompactedFileWriter();
  CompactedFileWriter(const CompactedFileWriter&) = delete;
  CompactedFileWriter& operator=(const CompactedFileWriter&) = delete;

  // Appends the next layer. The layer is validated as CompactedCache::Validate would (offsets,
  // shapes, dtypes, finite K/V, no NaN beta); InvalidArgument otherwise, IOError when a scratch
  // write fails. After an error the writer is abandoned.
  Status AppendLayer(const CompactedLayer& layer);

  // Writes the file (metadata = `metadata` plus the reserved keys format, n_layers, n_q_heads,
  // source_tokens), fsyncs it, renames it to the final path and fsyncs the directory.
  // FailedPrecondition unless every layer was appended; InvalidArgument if `metadata` sets a
  // reserved key to a different value; IOError from the OS. Removes every temporary either way.
  Status Finish(const std::map<std::string, std::string>& metadata);

  // Removes the temporaries; the final path is untouched.
  void Abandon();

  int layers_written() const { return layers_written_; }

 private:
  struct Stream;
  struct Record;
  CompactedFileWriter() = default;
  Status Append(const std::string& name, const Tensor& t);
  Status WriteFinal(const std::string& header);

  std::string final_path_;
  std::string temp_prefix_;
  KvLayout layout_;
  int layers_written_ = 0;
  bool done_ = false;
  std::vector<std::unique_ptr<Stream>> streams_;  // one per element size, created on demand
  std::vector<Record> records_;
};

// What a finished output says about itself (read from its header).
struct OutputInfo {
  KvLayout layout;
  int64_t entries = 0;  // kept entries over all layers and heads
  std::map<std::string, std::string> metadata;
};

// Checks that `path` is a complete, valid compacted cache without holding it in memory: the
// header and structure are checked by the loader's rules and each layer's values by
// CompactedCache::Validate, mapping one layer at a time. Errors as LoadCompactedCache.
Result<OutputInfo> VerifyCompactedFile(const std::string& path);

}  // namespace kvc::cli
