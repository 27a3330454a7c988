// Helpers shared by the storage tests, the crash-test child and the storage benchmark:
// deterministic compacted caches, key derivation, cache comparison, temporary directories.
// Not part of the store's API.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "storage/store_key.h"

namespace kvc::storage::testing {

struct CacheShape {
  int n_layers = 2;
  int n_kv_heads = 2;
  int n_q_heads = 4;
  int head_dim = 8;
  DType dtype = DType::kF16;
  int64_t tokens = 64;        // source length T
  int64_t max_budget = 16;    // per-head budgets are drawn from [0, max_budget] ...
  int64_t fixed_budget = -1;  // ... unless this is >= 0: then every head keeps this many
};

// A valid cache whose budgets (ragged, zero allowed), values and metadata are a pure function
// of (seed, shape). REQUIRES: shape describes a valid layout and max_budget <= tokens.
CompactedCache MakeCache(uint64_t seed, const CacheShape& shape);

// A cache with uniform budgets whose tensor payload is about `bytes` (8 layers, 8 KV heads,
// head_dim 128, F16), deterministic in seed.
CompactedCache MakeCacheOfSize(uint64_t seed, uint64_t bytes);

// Sum of the tensors' byte sizes.
uint64_t PayloadBytes(const CompactedCache& cache);

// True when layout, offsets, metadata and every tensor (dtype, shape, bytes) are equal; *why
// (optional) receives the first difference.
bool SameCache(const CompactedCache& a, const CompactedCache& b, std::string* why = nullptr);

// A key whose block hash is 32 bytes derived from `i` (distinct i give distinct hashes).
StoreKey KeyFor(uint64_t i, std::string spec = "spec-v1");
// A chain of n 32-byte block hashes derived from `chain_seed`. REQUIRES: chain_seed < 2^31,
// n < 2^32.
std::vector<std::string> ChainFor(uint64_t chain_seed, size_t n);

// A fresh directory under the system temp dir, removed (recursively) on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "kvc-storage");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string Sub(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace kvc::storage::testing
