// Three kvcompactd processes and clients under load while a worker is killed (kill -9) or
// stopped (SIGSTOP): the clients fail over within their budgets, and a restarted worker serves
// every entry it acknowledged.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "services/client/client.h"
#include "services/engine/engine_testing.h"
#include "tests/integration/client_cluster.h"

namespace kvc {
namespace {

namespace et = engine::testing;
using client::Client;
using testing::TokenRange;
using Ms = std::chrono::duration<double, std::milli>;

struct Acked {
  std::vector<int32_t> tokens;
  std::string worker;
  client::EntryRef ref;
  int64_t entries = 0;
  int attempts = 0;
};

std::unique_ptr<Client> MakeClient(client::ClientOptions o) {
  auto c = Client::Create(std::move(o));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

// Tokens of request n: distinct first blocks, so requests spread over the workers.
std::vector<int32_t> RequestTokens(int n) { return TokenRange(128, 2'000'000 + n * 1000); }

// Compaction requests from several threads (half over UCX, half inline) until stopped; records
// every acknowledged entry with the worker that acknowledged it.
class Load {
 public:
  Load(const testing::ClientCluster& cluster, int threads) {
    for (int t = 0; t < threads; ++t) {
      client::ClientOptions o = cluster.Options();
      if (t % 2 == 0) o.inline_threshold_bytes = 0;
      threads_.emplace_back([this, o] { Run(MakeClient(o)); });
    }
  }
  ~Load() { Stop(); }

  void Stop() {
    stop_ = true;
    for (auto& th : threads_) th.join();
    threads_.clear();
  }
  std::vector<Acked> acked() const {
    std::lock_guard<std::mutex> lock(mu_);
    return acked_;
  }
  size_t AckedBy(const std::string& worker) const {
    std::lock_guard<std::mutex> lock(mu_);
    return std::count_if(acked_.begin(), acked_.end(),
                         [&](const Acked& a) { return a.worker == worker; });
  }
  int issued() const { return next_.load(); }
  int failed() const { return failed_.load(); }

 private:
  void Run(std::unique_ptr<Client> c) {
    const CompactionSpec spec = et::FastSpec();
    while (!stop_.load()) {
      const int n = next_++;
      auto put = c->Compact(RequestTokens(n), et::TinyCache(1000 + n, 128), spec);
      if (!put.ok()) {
        ADD_FAILURE() << "request " << n << ": " << put.status().ToString();
        ++failed_;
        continue;
      }
      std::lock_guard<std::mutex> lock(mu_);
      acked_.push_back(
          {RequestTokens(n), put->worker, put->ref, put->outcome.entry.entries, put->attempts});
    }
  }

  mutable std::mutex mu_;
  std::vector<Acked> acked_;
  std::atomic<int> next_{0}, failed_{0};
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// Waits up to 60 s for `done`.
template <typename Fn>
bool WaitFor(Fn done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

TEST(MultiworkerFailover, KillDashNineUnderLoadThenRestartServesEveryAcknowledgedEntry) {
  auto started = testing::ClientCluster::Start({});
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  testing::ClientCluster& cluster = **started;
  const std::string victim = cluster.id(0);

  // Let some entries land on worker 0, kill it mid-load, keep the load going a while.
  Load load(cluster, 3);
  ASSERT_TRUE(WaitFor([&] { return load.AckedBy(victim) >= 8; })) << "worker 0 acked too little";
  cluster.Kill(0);
  const size_t at_kill = load.acked().size();
  ASSERT_TRUE(WaitFor([&] { return load.acked().size() >= at_kill + 30; }));
  load.Stop();
  EXPECT_EQ(load.failed(), 0);
  const std::vector<Acked> acked = load.acked();
  size_t victim_after_kill = 0;
  for (size_t i = at_kill + 3; i < acked.size(); ++i) {  // up to 3 were in flight at the kill
    if (acked[i].worker == victim) ++victim_after_kill;
  }
  EXPECT_EQ(victim_after_kill, 0u) << "a dead worker acknowledged requests";
  // Requests whose home was the dead worker went to their next worker.
  const auto failed_over =
      std::count_if(acked.begin() + static_cast<ptrdiff_t>(at_kill), acked.end(),
                    [](const Acked& a) { return a.attempts > 1; });
  EXPECT_GE(failed_over, 1);

  // Restart on the same ports and data directory: everything it acknowledged is there.
  const Status restarted = cluster.Restart(0);
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  const CompactionSpec spec = et::FastSpec();
  const KvLayout layout = et::TinyCache(1, 128).layout;
  auto only_victim = MakeClient(cluster.Options(0));
  int checked = 0;
  for (const Acked& a : acked) {
    if (a.worker != victim) continue;
    auto hit = only_victim->FetchPrefix(a.tokens, layout, spec);
    ASSERT_TRUE(hit.ok()) << hit.status().ToString() << "\n" << cluster.LogTail(0);
    EXPECT_EQ(hit->lookup.matched_blocks, 2u);
    EXPECT_EQ(hit->fetch.cache.total_entries(), a.entries);
    ++checked;
  }
  EXPECT_GE(checked, 3);
  std::printf(
      "acknowledged %zu entries, %d by the killed worker before the kill, %zu after it "
      "(%td of them after a failover)\n",
      acked.size(), checked, acked.size() - at_kill, failed_over);
  // Every acknowledged entry, wherever it went while worker 0 was down, is found (every worker
  // is asked: the restarted one may have come back under another port, so another identity).
  client::ClientOptions every = cluster.Options();
  every.lookup_fanout = cluster.size();
  auto all = MakeClient(every);
  for (const Acked& a : acked) {
    auto found = all->Lookup(a.tokens, layout, spec);
    ASSERT_TRUE(found.ok()) << found.status().ToString();
    EXPECT_EQ(found->matched_blocks, 2u) << "entry acknowledged by " << a.worker;
  }
}

TEST(MultiworkerFailover, StoppedWorkerCostsOneShareOfTheBudget) {
  auto started = testing::ClientCluster::Start({});
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  testing::ClientCluster& cluster = **started;
  const CompactionSpec spec = et::FastSpec();
  client::ClientOptions o = cluster.Options();
  o.timeouts.lookup = std::chrono::milliseconds(1500);
  o.timeouts.compact = std::chrono::milliseconds(9000);
  o.inline_threshold_bytes = 0;
  auto c = MakeClient(o);

  // A key whose home is worker 1; store it first so a lookup has something to find elsewhere.
  int n = 0;
  std::vector<int32_t> tokens;
  const KvLayout layout = et::TinyCache(1, 128).layout;
  for (;; ++n) {
    tokens = RequestTokens(500 + n);
    if (c->RouteOf(*c->Chain(tokens, layout, spec))[0] == cluster.id(1)) break;
  }
  cluster.Pause(1);
  auto start = std::chrono::steady_clock::now();
  auto put = c->Compact(tokens, et::TinyCache(7, 128), spec);
  const double put_ms = Ms(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_NE(put->worker, cluster.id(1));
  EXPECT_EQ(put->attempts, 2);
  EXPECT_LT(put_ms, 9000);

  // The stopped worker is now suspect: lookups go elsewhere first and are fast.
  start = std::chrono::steady_clock::now();
  auto hit = c->Lookup(tokens, layout, spec);
  ASSERT_TRUE(hit.ok()) << hit.status().ToString();
  EXPECT_EQ(hit->matched_blocks, 2u);
  EXPECT_LT(Ms(std::chrono::steady_clock::now() - start).count(), 1500);

  // A fresh client does not know: it pays one share of the lookup budget, then fails over.
  auto fresh = MakeClient(o);
  start = std::chrono::steady_clock::now();
  hit = fresh->Lookup(tokens, layout, spec);
  const double lookup_ms = Ms(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(hit.ok()) << hit.status().ToString();
  EXPECT_EQ(hit->matched_blocks, 2u);
  EXPECT_GE(lookup_ms, 400);
  EXPECT_LT(lookup_ms, 1500 + 100);

  cluster.Resume(1);
  auto only = MakeClient(cluster.Options(1));
  auto health = only->Health();
  ASSERT_TRUE(health[0].status.ok()) << health[0].status.ToString();
  EXPECT_TRUE(health[0].value->serving);
  auto served = only->Compact(tokens, et::TinyCache(7, 128), spec);
  EXPECT_TRUE(served.ok()) << served.status().ToString();
}

}  // namespace
}  // namespace kvc
