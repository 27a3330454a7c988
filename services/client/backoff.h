// Exponential backoff with jitter between the attempts of one client operation.
//
// Retry i (i >= 1: the wait before the (i+1)-th attempt) has the ceiling
//   d_i = min(max, base * 2^(i-1))
// and waits a uniformly jittered time in [d_i / 2, d_i] ("equal jitter": never less than half
// the ceiling, so a crowd of clients retrying together spreads out yet still backs off).
//
// Thread safety: BackoffDelay is pure; Jitter is thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>

namespace kvc::client {

struct BackoffPolicy {
  std::chrono::milliseconds base{20};   // Default: 20 ms.
  std::chrono::milliseconds max{1000};  // Default: 1 s.
};

// The ceiling d_i above. REQUIRES: retry >= 1, 0 < base <= max.
std::chrono::milliseconds BackoffCeiling(const BackoffPolicy& policy, int retry);

// The wait before retry `retry` for a uniform draw `u` in [0, 1): d_i/2 + u * d_i/2, in whole
// milliseconds (rounded down, at least d_i / 2). REQUIRES: as BackoffCeiling.
std::chrono::milliseconds BackoffDelay(const BackoffPolicy& policy, int retry, double u);

// A seeded source of jitter draws shared by the threads of one client.
class Jitter {
 public:
  // seed 0 draws a seed from std::random_device.
  explicit Jitter(uint64_t seed);
  // A uniform draw in [0, 1).
  double Next();

 private:
  std::mutex mu_;
  std::mt19937_64 rng_;
};

}  // namespace kvc::client
