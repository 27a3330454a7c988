#include "services/client/rendezvous.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "common/sha256.h"

namespace kvc::client {
namespace {

std::vector<uint8_t> Key(int i) {
  const std::string s = "key-" + std::to_string(i);
  return {s.begin(), s.end()};
}

std::vector<std::string> Workers(int n) {
  std::vector<std::string> w;
  for (int i = 0; i < n; ++i) w.push_back("10.0.0." + std::to_string(i + 1) + ":7400");
  return w;
}

TEST(Rendezvous, OrderIsAPermutationByDecreasingWeight) {
  const std::vector<std::string> w = Workers(5);
  for (int k = 0; k < 50; ++k) {
    const std::vector<uint8_t> key = Key(k);
    const std::vector<size_t> order = RendezvousOrder(w, key);
    ASSERT_EQ(order.size(), w.size());
    std::vector<size_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < sorted.size(); ++i) EXPECT_EQ(sorted[i], i);
    for (size_t i = 1; i < order.size(); ++i) {
      EXPECT_GE(RendezvousWeight(w[order[i - 1]], key), RendezvousWeight(w[order[i]], key));
    }
  }
  EXPECT_TRUE(RendezvousOrder({}, Key(1)).empty());
}

TEST(Rendezvous, IndependentOfListOrder) {
  std::vector<std::string> w = Workers(4);
  std::vector<std::string> reversed(w.rbegin(), w.rend());
  for (int k = 0; k < 100; ++k) {
    const std::vector<size_t> a = RendezvousOrder(w, Key(k));
    const std::vector<size_t> b = RendezvousOrder(reversed, Key(k));
    for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(w[a[i]], reversed[b[i]]);
  }
}

TEST(Rendezvous, SpreadsKeysEvenly) {
  const std::vector<std::string> w = Workers(4);
  std::map<size_t, int> home;
  const int keys = 4000;
  for (int k = 0; k < keys; ++k) {
    // Realistic keys: SHA-256 digests, like block hashes.
    const std::string s = "block " + std::to_string(k);
    const Sha256::Digest d = Sha256::Hash(std::string_view(s));
    ++home[RendezvousOrder(w, std::span<const uint8_t>(d.data(), d.size()))[0]];
  }
  ASSERT_EQ(home.size(), w.size());
  for (const auto& [worker, count] : home) {
    EXPECT_GT(count, keys / 4 * 0.85) << "worker " << worker;
    EXPECT_LT(count, keys / 4 * 1.15) << "worker " << worker;
  }
}

TEST(Rendezvous, RemovingAWorkerMovesOnlyItsKeys) {
  const std::vector<std::string> w = Workers(5);
  std::vector<std::string> without = w;
  without.erase(without.begin() + 2);
  int moved = 0;
  for (int k = 0; k < 2000; ++k) {
    const std::vector<size_t> before = RendezvousOrder(w, Key(k));
    const std::vector<size_t> after = RendezvousOrder(without, Key(k));
    if (w[before[0]] == w[2]) {
      ++moved;
      // Its keys go to their second choice: the fallback order is the failover order.
      EXPECT_EQ(without[after[0]], w[before[1]]);
    } else {
      EXPECT_EQ(without[after[0]], w[before[0]]) << "key " << k << " moved needlessly";
    }
  }
  EXPECT_GT(moved, 0);
}

TEST(Rendezvous, WeightDependsOnWorkerAndKey) {
  EXPECT_NE(RendezvousWeight("a:1", Key(1)), RendezvousWeight("a:2", Key(1)));
  EXPECT_NE(RendezvousWeight("a:1", Key(1)), RendezvousWeight("a:1", Key(2)));
  EXPECT_EQ(RendezvousWeight("a:1", Key(1)), RendezvousWeight("a:1", Key(1)));
}

}  // namespace
}  // namespace kvc::client
