#include "storage/hot_tier.h"

namespace kvc::storage {

HotTier::HotTier(uint64_t capacity_bytes, int64_t ttl_micros)
    : capacity_(capacity_bytes), ttl_(ttl_micros) {}

std::optional<CompactedCache> HotTier::Get(const std::string& ekey, int64_t now_micros) {
  std::lock_guard<std::mutex> lock(mu_);
  auto found = index_.find(ekey);
  if (found == index_.end()) return std::nullopt;
  List::iterator it = found->second;
  if (Expired(*it, now_micros)) {
    EraseLocked(it);
    expirations_.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it);
  return it->entry;
}

bool HotTier::Contains(const std::string& ekey, int64_t now_micros) {
  std::lock_guard<std::mutex> lock(mu_);
  auto found = index_.find(ekey);
  return found != index_.end() && !Expired(*found->second, now_micros);
}

bool HotTier::Insert(const std::string& ekey, CompactedCache entry, uint64_t payload_bytes,
                     int64_t now_micros, int64_t deadline_micros) {
  if (capacity_ == 0 || payload_bytes > capacity_) return false;
  int64_t expires = deadline_micros;
  if (ttl_ > 0 && (expires == 0 || now_micros + ttl_ < expires)) expires = now_micros + ttl_;
  std::lock_guard<std::mutex> lock(mu_);
  if (auto found = index_.find(ekey); found != index_.end()) EraseLocked(found->second);
  lru_.push_front(Node{ekey, std::move(entry), payload_bytes, expires});
  index_.emplace(lru_.front().ekey, lru_.begin());
  bytes_ += payload_bytes;
  while (bytes_ > capacity_) {
    EraseLocked(std::prev(lru_.end()));
    evictions_.fetch_add(1, std::memory_order_relaxed);
  }
  return true;
}

void HotTier::Erase(const std::string& ekey) {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto found = index_.find(ekey); found != index_.end()) EraseLocked(found->second);
}

void HotTier::SweepExpired(int64_t now_micros) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = lru_.begin(); it != lru_.end();) {
    auto next = std::next(it);
    if (Expired(*it, now_micros)) {
      EraseLocked(it);
      expirations_.fetch_add(1, std::memory_order_relaxed);
    }
    it = next;
  }
}

uint64_t HotTier::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.size();
}

uint64_t HotTier::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

void HotTier::EraseLocked(List::iterator it) {
  bytes_ -= it->bytes;
  index_.erase(it->ekey);
  lru_.erase(it);
}

}  // namespace kvc::storage
