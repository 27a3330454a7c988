#include "services/transport/staging_pool.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace kvc::transport {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kHugePage = size_t{2} << 20;

std::string MiB(size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

}  // namespace

std::shared_ptr<StagingPool> StagingPool::Create(std::shared_ptr<UcpContextHandle> ucp,
                                                 const StagingPoolOptions& options) {
  return std::shared_ptr<StagingPool>(new StagingPool(std::move(ucp), options));
}

StagingPool::StagingPool(std::shared_ptr<UcpContextHandle> ucp, const StagingPoolOptions& options)
    : options_(options), ucp_(std::move(ucp)) {}

StagingPool::~StagingPool() { Trim(); }

size_t StagingPool::RoundUp(size_t bytes) {
  const size_t unit = bytes >= kHugePage ? kHugePage : kPage;
  return (bytes + unit - 1) / unit * unit;
}

bool StagingPool::TakeCached(size_t capacity, Block* out) {
  auto it = free_.lower_bound(capacity);
  if (it == free_.end() || it->first > capacity + capacity / 4) return false;
  *out = it->second.second;
  free_.erase(it);
  cached_ -= out->capacity;
  return true;
}

std::vector<StagingPool::Block> StagingPool::EvictFor(size_t capacity) {
  std::vector<Block> evicted;
  while (!free_.empty() && in_use_ + cached_ + capacity > options_.byte_limit) {
    auto oldest = free_.begin();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second.first < oldest->second.first) oldest = it;
    }
    evicted.push_back(oldest->second.second);
    cached_ -= oldest->first;
    free_.erase(oldest);
  }
  return evicted;
}

Result<StagingRef> StagingPool::Acquire(size_t bytes) {
  if (bytes == 0) return Wrap(Block{nullptr, 0, nullptr}, 0);
  const size_t capacity = RoundUp(bytes);
  Block block{};
  bool reused = false;
  std::vector<Block> evicted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    reused = TakeCached(capacity, &block);
    const size_t need = reused ? block.capacity : capacity;
    if (!reused && in_use_ + need > options_.byte_limit) {
      return Status::ResourceExhausted("staging budget: " + MiB(in_use_) + " of " +
                                       MiB(options_.byte_limit) + " in use, " + MiB(need) +
                                       " more requested");
    }
    if (!reused) evicted = EvictFor(capacity);
    in_use_ += need;
  }
  for (const Block& b : evicted) FreeBlock(b);
  if (!reused) {
    Result<Block> fresh = Allocate(capacity);
    if (!fresh.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      in_use_ -= capacity;
      return fresh.status();
    }
    block = *fresh;
  }
  return Wrap(block, bytes);
}

Result<std::vector<StagingRef>> StagingPool::AcquireAll(const std::vector<uint64_t>& sizes) {
  std::vector<StagingRef> out;
  out.reserve(sizes.size());
  for (uint64_t s : sizes) {
    Result<StagingRef> r = Acquire(static_cast<size_t>(s));
    if (!r.ok()) return r.status();  // `out` releases what was taken
    out.push_back(std::move(*r));
  }
  return out;
}

Result<StagingPool::Block> StagingPool::Allocate(size_t capacity) {
  const bool huge = capacity >= kHugePage;
  const size_t span = capacity + (huge ? kHugePage : 0);
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    return Status::ResourceExhausted("mmap of " + MiB(capacity) + ": " + std::strerror(errno));
  }
  auto* base = static_cast<char*>(raw);
  if (huge) {  // trim to a 2 MiB-aligned range so the kernel can back it with huge pages
    const uintptr_t addr = reinterpret_cast<uintptr_t>(raw);
    char* aligned = reinterpret_cast<char*>((addr + kHugePage - 1) & ~(kHugePage - 1));
    const size_t head = static_cast<size_t>(aligned - base);
    if (head) munmap(base, head);
    const size_t tail = span - head - capacity;
    if (tail) munmap(aligned + capacity, tail);
    base = aligned;
    madvise(base, capacity, MADV_HUGEPAGE);
  }
  Block b{base, capacity, nullptr};
  if (ucp_) {
    Result<ucp_mem_h> memh = ucp_->Map(base, capacity);
    if (!memh.ok()) {
      munmap(base, capacity);
      return memh.status();
    }
    b.memh = *memh;
  }
  return b;
}

void StagingPool::FreeBlock(const Block& b) {
  if (b.memh != nullptr) ucp_->Unmap(b.memh);
  if (b.base != nullptr) munmap(b.base, b.capacity);
}

StagingRef StagingPool::Wrap(const Block& b, size_t bytes) {
  auto* buf = new StagingBuffer();
  buf->base_ = b.base;
  buf->size_ = bytes;
  buf->capacity_ = b.capacity;
  buf->memh_ = b.memh;
  return StagingRef(buf, [self = shared_from_this()](StagingBuffer* p) { self->Return(p); });
}

void StagingPool::Return(StagingBuffer* buf) {
  const Block b{buf->base_, buf->capacity_, buf->memh_};
  delete buf;
  if (b.base == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_use_ -= b.capacity;
    if (cached_ + b.capacity <= options_.max_cached_bytes &&
        in_use_ + cached_ + b.capacity <= options_.byte_limit) {
      free_.emplace(b.capacity, std::make_pair(++clock_, b));
      cached_ += b.capacity;
      return;
    }
  }
  FreeBlock(b);
}

size_t StagingPool::bytes_in_use() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_;
}

size_t StagingPool::bytes_cached() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_;
}

void StagingPool::Trim() {
  std::multimap<size_t, std::pair<uint64_t, Block>> drop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    drop.swap(free_);
    cached_ = 0;
  }
  for (auto& [cap, entry] : drop) FreeBlock(entry.second);
}

}  // namespace kvc::transport
