// A caching pool of device memory over plain cudaMalloc (never managed memory).
//
// Blocks are rounded up to a size class and, when released, kept on that class's free list for
// reuse instead of being returned to the driver. Size classes: 512 B minimum; powers of two up to
// 1 MiB; above that, 16 classes per power-of-two octave (waste at most 1/8 of the request).
// A request is served only from its own class (no splitting), so a cached block is never more
// than 1/8 larger than asked for. When the allocator reports out-of-memory, the pool frees every
// cached block and retries once.
//
// Stream semantics: the pool does not track streams. A buffer released while kernels that use it
// are still queued on stream S may be handed out again at once; this is safe when the next user
// queues its work on the same stream S (stream order serialises them). A caller that uses a
// buffer on several streams must synchronise before releasing it.
//
// Thread safety: DeviceMemoryPool is thread-safe (one mutex; the allocator is called under it).
// DeviceBuffer is a move-only owner; one DeviceBuffer must not be used by two threads at once.
// Ownership: every DeviceBuffer must be destroyed before its pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace kvc::cuda {

// Where the pool gets its blocks. Replaceable so the caching logic is testable without a GPU.
class DeviceAllocator {
 public:
  virtual ~DeviceAllocator() = default;
  // ResourceExhausted when out of memory; other codes for other failures.
  virtual Result<void*> Allocate(size_t bytes) = 0;
  virtual void Free(void* ptr) = 0;
};

// cudaMalloc / cudaFree on the calling thread's current device.
class CudaAllocator final : public DeviceAllocator {
 public:
  Result<void*> Allocate(size_t bytes) override;
  void Free(void* ptr) override;
};

struct PoolOptions {
  // Upper bound on bytes kept in free lists; blocks released beyond it go back to the allocator.
  // Default: no bound.
  size_t max_cached_bytes = SIZE_MAX;
};

struct PoolStats {
  uint64_t requests = 0;       // Allocate calls with bytes > 0
  uint64_t cache_hits = 0;     // served from a free list
  uint64_t device_allocs = 0;  // calls into the allocator that succeeded
  uint64_t device_frees = 0;   // blocks given back to the allocator
  uint64_t oom_retries = 0;    // out-of-memory answers that triggered a trim and retry
  size_t bytes_in_use = 0;     // class bytes held by live DeviceBuffers
  size_t bytes_cached = 0;     // class bytes on free lists
  size_t peak_bytes_in_use = 0;
};

class DeviceMemoryPool;

// A block of device memory leased from a pool; returned to the pool on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { Reset(); }
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return size_; }          // bytes requested
  size_t capacity() const { return capacity_; }  // class bytes
  bool empty() const { return ptr_ == nullptr; }
  // Returns the block to its pool now (no-op when empty).
  void Reset();

 private:
  friend class DeviceMemoryPool;
  DeviceMemoryPool* pool_ = nullptr;
  void* ptr_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

class DeviceMemoryPool {
 public:
  // Default: a CudaAllocator and default options.
  DeviceMemoryPool();
  DeviceMemoryPool(std::unique_ptr<DeviceAllocator> allocator, PoolOptions options);
  // Frees every cached block. REQUIRES: no live DeviceBuffer from this pool.
  ~DeviceMemoryPool();
  DeviceMemoryPool(const DeviceMemoryPool&) = delete;
  DeviceMemoryPool& operator=(const DeviceMemoryPool&) = delete;

  // A buffer of at least `bytes` bytes (contents undefined). bytes == 0 gives an empty buffer
  // without touching the allocator. ResourceExhausted when the device is out of memory even
  // after the cache was emptied.
  Result<DeviceBuffer> Allocate(size_t bytes);
  // Typed convenience: count elements of T.
  template <typename T>
  Result<DeviceBuffer> AllocateArray(size_t count) {
    return Allocate(count * sizeof(T));
  }

  // Gives every cached block back to the allocator.
  void Trim();
  PoolStats stats() const;

  // The class size a request of `bytes` (> 0) is rounded to.
  static size_t ClassSize(size_t bytes);

 private:
  friend class DeviceBuffer;
  void Release(void* ptr, size_t class_bytes);
  void TrimLocked();

  std::unique_ptr<DeviceAllocator> allocator_;
  PoolOptions options_;
  mutable std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // class bytes -> cached blocks
  PoolStats stats_;
};

}  // namespace kvc::cuda
