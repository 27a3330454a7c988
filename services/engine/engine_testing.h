// Helpers shared by the engine, RPC and worker tests: small synthetic KV caches and their
// safetensors payloads, hash chains, a fast spec, a store in a temporary directory, and an
// executor whose runs a test can hold and release. Not part of the engine's API.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "kernels/spec.h"
#include "services/engine/engine_types.h"
#include "services/engine/executor.h"
#include "storage/options.h"

namespace kvc::engine::testing {

// A seeded synthetic cache: 2 layers, 2 KV heads, 4 query heads, head_dim 16, F32, `tokens`
// tokens, 32 window queries and 64 reference queries.
KvCache TinyCache(uint64_t seed, int64_t tokens = 256);
// The safetensors bytes of a valid cache (common/kv_io.h EncodeKvCache).
std::string PayloadOf(const KvCache& cache);
// The same layout of tensors and reserved metadata, written without any validation, to build
// payloads the engine must refuse (NaN, wrong dtypes, ...).
std::string RawPayloadOf(const KvCache& cache);
// A chain of n distinct 32-byte block hashes derived from `seed`; chains of one seed share
// prefixes: Chain(s, 3) is a prefix of Chain(s, 5).
std::vector<std::string> Chain(uint64_t seed, size_t n);
// Attention Matching at ratio 8 with two compaction threads: fast on TinyCache.
CompactionSpec FastSpec();
// An inline compact request.
CompactRequest InlineRequest(const KvCache& cache, std::vector<std::string> chain,
                             CompactionSpec spec = FastSpec());
// Store options for a warm tier under `dir`, unsynced, no maintenance thread.
storage::TieredStoreOptions StoreOptions(const std::string& dir);

// An executor that runs the CPU executor but first waits, in Run, until the test releases it.
// Thread-safe.
class GatedExecutor final : public CompactionExecutor {
 public:
  const char* name() const override { return "gated"; }
  Result<CompactionResult> Run(const KvCache& cache, const CompactionSpec& spec) override;
  // Lets `n` more runs through (each Run consumes one).
  void Release(int n = 1);
  // Blocks until `n` runs have entered Run (released or not). False after 10 s.
  bool WaitEntered(int n);
  int entered() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  int permits_ = 0;
  std::shared_ptr<CompactionExecutor> cpu_ = MakeCpuExecutor();
};

}  // namespace kvc::engine::testing
