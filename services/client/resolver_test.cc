#include "services/client/resolver.h"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace kvc::client {
namespace {

using namespace std::chrono_literals;

// A lookup function a test controls: counts calls, answers `answer` (or fails when empty), and
// blocks while the gate is closed.
struct FakeDns {
  std::mutex mu;
  std::condition_variable cv;
  bool open = true;
  std::string answer = "10.1.2.3";
  std::atomic<int> calls{0};

  void Close() {
    std::lock_guard<std::mutex> lock(mu);
    open = false;
  }
  void SetAnswer(std::string a) {
    std::lock_guard<std::mutex> lock(mu);
    answer = std::move(a);
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
  static LookupFn Fn(const std::shared_ptr<FakeDns>& dns) {
    return [dns](const std::string& host) -> Result<std::string> {
      dns->calls++;
      std::unique_lock<std::mutex> lock(dns->mu);
      dns->cv.wait(lock, [&] { return dns->open; });
      if (dns->answer.empty()) return Status::Unavailable("no such host " + host);
      return dns->answer;
    };
  }
};

ResolverOptions Options(const std::shared_ptr<FakeDns>& dns, std::chrono::milliseconds ttl) {
  ResolverOptions o;
  o.ttl = ttl;
  o.lookup = FakeDns::Fn(dns);
  return o;
}

TEST(HostResolver, NumericHostsNeedNoLookup) {
  auto dns = std::make_shared<FakeDns>();
  HostResolver r(Options(dns, 10s));
  EXPECT_EQ(r.Resolve("127.0.0.1", 1ms).value(), "127.0.0.1");
  EXPECT_EQ(r.Resolve("::1", 1ms).value(), "::1");
  EXPECT_EQ(dns->calls.load(), 0);
  EXPECT_TRUE(IsNumericHost("192.168.0.1"));
  EXPECT_FALSE(IsNumericHost("worker-1"));
  EXPECT_FALSE(IsNumericHost("1.2.3"));
}

TEST(HostResolver, FreshAnswersAreReused) {
  auto dns = std::make_shared<FakeDns>();
  HostResolver r(Options(dns, 10s));
  EXPECT_EQ(r.Resolve("worker-1", 5s).value(), "10.1.2.3");
  EXPECT_EQ(r.Resolve("worker-1", 5s).value(), "10.1.2.3");
  EXPECT_EQ(dns->calls.load(), 1);
}

TEST(HostResolver, HangingLookupEndsAtTheBudget) {
  auto dns = std::make_shared<FakeDns>();
  dns->Close();
  HostResolver r(Options(dns, 10s));
  const auto start = std::chrono::steady_clock::now();
  Result<std::string> ip = r.Resolve("worker-1", 100ms);
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(ip.ok());
  EXPECT_EQ(ip.status().code(), Code::kDeadlineExceeded) << ip.status().ToString();
  EXPECT_GE(waited, 100ms);
  EXPECT_LT(waited, 30s);  // the lookup itself never ends while the gate is closed
  // The lookup left running finishes later and its answer serves the next caller.
  dns->Open();
  EXPECT_EQ(r.Resolve("worker-1", 5s).value(), "10.1.2.3");
  EXPECT_EQ(dns->calls.load(), 1);
}

TEST(HostResolver, StaleAnswerServedWhileARefreshHangs) {
  auto dns = std::make_shared<FakeDns>();
  HostResolver r(Options(dns, 0ms));  // every answer is stale at once
  ASSERT_EQ(r.Resolve("worker-1", 5s).value(), "10.1.2.3");
  dns->Close();
  dns->SetAnswer("10.9.9.9");
  EXPECT_EQ(r.Resolve("worker-1", 5s).value(), "10.1.2.3");  // at once, not after 5 s
  EXPECT_EQ(r.Resolve("worker-1", 5s).value(), "10.1.2.3");  // the refresh is shared
  EXPECT_LE(dns->calls.load(), 2);
  dns->Open();
  // Once the refresh lands, its answer is used.
  for (int i = 0; i < 200 && r.Resolve("worker-1", 5s).value() != "10.9.9.9"; ++i) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(r.Resolve("worker-1", 5s).value(), "10.9.9.9");
}

TEST(HostResolver, UnknownNameIsUnavailableUnlessKnownBefore) {
  auto dns = std::make_shared<FakeDns>();
  dns->answer.clear();
  HostResolver r(Options(dns, 0ms));
  Result<std::string> ip = r.Resolve("ghost", 5s);
  ASSERT_FALSE(ip.ok());
  EXPECT_EQ(ip.status().code(), Code::kUnavailable);
  EXPECT_NE(ip.status().message().find("ghost"), std::string::npos);

  dns->SetAnswer("10.0.0.1");
  ASSERT_EQ(r.Resolve("ghost", 5s).value(), "10.0.0.1");
  dns->SetAnswer("");  // the name stops resolving: the old address is kept
  EXPECT_EQ(r.Resolve("ghost", 5s).value(), "10.0.0.1");
}

TEST(HostResolver, ConcurrentCallersShareOneLookup) {
  auto dns = std::make_shared<FakeDns>();
  dns->Close();
  HostResolver r(Options(dns, 10s));
  std::vector<std::thread> threads;
  std::atomic<int> answered{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      Result<std::string> ip = r.Resolve("worker-2", 20s);
      if (ip.ok() && *ip == "10.1.2.3") answered++;
    });
  }
  std::this_thread::sleep_for(50ms);
  dns->Open();
  for (auto& t : threads) t.join();
  EXPECT_EQ(answered.load(), 8);
  EXPECT_EQ(dns->calls.load(), 1);
}

TEST(HostResolver, ResolverMayDieBeforeItsLookup) {
  auto dns = std::make_shared<FakeDns>();
  dns->Close();
  {
    HostResolver r(Options(dns, 10s));
    EXPECT_FALSE(r.Resolve("worker-3", 10ms).ok());
  }
  dns->Open();  // the helper thread finishes against the state it shares
  for (int i = 0; i < 200 && dns.use_count() > 1; ++i) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(dns.use_count(), 1);
}

TEST(SystemLookup, ResolvesLocalhost) {
  Result<std::string> ip = SystemLookup("localhost");
  ASSERT_TRUE(ip.ok()) << ip.status().ToString();
  EXPECT_TRUE(IsNumericHost(*ip)) << *ip;
}

}  // namespace
}  // namespace kvc::client
