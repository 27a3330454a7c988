#include "kernels/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <vector>

namespace kvc::cpu {
namespace {

TEST(ThreadPoolTest, RunsEveryTaskOnceForAnyThreadCount) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.threads(), threads);
    for (int round = 0; round < 3; ++round) {
      std::vector<std::atomic<int>> hits(97);
      ASSERT_TRUE(pool.ParallelFor(97,
                                   [&](int64_t i) {
                                     hits[i].fetch_add(1);
                                     return Status::OK();
                                   })
                      .ok());
      for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    }
    EXPECT_TRUE(pool.ParallelFor(0, [](int64_t) { return Status::Internal("never"); }).ok());
  }
}

TEST(ThreadPoolTest, ReturnsTheLowestFailingIndexAndRunsTheRest) {
  ThreadPool pool(4);
  std::atomic<int> ran{0};
  Status st = pool.ParallelFor(50, [&](int64_t i) {
    ran.fetch_add(1);
    if (i == 31 || i == 7 || i == 45) return Status::InvalidArgument("bad " + std::to_string(i));
    return Status::OK();
  });
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_EQ(st.message(), "bad 7");
  EXPECT_EQ(ran.load(), 50);
}

TEST(ThreadPoolTest, ExceptionsBecomeStatuses) {
  ThreadPool pool(3);
  Status st = pool.ParallelFor(10, [](int64_t i) -> Status {
    if (i == 4) throw std::runtime_error("boom");
    return Status::OK();
  });
  EXPECT_EQ(st.code(), Code::kInternal);
  EXPECT_NE(st.message().find("boom"), std::string::npos);
}

TEST(ThreadPoolTest, ZeroMeansHardwareConcurrency) {
  ThreadPool pool(0);
  EXPECT_GE(pool.threads(), 1);
}

}  // namespace
}  // namespace kvc::cpu
