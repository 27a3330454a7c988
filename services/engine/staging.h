// The engine's byte budget for KV caches it holds, and the uploads staged for later compact
// requests. Internal to services/engine.
//
//   ByteBudget     a limit and a running total; Reserve hands out a Reservation (RAII) that
//                  gives its bytes back when destroyed.
//   StagedUploads  session id -> uploaded KvCache with its reservation and arrival time; a
//                  compact request Take()s its session, Sweep drops what nobody claimed.
//
// Thread safety: both classes are thread-safe. A Reservation is a value owned by one thread
// at a time; it may be destroyed on any thread. REQUIRES: the ByteBudget outlives its
// reservations.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"

namespace kvc::engine {

class ByteBudget;

class Reservation {
 public:
  Reservation() = default;
  ~Reservation() { Release(); }
  Reservation(Reservation&& other) noexcept { *this = std::move(other); }
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;

  uint64_t bytes() const { return bytes_; }
  // Gives the bytes back now (idempotent).
  void Release();

 private:
  friend class ByteBudget;
  Reservation(ByteBudget* budget, uint64_t bytes) : budget_(budget), bytes_(bytes) {}
  ByteBudget* budget_ = nullptr;
  uint64_t bytes_ = 0;
};

class ByteBudget {
 public:
  explicit ByteBudget(uint64_t limit) : limit_(limit) {}
  // Reserves `bytes`, or ResourceExhausted naming `what`, the bytes asked and free (nothing
  // reserved).
  Result<Reservation> Reserve(uint64_t bytes, std::string_view what);
  uint64_t used() const;
  uint64_t limit() const { return limit_; }

 private:
  friend class Reservation;
  void Give(uint64_t bytes);

  const uint64_t limit_;
  mutable std::mutex mu_;
  uint64_t used_ = 0;
};

// Tensor bytes of every tensor in `cache` (K, V and queries).
uint64_t CacheBytes(const KvCache& cache);

class StagedUploads {
 public:
  using Clock = std::chrono::steady_clock;

  // Files `cache` under `session` with its reservation. InvalidArgument if the session is
  // already staged (nothing changes; `reservation` is released by the caller's copy going out
  // of scope).
  Status Put(uint64_t session, KvCache cache, Reservation reservation, Clock::time_point now);

  struct Taken {
    KvCache cache;
    Reservation reservation;
  };
  // Removes and returns the upload of `session`; NotFound (with a hint that uploads expire or
  // are consumed once) when there is none.
  Result<Taken> Take(uint64_t session);

  // Drops uploads staged before `now - ttl`; returns how many.
  size_t Sweep(Clock::time_point now, std::chrono::milliseconds ttl);
  // Drops everything; returns how many.
  size_t Clear();
  size_t size() const;

 private:
  struct Entry {
    KvCache cache;
    Reservation reservation;
    Clock::time_point staged_at;
  };
  mutable std::mutex mu_;
  std::map<uint64_t, Entry> entries_;
};

}  // namespace kvc::engine
