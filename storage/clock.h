// Clock: the time source of the store (entry creation times, tier ages, TTLs).
//
// Injected through TieredStoreOptions so tests can move time without sleeping.
//
// Thread safety: NowMicros() may be called from any thread; implementations must be thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

namespace kvc::storage {

class Clock {
 public:
  virtual ~Clock() = default;
  // Microseconds since the Unix epoch. Expected to be non-decreasing; the store tolerates steps
  // backwards (an entry then looks younger than it is, never older).
  virtual int64_t NowMicros() const = 0;
};

// Wall clock (std::chrono::system_clock), so times survive restarts.
class SystemClock final : public Clock {
 public:
  int64_t NowMicros() const override {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

// A clock that only moves when told to; for tests.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_micros = 1'700'000'000'000'000) : now_(start_micros) {}
  int64_t NowMicros() const override { return now_.load(std::memory_order_acquire); }
  void Advance(std::chrono::microseconds d) {
    now_.fetch_add(d.count(), std::memory_order_acq_rel);
  }
  void Set(int64_t micros) { now_.store(micros, std::memory_order_release); }

 private:
  std::atomic<int64_t> now_;
};

// A shared SystemClock.
std::shared_ptr<Clock> DefaultClock();

}  // namespace kvc::storage
