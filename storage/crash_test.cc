// Crash safety: a child process (storage_crash_child) puts and deletes entries with sync on and is
// killed with SIGKILL at random moments, many times over. After each kill the store is reopened
// and must hold every acknowledged Put (verified byte for byte), none of the acknowledged
// Deletes, and for the one operation in flight either its whole effect or none of it — never a
// partial entry, never a checksum failure.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "storage/crash_shape.h"
#include "storage/testing.h"

namespace kvc::storage {
namespace {

constexpr int kRounds = 25;

enum class State { kPresent, kAbsent, kEither };

struct Child {
  pid_t pid = -1;
  int out = -1;  // read end of the child's stdout
};

Child Spawn(const std::string& warm, const std::string& cold, uint64_t first, uint64_t seed) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  const std::string first_s = std::to_string(first), seed_s = std::to_string(seed);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execl(KVC_STORAGE_CRASH_CHILD, KVC_STORAGE_CRASH_CHILD, warm.c_str(), cold.c_str(),
            first_s.c_str(), seed_s.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

// Reads the child's output until its "R" line (the store is open) or the deadline.
std::string ReadUntilReady(int fd, std::chrono::milliseconds deadline) {
  std::string seen;
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (seen.find("R\n") == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[256];
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    seen.append(buf, n);
  }
  return seen;
}

std::string DrainToEof(int fd) {
  std::string all;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      all.append(buf, n);
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(fd);
  return all;
}

// Applies the child's report to the expected states; returns the next unused key.
uint64_t Apply(const std::string& report, std::map<uint64_t, State>* states, uint64_t next) {
  std::istringstream in(report);
  std::string tag;
  uint64_t key;
  while (in >> tag) {
    if (tag == "R") continue;
    in >> key;
    if (tag == "p") {
      (*states)[key] = State::kEither;
      next = std::max(next, key + 1);
    } else if (tag == "P") {
      (*states)[key] = State::kPresent;
    } else if (tag == "d") {
      // An unacknowledged delete of an absent key leaves it absent.
      if ((*states)[key] != State::kAbsent) (*states)[key] = State::kEither;
    } else if (tag == "D") {
      (*states)[key] = State::kAbsent;
    }
  }
  return next;
}

// Checks the reopened store against the expected states and resolves kEither by what is there.
void Verify(TieredStore& store, std::map<uint64_t, State>* states, int round) {
  for (auto& [key, state] : *states) {
    Result<CompactedCache> got = store.Get(testing::KeyFor(key));
    ASSERT_TRUE(got.ok() || got.status().IsNotFound())
        << "round " << round << " key " << key << ": " << got.status().ToString();
    if (state == State::kPresent) {
      ASSERT_TRUE(got.ok()) << "round " << round << ": acknowledged key " << key << " lost";
    }
    if (state == State::kAbsent) {
      ASSERT_FALSE(got.ok()) << "round " << round << ": deleted key " << key << " is back";
    }
    if (got.ok()) {
      std::string why;
      ASSERT_TRUE(testing::SameCache(CrashTestCache(key), *got, &why))
          << "round " << round << " key " << key << ": " << why;
    }
    state = got.ok() ? State::kPresent : State::kAbsent;
  }
  const StoreStats s = store.Stats();
  ASSERT_EQ(s.warm.corruptions + s.cold.corruptions, 0u) << "round " << round;
}

TEST(CrashTest, KilledWriterLosesNothingAcknowledged) {
  testing::TempDir dir("kvc-crash");
  const std::string warm = dir.Sub("warm"), cold = dir.Sub("cold");
  std::map<uint64_t, State> states;
  std::mt19937_64 rng(20240611);
  uint64_t next = 0;
  size_t acknowledged = 0;
  const auto start = std::chrono::steady_clock::now();
  int killed_during_open = 0;
  int rounds_with_puts = 0;
  for (int round = 0; round < kRounds; ++round) {
    Child child = Spawn(warm, cold, next, rng());
    ASSERT_GT(child.pid, 0);
    std::string report;
    if (round % 5 == 4) {
      // Kill while the child opens the store and recovers.
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 80));
    } else {
      // Kill in the middle of puts, deletes and the moves between tiers they cause.
      report = ReadUntilReady(child.out, std::chrono::seconds(20));
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));
    }
    ASSERT_EQ(::kill(child.pid, SIGKILL), 0);
    int wstatus = 0;
    ASSERT_EQ(::waitpid(child.pid, &wstatus, 0), child.pid);
    report += DrainToEof(child.out);
    ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
        << "the child exited by itself (status " << wstatus << "); report:\n"
        << report;
    killed_during_open += report.find("R\n") == std::string::npos;
    rounds_with_puts += report.find("P ") != std::string::npos;
    next = Apply(report, &states, next);
    for (const auto& [k, s] : states) acknowledged += s == State::kPresent;
    // The verifier only reads: no promotions, so checking costs no synced writes.
    TieredStoreOptions verify = CrashTestOptions(warm, cold);
    verify.promote_on_cold_hit = false;
    auto store = TieredStore::Open(verify);
    ASSERT_TRUE(store.ok()) << "round " << round << ": " << store.status().ToString();
    Verify(**store, &states, round);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  RecordProperty("keys", static_cast<int>(states.size()));
  RecordProperty("killed_during_open", killed_during_open);
  std::printf("%d rounds, %llu puts started, %d kills during open, %.1f s\n", kRounds,
              static_cast<unsigned long long>(next), killed_during_open, seconds);
  // The run must have exercised something: most rounds killed a child that was writing.
  EXPECT_GE(rounds_with_puts, kRounds / 2) << next << " puts started in " << seconds << " s";
  EXPECT_GT(acknowledged, 0u);
}

}  // namespace
}  // namespace kvc::storage
