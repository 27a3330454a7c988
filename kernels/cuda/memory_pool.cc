#include "kernels/cuda/memory_pool.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <string>
#include <utility>

#include "kernels/cuda/device.h"

namespace kvc::cuda {

// ---- CudaAllocator -----------------------------------------------------------------------------

Result<void*> CudaAllocator::Allocate(size_t bytes) {
  void* ptr = nullptr;
  cudaError_t err = cudaMalloc(&ptr, bytes);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // an allocation failure is not sticky; clear it for later checks
    return FromCuda(err, "cudaMalloc(" + std::to_string(bytes) + " bytes)");
  }
  return ptr;
}

void CudaAllocator::Free(void* ptr) { (void)cudaFree(ptr); }

// ---- DeviceBuffer ------------------------------------------------------------------------------

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : pool_(std::exchange(other.pool_, nullptr)),
      ptr_(std::exchange(other.ptr_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      capacity_(std::exchange(other.capacity_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    Reset();
    pool_ = std::exchange(other.pool_, nullptr);
    ptr_ = std::exchange(other.ptr_, nullptr);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

void DeviceBuffer::Reset() {
  if (ptr_ != nullptr && pool_ != nullptr) pool_->Release(ptr_, capacity_);
  pool_ = nullptr;
  ptr_ = nullptr;
  size_ = 0;
  capacity_ = 0;
}

// ---- DeviceMemoryPool --------------------------------------------------------------------------

DeviceMemoryPool::DeviceMemoryPool()
    : DeviceMemoryPool(std::make_unique<CudaAllocator>(), PoolOptions{}) {}

DeviceMemoryPool::DeviceMemoryPool(std::unique_ptr<DeviceAllocator> allocator, PoolOptions options)
    : allocator_(std::move(allocator)), options_(options) {}

DeviceMemoryPool::~DeviceMemoryPool() {
  std::lock_guard<std::mutex> lock(mu_);
  TrimLocked();
}

size_t DeviceMemoryPool::ClassSize(size_t bytes) {
  constexpr size_t kMin = 512;
  constexpr size_t kPow2Limit = size_t{1} << 20;
  if (bytes <= kMin) return kMin;
  if (bytes > (SIZE_MAX >> 2)) return bytes;  // absurd requests: no rounding (they fail anyway)
  size_t p = std::bit_ceil(bytes);
  if (p <= kPow2Limit) return p;
  size_t gran = p / 16;
  return (bytes + gran - 1) / gran * gran;
}

Result<DeviceBuffer> DeviceMemoryPool::Allocate(size_t bytes) {
  DeviceBuffer buf;
  if (bytes == 0) return buf;
  size_t cls = ClassSize(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.requests;
  void* ptr = nullptr;
  auto it = free_.find(cls);
  if (it != free_.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
    stats_.bytes_cached -= cls;
    ++stats_.cache_hits;
  } else {
    Result<void*> got = allocator_->Allocate(cls);
    if (!got.ok() && got.status().code() == Code::kResourceExhausted && stats_.bytes_cached > 0) {
      ++stats_.oom_retries;
      TrimLocked();
      got = allocator_->Allocate(cls);
    }
    if (!got.ok()) return got.status();
    ptr = *got;
    ++stats_.device_allocs;
  }
  stats_.bytes_in_use += cls;
  stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
  buf.pool_ = this;
  buf.ptr_ = ptr;
  buf.size_ = bytes;
  buf.capacity_ = cls;
  return buf;
}

void DeviceMemoryPool::Release(void* ptr, size_t class_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.bytes_in_use -= class_bytes;
  if (stats_.bytes_cached + class_bytes > options_.max_cached_bytes) {
    allocator_->Free(ptr);
    ++stats_.device_frees;
    return;
  }
  free_[class_bytes].push_back(ptr);
  stats_.bytes_cached += class_bytes;
}

void DeviceMemoryPool::Trim() {
  std::lock_guard<std::mutex> lock(mu_);
  TrimLocked();
}

void DeviceMemoryPool::TrimLocked() {
  for (auto& [cls, list] : free_) {
    for (void* p : list) {
      allocator_->Free(p);
      ++stats_.device_frees;
    }
    list.clear();
  }
  free_.clear();
  stats_.bytes_cached = 0;
}

PoolStats DeviceMemoryPool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace kvc::cuda
