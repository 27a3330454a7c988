#include "services/transport/ucx_context.h"

#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "services/transport/registration_cache.h"

namespace kvc::transport {
namespace {

using namespace std::chrono_literals;

TEST(UcxContextTest, PostRunsOnTheProgressThreadInOrder) {
  Result<std::shared_ptr<UcxContext>> ctx = UcxContext::Create();
  ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
  std::vector<int> seen;  // progress thread only until the promise is set
  std::promise<bool> done;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE((*ctx)
                    ->Post([&seen, i, c = ctx->get()] {
                      EXPECT_TRUE(c->OnProgressThread());
                      seen.push_back(i);
                    })
                    .ok());
  }
  ASSERT_TRUE((*ctx)->Post([&] { done.set_value(true); }).ok());
  ASSERT_EQ(done.get_future().wait_for(5s), std::future_status::ready);
  ASSERT_EQ(seen.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_FALSE((*ctx)->OnProgressThread());
}

TEST(UcxContextTest, SleepingThreadWakesForPosts) {
  UcxContextOptions o;
  o.busy_poll = 0us;
  Result<std::shared_ptr<UcxContext>> ctx = UcxContext::Create(o);
  ASSERT_TRUE(ctx.ok());
  for (int i = 0; i < 20; ++i) {
    std::this_thread::sleep_for(2ms);  // let it fall asleep on the event fd
    std::promise<void> ran;
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE((*ctx)->Post([&] { ran.set_value(); }).ok());
    ASSERT_EQ(ran.get_future().wait_for(5s), std::future_status::ready);
    // The idle poll timeout is 100 ms: a wake-up well under it came from the signal.
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 50ms);
  }
}

TEST(UcxContextTest, TimersFireAndStop) {
  Result<std::shared_ptr<UcxContext>> ctx = UcxContext::Create();
  ASSERT_TRUE(ctx.ok());
  std::atomic<int> fired{0};
  const uint64_t id = (*ctx)->AddTimer(5ms, [&] { ++fired; });
  std::this_thread::sleep_for(100ms);
  (*ctx)->RemoveTimer(id);
  std::promise<void> flushed;
  ASSERT_TRUE((*ctx)->Post([&] { flushed.set_value(); }).ok());
  flushed.get_future().wait();
  const int after_remove = fired.load();
  EXPECT_GE(after_remove, 5);
  std::this_thread::sleep_for(30ms);
  EXPECT_EQ(fired.load(), after_remove);
}

TEST(UcxContextTest, CreateAndDestroyRepeatedly) {
  for (int i = 0; i < 5; ++i) {
    Result<std::shared_ptr<UcxContext>> ctx = UcxContext::Create();
    ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
    EXPECT_EQ((*ctx)->attached(), 0u);
  }
}

TEST(RegistrationCacheTest, ReusesAndPins) {
  Result<std::shared_ptr<UcpContextHandle>> ucp = UcpContextHandle::Create("reg-test");
  ASSERT_TRUE(ucp.ok());
  RegistrationCache cache(*ucp, /*max_bytes=*/3 << 20, /*max_entries=*/8);
  Tensor a = Tensor::Zeros(DType::kF32, {1 << 18});  // 1 MiB
  std::weak_ptr<Registration> first;
  {
    Result<std::shared_ptr<Registration>> r1 = cache.Get(a);
    ASSERT_TRUE(r1.ok());
    ASSERT_NE(*r1, nullptr);
    Result<std::shared_ptr<Registration>> r2 = cache.Get(a);
    EXPECT_EQ(r1->get(), r2->get());
    first = *r1;
  }
  EXPECT_EQ(cache.hits(), 1u);
  EXPECT_EQ(cache.misses(), 1u);
  a = Tensor();  // the cache pins the storage, so the registration stays valid
  EXPECT_FALSE(first.expired());
  // Three more MiB push the first entry out (limit 3 MiB).
  std::vector<Tensor> more;
  for (int i = 0; i < 3; ++i) {
    more.push_back(Tensor::Zeros(DType::kF32, {1 << 18}));
    ASSERT_TRUE(cache.Get(more.back()).ok());
  }
  EXPECT_TRUE(first.expired());
  EXPECT_EQ(cache.entries(), 3u);
  EXPECT_EQ(cache.bytes(), size_t{3} << 20);
  EXPECT_EQ(*cache.Get(Tensor()), nullptr);  // empty tensors need no registration
  cache.Clear();
  EXPECT_EQ(cache.entries(), 0u);
}

}  // namespace
}  // namespace kvc::transport
