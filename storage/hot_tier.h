// HotTier: an in-process LRU of decoded entries bounded in bytes of tensor payload (internal to
// storage/). It caches what the durable tiers hold, so dropping an entry never loses data.
//
// Cached caches are shared: Get returns a CompactedCache whose tensors refer to the cached bytes.
// Nobody may write through them (TieredStore::Get documents the same for its callers).
//
// Thread safety: every method may be called concurrently (one internal mutex; Get copies a few
// shared pointers under it, never tensor bytes).
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/kv_cache.h"

namespace kvc::storage {

class HotTier {
 public:
  // capacity_bytes 0 disables the tier (Insert keeps nothing). ttl_micros 0: no expiry.
  HotTier(uint64_t capacity_bytes, int64_t ttl_micros);

  bool enabled() const { return capacity_ > 0; }

  // The cached entry, moved to the front of the LRU; nullopt when absent or expired (an expired
  // entry is dropped and counted).
  std::optional<CompactedCache> Get(const std::string& ekey, int64_t now_micros);
  // True when a live entry is cached; does not touch the LRU order.
  bool Contains(const std::string& ekey, int64_t now_micros);

  // Caches `entry` (replacing any entry of ekey), then evicts least recently used entries until
  // the payload fits. The entry expires at the earlier of now + ttl and `deadline_micros` (the
  // expiry of its durable copy; 0 = none), so the hot tier never outlives the tier below.
  // An entry larger than the capacity is not cached (returns false).
  bool Insert(const std::string& ekey, CompactedCache entry, uint64_t payload_bytes,
              int64_t now_micros, int64_t deadline_micros = 0);
  // Drops the entry of ekey if cached.
  void Erase(const std::string& ekey);
  // Drops every expired entry.
  void SweepExpired(int64_t now_micros);

  uint64_t entries() const;
  uint64_t bytes() const;
  uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }
  uint64_t expirations() const { return expirations_.load(std::memory_order_relaxed); }

 private:
  struct Node {
    std::string ekey;
    CompactedCache entry;
    uint64_t bytes;
    int64_t expires_micros;  // 0 = never
  };
  using List = std::list<Node>;

  static bool Expired(const Node& n, int64_t now) {
    return n.expires_micros != 0 && now >= n.expires_micros;
  }
  // REQUIRES: mu_ held.
  void EraseLocked(List::iterator it);

  const uint64_t capacity_;
  const int64_t ttl_;
  mutable std::mutex mu_;
  List lru_;                                                    // front = most recently used
  std::unordered_map<std::string_view, List::iterator> index_;  // views Node::ekey
  uint64_t bytes_ = 0;
  std::atomic<uint64_t> evictions_{0};
  std::atomic<uint64_t> expirations_{0};
};

}  // namespace kvc::storage
