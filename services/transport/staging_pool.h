// StagingPool: receive buffers for incoming payloads, drawn from a byte budget.
//
// Buffers are page-aligned anonymous memory (transparent huge pages requested for large ones),
// registered once with UCX (ucp_mem_map) and kept registered while they sit free in the pool, so
// a steady stream of same-sized layers reuses the same registered memory. The budget counts
// every byte the pool holds, in use or cached; when a new buffer would exceed it, cached buffers
// are released first, and if the buffers in use alone leave no room the request fails with
// ResourceExhausted (the caller refuses the upload; nothing is allocated).
//
// Ownership: a StagingRef keeps its buffer, the pool and the UCP context alive; dropping the
// last reference returns the buffer to the pool (any thread). Tensors built on staging buffers
// hold such references, so a delivered KvCache keeps its bytes until the consumer drops it.
// Thread safety: all methods are thread-safe.
#pragma once

#include <ucp/api/ucp.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "common/status.h"
#include "services/transport/ucx_context.h"

namespace kvc::transport {

struct StagingPoolOptions {
  // Most bytes the pool holds at once, buffers in use plus cached free ones. Default: 4 GiB.
  size_t byte_limit = size_t{4} << 30;
  // Most bytes of free buffers kept (registered) for reuse. Default: 1 GiB.
  size_t max_cached_bytes = size_t{1} << 30;
};

class StagingPool;

class StagingBuffer {
 public:
  // Null when size() == 0.
  void* data() const { return base_; }
  // The bytes asked for; capacity() >= size() is what the budget counts.
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  // Registration covering [data(), data() + capacity()); null without a UCP context.
  ucp_mem_h memh() const { return memh_; }

 private:
  friend class StagingPool;
  void* base_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
  ucp_mem_h memh_ = nullptr;
};

using StagingRef = std::shared_ptr<StagingBuffer>;

class StagingPool : public std::enable_shared_from_this<StagingPool> {
 public:
  // `ucp` may be null: buffers are then not registered (unit tests, non-UCX staging).
  static std::shared_ptr<StagingPool> Create(std::shared_ptr<UcpContextHandle> ucp,
                                             const StagingPoolOptions& options = {});
  ~StagingPool();
  StagingPool(const StagingPool&) = delete;
  StagingPool& operator=(const StagingPool&) = delete;

  // A buffer of at least `bytes` bytes, contents unspecified. ResourceExhausted when the
  // buffers in use leave no room under the byte limit; IOError/Unavailable when the OS or UCX
  // refuse the memory.
  Result<StagingRef> Acquire(size_t bytes);
  // All or nothing: one buffer per entry of `sizes`; on failure nothing stays acquired.
  Result<std::vector<StagingRef>> AcquireAll(const std::vector<uint64_t>& sizes);

  size_t bytes_in_use() const;
  size_t bytes_cached() const;
  size_t byte_limit() const { return options_.byte_limit; }
  // Releases every cached free buffer.
  void Trim();

 private:
  struct Block {
    void* base;
    size_t capacity;
    ucp_mem_h memh;
  };
  StagingPool(std::shared_ptr<UcpContextHandle> ucp, const StagingPoolOptions& options);
  static size_t RoundUp(size_t bytes);
  bool TakeCached(size_t capacity, Block* out);  // REQUIRES: mu_ held
  std::vector<Block> EvictFor(size_t capacity);  // REQUIRES: mu_ held
  Result<Block> Allocate(size_t capacity);
  void FreeBlock(const Block& b);
  void Return(StagingBuffer* buf);
  StagingRef Wrap(const Block& b, size_t bytes);

  const StagingPoolOptions options_;
  std::shared_ptr<UcpContextHandle> ucp_;
  mutable std::mutex mu_;
  size_t in_use_ = 0;
  size_t cached_ = 0;
  uint64_t clock_ = 0;
  std::multimap<size_t, std::pair<uint64_t, Block>> free_;  // capacity -> (age stamp, block)
};

}  // namespace kvc::transport
