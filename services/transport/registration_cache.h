// RegistrationCache: UCX registrations (ucp_mem_map) of tensors a client sends, kept for reuse.
//
// A client that uploads from the same buffers again (a serving engine's KV pages) registers
// them once. Each entry pins the tensor's storage (it holds a Tensor reference), so the address
// cannot be freed and reused by another allocation while its registration is cached; entries
// are evicted least-recently-used beyond `max_bytes` or `max_entries`. A Tensor made with
// Tensor::View and no owner is not pinned: the caller must keep such memory alive and call
// Clear() before freeing it.
//
// Ownership: a Registration is shared by the cache and by every send in flight that uses it; the
// memory is unregistered when the last reference goes.
// Thread safety: all methods are thread-safe.
#pragma once

#include <ucp/api/ucp.h>

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

#include "common/status.h"
#include "common/tensor.h"
#include "services/transport/ucx_context.h"

namespace kvc::transport {

class Registration {
 public:
  Registration(std::shared_ptr<UcpContextHandle> ucp, ucp_mem_h memh, Tensor pin);
  ~Registration();
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
  ucp_mem_h memh() const { return memh_; }

 private:
  std::shared_ptr<UcpContextHandle> ucp_;
  ucp_mem_h memh_;
  Tensor pin_;
};

class RegistrationCache {
 public:
  // Defaults: 1 GiB and 512 entries.
  explicit RegistrationCache(std::shared_ptr<UcpContextHandle> ucp,
                             size_t max_bytes = size_t{1} << 30, size_t max_entries = 512);

  // The registration of t's bytes, from the cache or new. Null (and OK) for an empty tensor.
  // Errors from ucp_mem_map are returned as they come (see FromUcs).
  Result<std::shared_ptr<Registration>> Get(const Tensor& t);
  void Clear();

  size_t entries() const;
  size_t bytes() const;
  uint64_t hits() const;
  uint64_t misses() const;

 private:
  using Key = std::pair<uintptr_t, size_t>;
  struct Entry {
    std::shared_ptr<Registration> reg;
    std::list<Key>::iterator lru;
  };
  void EvictLocked(std::vector<std::shared_ptr<Registration>>* out);

  std::shared_ptr<UcpContextHandle> ucp_;
  const size_t max_bytes_;
  const size_t max_entries_;
  mutable std::mutex mu_;
  std::map<Key, Entry> entries_;
  std::list<Key> lru_;  // front = most recent
  size_t bytes_ = 0;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
};

}  // namespace kvc::transport
