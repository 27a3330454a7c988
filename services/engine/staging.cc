#include "services/engine/staging.h"

#include <string>
#include <utility>

namespace kvc::engine {

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = std::exchange(other.budget_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void Reservation::Release() {
  if (budget_ != nullptr) budget_->Give(bytes_);
  budget_ = nullptr;
  bytes_ = 0;
}

Result<Reservation> ByteBudget::Reserve(uint64_t bytes, std::string_view what) {
  std::lock_guard<std::mutex> lock(mu_);
  if (bytes > limit_ - used_) {
    return Status::ResourceExhausted(
        std::string(what) + ": the worker's staging budget is full (" + std::to_string(bytes) +
        " bytes asked, " + std::to_string(limit_ - used_) + " of " + std::to_string(limit_) +
        " free); retry later or on another worker");
  }
  used_ += bytes;
  return Reservation(this, bytes);
}

uint64_t ByteBudget::used() const {
  std::lock_guard<std::mutex> lock(mu_);
  return used_;
}

void ByteBudget::Give(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  used_ -= bytes;
}

uint64_t CacheBytes(const KvCache& cache) {
  uint64_t total = 0;
  for (const LayerKv& l : cache.layers) {
    total += l.k.nbytes() + l.v.nbytes();
    if (l.q_window) total += l.q_window->nbytes();
    if (l.q_ref) total += l.q_ref->nbytes();
  }
  return total;
}

Status StagedUploads::Put(uint64_t session, KvCache cache, Reservation reservation,
                          Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (entries_.count(session) != 0) {
    return Status::InvalidArgument("upload session " + std::to_string(session) +
                                   " is already staged on this worker; use a new session id");
  }
  entries_.emplace(session, Entry{std::move(cache), std::move(reservation), now});
  return Status::OK();
}

Result<StagedUploads::Taken> StagedUploads::Take(uint64_t session) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(session);
  if (it == entries_.end()) {
    return Status::NotFound("upload session " + std::to_string(session) +
                            " is not staged on this worker (never uploaded here, already "
                            "consumed by a compact request, or expired); upload it again");
  }
  Taken taken{std::move(it->second.cache), std::move(it->second.reservation)};
  entries_.erase(it);
  return taken;
}

size_t StagedUploads::Sweep(Clock::time_point now, std::chrono::milliseconds ttl) {
  std::vector<Entry> dropped;  // destroyed outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (now - it->second.staged_at >= ttl) {
        dropped.push_back(std::move(it->second));
        it = entries_.erase(it);
      } else {
        ++it;
      }
    }
  }
  return dropped.size();
}

size_t StagedUploads::Clear() {
  std::map<uint64_t, Entry> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    dropped.swap(entries_);
  }
  return dropped.size();
}

size_t StagedUploads::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace kvc::engine
