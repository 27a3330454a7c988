#include "services/transport/registration_cache.h"

#include <vector>

namespace kvc::transport {

Registration::Registration(std::shared_ptr<UcpContextHandle> ucp, ucp_mem_h memh, Tensor pin)
    : ucp_(std::move(ucp)), memh_(memh), pin_(std::move(pin)) {}

Registration::~Registration() { ucp_->Unmap(memh_); }

RegistrationCache::RegistrationCache(std::shared_ptr<UcpContextHandle> ucp, size_t max_bytes,
                                     size_t max_entries)
    : ucp_(std::move(ucp)), max_bytes_(max_bytes), max_entries_(max_entries) {}

Result<std::shared_ptr<Registration>> RegistrationCache::Get(const Tensor& t) {
  if (t.nbytes() == 0) return std::shared_ptr<Registration>();
  const Key key{reinterpret_cast<uintptr_t>(t.raw()), t.nbytes()};
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.lru);
      ++hits_;
      return it->second.reg;
    }
    ++misses_;
  }
  // Registration happens outside the lock; two threads may register the same range, and the
  // second insert below then keeps the first entry.
  KVC_ASSIGN_OR_RETURN(ucp_mem_h memh, ucp_->Map(const_cast<void*>(t.raw()), t.nbytes()));
  auto reg = std::make_shared<Registration>(ucp_, memh, t);
  std::vector<std::shared_ptr<Registration>> evicted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.count(key) == 0 && t.nbytes() <= max_bytes_) {
      lru_.push_front(key);
      entries_[key] = Entry{reg, lru_.begin()};
      bytes_ += key.second;
      EvictLocked(&evicted);
    }
  }
  return reg;  // `evicted` unregisters outside the lock unless sends still hold them
}

void RegistrationCache::EvictLocked(std::vector<std::shared_ptr<Registration>>* out) {
  while (!lru_.empty() && (bytes_ > max_bytes_ || entries_.size() > max_entries_)) {
    const Key victim = lru_.back();
    lru_.pop_back();
    auto it = entries_.find(victim);
    out->push_back(std::move(it->second.reg));
    bytes_ -= victim.second;
    entries_.erase(it);
  }
}

void RegistrationCache::Clear() {
  std::map<Key, Entry> drop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    drop.swap(entries_);
    lru_.clear();
    bytes_ = 0;
  }
}

size_t RegistrationCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

size_t RegistrationCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

uint64_t RegistrationCache::hits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return hits_;
}

uint64_t RegistrationCache::misses() const {
  std::lock_guard<std::mutex> lock(mu_);
  return misses_;
}

}  // namespace kvc::transport
