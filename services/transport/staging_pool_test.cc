#include "services/transport/staging_pool.h"

#include <gtest/gtest.h>

#include <cstring>

namespace kvc::transport {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

TEST(StagingPoolTest, RefusesBeyondBudgetAndRecovers) {
  auto pool = StagingPool::Create(nullptr, {8 * kMiB, 8 * kMiB});
  Result<StagingRef> a = pool->Acquire(6 * kMiB);
  ASSERT_TRUE(a.ok());
  std::memset((*a)->data(), 1, (*a)->size());
  Result<StagingRef> b = pool->Acquire(4 * kMiB);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(pool->bytes_in_use(), 6 * kMiB);
  a = Status::Cancelled("drop");  // releases the buffer
  EXPECT_EQ(pool->bytes_in_use(), 0u);
  EXPECT_TRUE(pool->Acquire(4 * kMiB).ok());
}

TEST(StagingPoolTest, ReusesReleasedBuffers) {
  auto pool = StagingPool::Create(nullptr, {64 * kMiB, 64 * kMiB});
  void* first = nullptr;
  {
    Result<StagingRef> a = pool->Acquire(3 * kMiB + 5);
    ASSERT_TRUE(a.ok());
    first = (*a)->data();
    EXPECT_GE((*a)->capacity(), (*a)->size());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 4096, 0u);
  }
  EXPECT_EQ(pool->bytes_cached(), 4 * kMiB);
  Result<StagingRef> b = pool->Acquire(3 * kMiB + 5);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->data(), first);
  EXPECT_EQ(pool->bytes_cached(), 0u);
}

TEST(StagingPoolTest, EvictsCachedBuffersToMakeRoom) {
  auto pool = StagingPool::Create(nullptr, {8 * kMiB, 8 * kMiB});
  { Result<StagingRef> a = pool->Acquire(6 * kMiB); }
  EXPECT_EQ(pool->bytes_cached(), 6 * kMiB);
  Result<StagingRef> b = pool->Acquire(3 * kMiB);  // too small to reuse 6 MiB, needs eviction
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(pool->bytes_cached(), 0u);
  EXPECT_LE(pool->bytes_in_use() + pool->bytes_cached(), pool->byte_limit());
}

TEST(StagingPoolTest, AcquireAllIsAllOrNothing) {
  auto pool = StagingPool::Create(nullptr, {8 * kMiB, 0});
  Result<std::vector<StagingRef>> r = pool->AcquireAll({2 * kMiB, 2 * kMiB, 6 * kMiB});
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_EQ(pool->bytes_in_use(), 0u);
  EXPECT_EQ(pool->bytes_cached(), 0u);  // max_cached_bytes 0: nothing kept
  Result<std::vector<StagingRef>> ok = pool->AcquireAll({2 * kMiB, 0, 4 * kMiB});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ((*ok)[1]->data(), nullptr);
  EXPECT_EQ(pool->bytes_in_use(), 6 * kMiB);
}

TEST(StagingPoolTest, RegistersWithUcx) {
  Result<std::shared_ptr<UcpContextHandle>> ucp = UcpContextHandle::Create("staging-test");
  ASSERT_TRUE(ucp.ok()) << ucp.status().ToString();
  auto pool = StagingPool::Create(*ucp, {16 * kMiB, 16 * kMiB});
  Result<StagingRef> a = pool->Acquire(5 * kMiB);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_NE((*a)->memh(), nullptr);
  std::memset((*a)->data(), 7, (*a)->size());
}

}  // namespace
}  // namespace kvc::transport
