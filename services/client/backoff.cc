#include "services/client/backoff.h"

#include <algorithm>

namespace kvc::client {

std::chrono::milliseconds BackoffCeiling(const BackoffPolicy& policy, int retry) {
  const int64_t base = policy.base.count();
  const int64_t cap = policy.max.count();
  int64_t d = base;
  for (int i = 1; i < retry && d < cap; ++i) d *= 2;  // doubling stops at the cap: no overflow
  return std::chrono::milliseconds(std::min(d, cap));
}

std::chrono::milliseconds BackoffDelay(const BackoffPolicy& policy, int retry, double u) {
  const double d = static_cast<double>(BackoffCeiling(policy, retry).count());
  const double clamped = std::clamp(u, 0.0, 1.0);
  const auto half = static_cast<int64_t>(d / 2);
  const auto wait = static_cast<int64_t>(d / 2 + clamped * d / 2);
  return std::chrono::milliseconds(std::clamp<int64_t>(wait, half, static_cast<int64_t>(d)));
}

Jitter::Jitter(uint64_t seed) : rng_(seed != 0 ? seed : std::random_device{}()) {}

double Jitter::Next() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
}

}  // namespace kvc::client
