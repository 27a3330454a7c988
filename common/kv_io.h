// KV caches and compacted caches as safetensors files (design §3).
//
// Input dump (KvCache), per layer l:
//   layers.{l}.k, layers.{l}.v          [n_kv_heads, T, head_dim]   layout dtype
//   layers.{l}.q_window, layers.{l}.q_ref  [n_q_heads, N, head_dim]  optional, any floating dtype
// Compacted output (CompactedCache), per layer l:
//   layers.{l}.k, layers.{l}.v          [sum_h t_h, head_dim]       layout dtype
//   layers.{l}.beta                     [sum_h t_h]                 F32
//   layers.{l}.offsets                  [n_kv_heads + 1]            I64
// Metadata: the cache's own metadata map ("model", "tokens", "rope_theta" for dumps; "method",
// "spec", "fidelity", ... for compacted caches) plus the reserved keys below, which the loaders
// read and strip, so a save/load round trip returns the metadata map unchanged:
//   "format"         "kvcompact.kv_cache.v1" or "kvcompact.compacted_cache.v1". Optional on load
//                    (dumps written by other tools lack it); a different kind is InvalidArgument,
//                    an unknown version of ours NotSupported.
//   "n_layers"       layer count; optional on load (then: highest layer index + 1).
//   "n_q_heads"      query heads; required on load unless the file has query tensors.
//   "source_tokens"  compacted caches only: the source length T; required on load.
// Everything else is inferred from the shapes: n_kv_heads, T and head_dim from layers.0.k (or
// offsets for compacted caches) and the dtype from layers.0.k's dtype.
//
// Tensors are written ordered by decreasing element size so that each is naturally aligned in
// the file, and loading returns views into the memory-mapped (or read) file without copying.
//
// Errors: whatever SafetensorsReader returns for the file itself (NotFound, IOError,
// Corruption, NotSupported); InvalidArgument naming the path and the tensor or key for content
// that does not form a valid cache (unexpected or missing tensors, a gap in the layers,
// inconsistent shapes or dtypes, bad reserved metadata, and whatever KvCache::Validate /
// CompactedCache::Validate reject). Saving validates first and writes nothing on error.
//
// Thread safety: free functions with no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/safetensors.h"
#include "common/status.h"

namespace kvc {

inline constexpr char kKvCacheFormat[] = "kvcompact.kv_cache.v1";
inline constexpr char kCompactedCacheFormat[] = "kvcompact.compacted_cache.v1";

struct KvLoadOptions {
  // Also reject NaN/Inf in K, V and queries (reads every element once). Compacted caches are
  // always checked, as CompactedCache::Validate does. Default: true.
  bool check_finite = true;
  // Passed to SafetensorsReader::Open. Default: its defaults.
  SafetensorsOpenOptions open;
};

// Validates `cache` (KvCache::Validate with finiteness) and writes it atomically to `path`.
// InvalidArgument if the cache is invalid or its metadata sets a reserved key to a value that
// disagrees with the layout.
Status SaveKvCache(const std::string& path, const KvCache& cache);
// The same file contents as bytes.
Result<std::vector<uint8_t>> EncodeKvCache(const KvCache& cache);
// Loads and validates a dump. The tensors share the file's mapping.
Result<KvCache> LoadKvCache(const std::string& path, const KvLoadOptions& options = {});
// Builds a KvCache from an already parsed file (also the fuzzing entry point). The tensors share
// the reader's storage.
Result<KvCache> KvCacheFromSafetensors(const SafetensorsReader& file,
                                       const KvLoadOptions& options = {});

// Validates `cache` (CompactedCache::Validate) and writes it atomically to `path`.
Status SaveCompactedCache(const std::string& path, const CompactedCache& cache);
Result<std::vector<uint8_t>> EncodeCompactedCache(const CompactedCache& cache);
Result<CompactedCache> LoadCompactedCache(const std::string& path,
                                          const KvLoadOptions& options = {});
Result<CompactedCache> CompactedCacheFromSafetensors(const SafetensorsReader& file);

}  // namespace kvc
