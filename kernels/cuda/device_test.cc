// Device discovery, error conversion and the caching pool (through a host allocator, so the
// caching logic is tested on every machine).
#include "kernels/cuda/device.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "kernels/cuda/am_fit.h"
#include "kernels/cuda/context.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/memory_pool.h"
#include "kernels/cuda/ragged.h"

namespace kvc::cuda {
namespace {

// malloc-backed allocator with an optional byte limit, counting calls.
class HostAllocator : public DeviceAllocator {
 public:
  explicit HostAllocator(size_t limit = SIZE_MAX) : limit_(limit) {}
  Result<void*> Allocate(size_t bytes) override {
    if (live_ + bytes > limit_) return Status::ResourceExhausted("host allocator limit");
    ++allocs_;
    live_ += bytes;
    void* p = std::malloc(bytes);
    sizes_[p] = bytes;
    return p;
  }
  void Free(void* p) override {
    ++frees_;
    live_ -= sizes_[p];
    sizes_.erase(p);
    std::free(p);
  }
  int allocs_ = 0, frees_ = 0;
  size_t live_ = 0;

 private:
  size_t limit_;
  std::map<void*, size_t> sizes_;
};

TEST(DeviceTest, CountNeverFailsAndExplainsZero) {
  const int n = DeviceCount();
  EXPECT_GE(n, 0);
  if (n == 0) {
    EXPECT_FALSE(NoDeviceReason().empty());
    Result<std::unique_ptr<GpuContext>> ctx = GpuContext::Create(0);
    EXPECT_EQ(ctx.status().code(), Code::kUnavailable) << ctx.status().ToString();
    EXPECT_TRUE(QueryDevice(0).status().IsInvalidArgument());
  } else {
    EXPECT_TRUE(NoDeviceReason().empty());
    Result<DeviceInfo> info = QueryDevice(0);
    ASSERT_TRUE(info.ok()) << info.status().ToString();
    EXPECT_GT(info->total_memory, 0u);
    std::printf("device 0: %s\n", DescribeDevice(*info).c_str());
  }
}

TEST(DeviceTest, ErrorConversion) {
  EXPECT_TRUE(FromCuda(cudaSuccess, "x").ok());
  Status oom = FromCuda(cudaErrorMemoryAllocation, "cudaMalloc");
  EXPECT_EQ(oom.code(), Code::kResourceExhausted);
  EXPECT_NE(oom.message().find("cudaMalloc: cudaErrorMemoryAllocation"), std::string::npos)
      << oom.message();
  EXPECT_EQ(FromCuda(cudaErrorNoDevice, "x").code(), Code::kUnavailable);
  EXPECT_EQ(FromCuda(cudaErrorNoKernelImageForDevice, "x").code(), Code::kNotSupported);
  EXPECT_EQ(FromCuda(cudaErrorIllegalAddress, "x").code(), Code::kInternal);

  EXPECT_TRUE(FromCublas(CUBLAS_STATUS_SUCCESS, "x").ok());
  Status b = FromCublas(CUBLAS_STATUS_ALLOC_FAILED, "gemm");
  EXPECT_EQ(b.code(), Code::kResourceExhausted);
  EXPECT_EQ(b.message(), "gemm: CUBLAS_STATUS_ALLOC_FAILED");
  EXPECT_EQ(FromCublas(CUBLAS_STATUS_NOT_SUPPORTED, "x").code(), Code::kNotSupported);
  EXPECT_EQ(FromCublas(CUBLAS_STATUS_EXECUTION_FAILED, "x").code(), Code::kInternal);

  EXPECT_TRUE(FromCusolver(CUSOLVER_STATUS_SUCCESS, "x").ok());
  EXPECT_EQ(FromCusolver(CUSOLVER_STATUS_ALLOC_FAILED, "x").code(), Code::kResourceExhausted);
  EXPECT_EQ(FromCusolver(CUSOLVER_STATUS_ARCH_MISMATCH, "x").code(), Code::kNotSupported);
  EXPECT_STREQ(CusolverStatusName(CUSOLVER_STATUS_ZERO_PIVOT), "CUSOLVER_STATUS_ZERO_PIVOT");
}

TEST(DeviceTest, GemmValidatesBeforeTouchingCublas) {
  GemmShape s;
  s.m = 4;
  s.n = 4;
  s.k = 4;
  s.lda = 3;  // < k
  s.ldb = 4;
  s.ldc = 4;
  float x = 0;
  EXPECT_TRUE(Gemm(nullptr, s, 1.f, &x, &x, 0.f, &x, MathMode::kF32).IsInvalidArgument());
  s.lda = 4;
  s.batch = 0;
  EXPECT_TRUE(Gemm(nullptr, s, 1.f, &x, &x, 0.f, &x, MathMode::kF32).IsInvalidArgument());
  EXPECT_TRUE(Gram(nullptr, &x, 4, 4, 2, true, &x, 4).IsInvalidArgument());
}

TEST(DeviceTest, RaggedLayoutRejectsBadOffsetsBeforeAllocating) {
  auto alloc = std::make_unique<HostAllocator>();
  HostAllocator* raw = alloc.get();
  DeviceMemoryPool pool(std::move(alloc), PoolOptions{});
  EXPECT_TRUE(RaggedLayout::FromOffsets({0}, pool, nullptr).status().IsInvalidArgument());
  EXPECT_TRUE(RaggedLayout::FromOffsets({1, 2}, pool, nullptr).status().IsInvalidArgument());
  EXPECT_TRUE(RaggedLayout::FromOffsets({0, 5, 3}, pool, nullptr).status().IsInvalidArgument());
  EXPECT_TRUE(RaggedLayout::FromCounts({2, -1}, pool, nullptr).status().IsInvalidArgument());
  EXPECT_TRUE(RaggedLayout::Uniform(0, 3, pool, nullptr).status().IsInvalidArgument());
  EXPECT_EQ(raw->allocs_, 0);
}

TEST(DeviceTest, CapabilityTable) {
  EXPECT_TRUE(GpuSupports(GpuOp::kAmHighestAttention));
  EXPECT_TRUE(GpuSupports(GpuOp::kNnls));
  EXPECT_TRUE(GpuSupports(GpuOp::kAmOmpFast));
  EXPECT_TRUE(GpuSupports(GpuOp::kAmOmp));
  EXPECT_STREQ(GpuOpName(GpuOp::kAmOmpFast), "am_omp_fast");
}

TEST(MemoryPoolTest, SizeClasses) {
  EXPECT_EQ(DeviceMemoryPool::ClassSize(1), 512u);
  EXPECT_EQ(DeviceMemoryPool::ClassSize(512), 512u);
  EXPECT_EQ(DeviceMemoryPool::ClassSize(513), 1024u);
  EXPECT_EQ(DeviceMemoryPool::ClassSize(1 << 20), size_t{1} << 20);
  const size_t big = (size_t{1} << 30) + 1;  // next octave is 2 GiB, granule 128 MiB
  EXPECT_EQ(DeviceMemoryPool::ClassSize(big), (size_t{1} << 30) + (size_t{1} << 27));
  for (size_t b : {size_t{3000}, size_t{5} << 20, size_t{123456789}, size_t{15} << 30}) {
    const size_t c = DeviceMemoryPool::ClassSize(b);
    EXPECT_GE(c, b);
    if (b > (size_t{1} << 20)) {
      EXPECT_LE(c - b, b / 8) << b;
    }
  }
}

TEST(MemoryPoolTest, ReusesBlocksOfTheSameClass) {
  auto alloc = std::make_unique<HostAllocator>();
  HostAllocator* raw = alloc.get();
  DeviceMemoryPool pool(std::move(alloc), PoolOptions{});
  void* first = nullptr;
  {
    Result<DeviceBuffer> a = pool.Allocate(1000);
    ASSERT_TRUE(a.ok());
    first = a->get();
    EXPECT_EQ(a->size(), 1000u);
    EXPECT_EQ(a->capacity(), 1024u);
    EXPECT_EQ(pool.stats().bytes_in_use, 1024u);
  }
  EXPECT_EQ(pool.stats().bytes_cached, 1024u);
  Result<DeviceBuffer> b = pool.Allocate(700);  // same class
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->get(), first);
  Result<DeviceBuffer> c = pool.Allocate(5000);  // other class: a new block
  ASSERT_TRUE(c.ok());
  PoolStats s = pool.stats();
  EXPECT_EQ(s.requests, 3u);
  EXPECT_EQ(s.cache_hits, 1u);
  EXPECT_EQ(s.device_allocs, 2u);
  EXPECT_EQ(raw->allocs_, 2);
  EXPECT_EQ(s.peak_bytes_in_use, 1024u + 8192u);
  Result<DeviceBuffer> empty = pool.Allocate(0);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_EQ(pool.stats().requests, 3u);
}

TEST(MemoryPoolTest, MoveTransfersOwnership) {
  DeviceMemoryPool pool(std::make_unique<HostAllocator>(), PoolOptions{});
  Result<DeviceBuffer> a = pool.Allocate(100);
  ASSERT_TRUE(a.ok());
  DeviceBuffer b = std::move(*a);
  EXPECT_TRUE(a->empty());
  EXPECT_EQ(pool.stats().bytes_in_use, 512u);
  b.Reset();
  EXPECT_EQ(pool.stats().bytes_in_use, 0u);
  EXPECT_EQ(pool.stats().bytes_cached, 512u);
}

TEST(MemoryPoolTest, OutOfMemoryTrimsTheCacheAndRetries) {
  auto alloc = std::make_unique<HostAllocator>(4096);
  HostAllocator* raw = alloc.get();
  DeviceMemoryPool pool(std::move(alloc), PoolOptions{});
  {
    Result<DeviceBuffer> a = pool.Allocate(2048);
    ASSERT_TRUE(a.ok());
  }
  {
    Result<DeviceBuffer> b = pool.Allocate(1024);
    ASSERT_TRUE(b.ok());
  }
  EXPECT_EQ(raw->live_, 3072u);                  // both cached
  Result<DeviceBuffer> c = pool.Allocate(4096);  // fits only once the cache is emptied
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(pool.stats().oom_retries, 1u);
  EXPECT_EQ(pool.stats().bytes_cached, 0u);
  Result<DeviceBuffer> d = pool.Allocate(1024);  // nothing left to trim
  EXPECT_EQ(d.status().code(), Code::kResourceExhausted);
}

TEST(MemoryPoolTest, CacheBoundSendsBlocksBack) {
  auto alloc = std::make_unique<HostAllocator>();
  HostAllocator* raw = alloc.get();
  DeviceMemoryPool pool(std::move(alloc), PoolOptions{.max_cached_bytes = 1024});
  {
    Result<DeviceBuffer> a = pool.Allocate(1024);
    Result<DeviceBuffer> b = pool.Allocate(1024);
    ASSERT_TRUE(a.ok() && b.ok());
  }
  EXPECT_EQ(pool.stats().bytes_cached, 1024u);
  EXPECT_EQ(raw->frees_, 1);
  pool.Trim();
  EXPECT_EQ(raw->frees_, 2);
  EXPECT_EQ(raw->live_, 0u);
}

TEST(MemoryPoolTest, ConcurrentUseKeepsCountsConsistent) {
  auto alloc = std::make_unique<HostAllocator>();
  HostAllocator* raw = alloc.get();
  {
    DeviceMemoryPool pool(std::move(alloc), PoolOptions{});
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&pool, t] {
        for (int i = 0; i < 500; ++i) {
          Result<DeviceBuffer> a = pool.Allocate(size_t(512) << ((i + t) % 6));
          Result<DeviceBuffer> b = pool.Allocate(3000);
          ASSERT_TRUE(a.ok() && b.ok());
          std::memset(a->get(), t, a->size());  // a block is never shared by two leases
          std::memset(b->get(), t, b->size());
        }
      });
    }
    for (std::thread& th : threads) th.join();
    PoolStats s = pool.stats();
    EXPECT_EQ(s.requests, 8u * 500u * 2u);
    EXPECT_EQ(s.bytes_in_use, 0u);
    EXPECT_EQ(s.cache_hits + s.device_allocs, s.requests);
  }
  EXPECT_EQ(raw->live_, 0u);  // the pool's destructor returned everything
}

}  // namespace
}  // namespace kvc::cuda
