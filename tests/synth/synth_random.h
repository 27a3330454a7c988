// Counter-based random streams for the synthetic KV generator (internal to tests/synth).
//
// A stream is a 64-bit key derived from the seed and a path of integers (stream id, layer,
// head, ...); value i of a stream is a SplitMix64 mix of key + (i + 1) * golden, so any value can
// be computed without the ones before it and streams never share state.
// Normals come from a 65536-entry inverse-CDF table (|z| <= 4.17, exactly symmetric), four per
// 64-bit draw: cheap enough for the billions of noise elements of an 8B-sized cache.
//
// Thread safety: Rng is a value owned by one thread; NormalTable() is built once, thread-safely.
#pragma once

#include <cstdint>
#include <initializer_list>

namespace kvc::synth_detail {

inline constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// The SplitMix64 finaliser: a bijective 64-bit mix.
inline uint64_t Mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Key of the stream named by `path` under `seed`.
uint64_t StreamKey(uint64_t seed, std::initializer_list<uint64_t> path);

// Value i of the stream `key`.
inline uint64_t StreamValue(uint64_t key, uint64_t i) { return Mix64(key + (i + 1) * kGolden); }

// Uniform in [0, 1) from the top 53 bits of a 64-bit value.
inline double ToUniform(uint64_t x) { return static_cast<double>(x >> 11) * 0x1.0p-53; }

// 65536 approximately standard normal values: entry i is the inverse normal CDF at
// (i + 0.5) / 65536. Never null.
const float* NormalTable();

// Sequential reader of one stream.
class Rng {
 public:
  explicit Rng(uint64_t key) : key_(key), table_(NormalTable()) {}

  uint64_t Next() { return StreamValue(key_, counter_++); }
  double Uniform() { return ToUniform(Next()); }
  // Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  // Uniform integer in [0, n). REQUIRES: n > 0.
  uint64_t Below(uint64_t n) { return static_cast<uint64_t>(Uniform() * static_cast<double>(n)); }
  float Normal() { return table_[Next() & 0xffffu]; }
  // Fills out[0, n) with normals, four per draw.
  void Normals(float* out, int64_t n);

 private:
  uint64_t key_;
  uint64_t counter_ = 0;
  const float* table_;
};

}  // namespace kvc::synth_detail
