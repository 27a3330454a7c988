// Bounded-memory access to a KV dump for `kvcompact batch`: the dump is memory-mapped anew for
// each piece of work and the mapping is dropped with the piece, so pages read for one layer
// group, chunk or head leave the process's resident set when that piece is done.
//
// Thread safety: a DumpFile is immutable after Open; its const methods may run concurrently
// (each maps the file separately).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "services/cli/batch_plan.h"

namespace kvc::cli {

struct DumpInfo {
  std::string path;
  uint64_t file_bytes = 0;
  int64_t mtime_ns = 0;
  DumpShape shape;
  std::map<std::string, std::string> metadata;  // the dump's metadata (reserved keys stripped)

  const KvLayout& layout() const { return shape.layout; }
  // Bytes of K and V over all layers: the unit of progress.
  uint64_t kv_bytes() const;
};

class DumpFile {
 public:
  // Reads and checks the header and the structure of every tensor (names, shapes, dtypes)
  // without reading tensor data. Errors as LoadKvCache (NotFound, IOError, Corruption,
  // NotSupported, InvalidArgument), prefixed with the path.
  static Result<DumpFile> Open(const std::string& path);

  const DumpInfo& info() const { return info_; }

  // Layers [first, first + count) as views into a fresh mapping of the file (kept alive by the
  // returned tensors, released when the last of them goes). Values are not checked here
  // (Compact checks them). The metadata is the dump's. InvalidArgument if the range is out of
  // bounds or the file changed since Open.
  Result<KvCache> Layers(int first, int count) const;

  // Layers [first, first + count) restricted to positions [t0, t1): K and V are copied, q_ref
  // keeps only `q_rows` (sorted row indices; all rows when empty), q_window is dropped. No
  // mapping outlives the call. The metadata is the dump's.
  Result<KvCache> Chunk(int first, int count, int64_t t0, int64_t t1,
                        const std::vector<int64_t>& q_rows) const;

 private:
  DumpInfo info_;
};

// Rows `rows` of every head of `q` [heads, N, d] (any floating dtype) as a new tensor of the
// same dtype [heads, rows.size(), d]. REQUIRES: rows sorted, each in [0, N).
Tensor GatherRows(const Tensor& q, const std::vector<int64_t>& rows);

// Positions [t0, t1) of every head of `kv` [heads, T, d] as a new tensor [heads, t1 - t0, d].
// REQUIRES: 0 <= t0 <= t1 <= T.
Tensor SlicePositions(const Tensor& kv, int64_t t0, int64_t t1);

}  // namespace kvc::cli
