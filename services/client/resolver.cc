#include "services/client/resolver.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>

namespace kvc::client {

using Clock = std::chrono::steady_clock;

bool IsNumericHost(const std::string& host) {
  in6_addr buf{};
  return inet_pton(AF_INET, host.c_str(), &buf) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &buf) == 1;
}

Result<std::string> SystemLookup(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return Status::Unavailable("cannot resolve host '" + host + "': " + gai_strerror(rc));
  }
  char text[INET6_ADDRSTRLEN] = {};
  const void* addr =
      res->ai_family == AF_INET6
          ? static_cast<const void*>(
                &reinterpret_cast<const sockaddr_in6*>(res->ai_addr)->sin6_addr)
          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(res->ai_addr)->sin_addr);
  const char* ok = inet_ntop(res->ai_family, addr, text, sizeof(text));
  freeaddrinfo(res);
  if (ok == nullptr) return Status::Unavailable("cannot print the address of '" + host + "'");
  return std::string(text);
}

// What the resolver knows of one host. Guarded by State::mu.
struct Entry {
  bool in_flight = false;
  uint64_t finished = 0;  // lookups completed so far
  std::optional<std::string> good;
  Clock::time_point good_at;
  Status last_error;
};

struct HostResolver::State {
  std::mutex mu;
  std::condition_variable cv;
  std::unordered_map<std::string, Entry> entries;  // never erased: references stay valid
};

HostResolver::HostResolver(ResolverOptions options)
    : options_(std::move(options)), state_(std::make_shared<State>()) {}

HostResolver::~HostResolver() = default;

namespace {

// Starts a lookup of `host` on a detached thread. REQUIRES: st->mu held, !entry.in_flight.
Status StartLookup(const std::shared_ptr<HostResolver::State>& st, Entry& entry,
                   const std::string& host, const LookupFn& lookup) {
  try {
    std::thread([st, host, lookup] {
      Result<std::string> r = lookup(host);
      std::lock_guard<std::mutex> lock(st->mu);
      Entry& e = st->entries[host];
      e.in_flight = false;
      ++e.finished;
      if (r.ok()) {
        e.good = std::move(r).value();
        e.good_at = Clock::now();
        e.last_error = Status::OK();
      } else {
        e.last_error = r.status();
      }
      st->cv.notify_all();
    }).detach();
  } catch (const std::system_error& e) {
    return Status::Unavailable(std::string("cannot start a name lookup: ") + e.what());
  }
  entry.in_flight = true;
  return Status::OK();
}

}  // namespace

Result<std::string> HostResolver::Resolve(const std::string& host,
                                          std::chrono::milliseconds budget) {
  if (IsNumericHost(host)) return host;
  const Clock::time_point deadline = Clock::now() + budget;
  std::unique_lock<std::mutex> lock(state_->mu);
  Entry& e = state_->entries[host];
  if (e.good && Clock::now() - e.good_at < options_.ttl) return *e.good;
  if (!e.in_flight) KVC_RETURN_IF_ERROR(StartLookup(state_, e, host, options_.lookup));
  // An older answer is served at once while the new lookup runs (the connect that follows has
  // its own timeout); only a host never resolved waits for its lookup.
  if (e.good) return *e.good;
  const uint64_t seen = e.finished;
  state_->cv.wait_until(lock, deadline, [&] { return e.finished != seen; });
  if (e.good) return *e.good;
  if (e.finished != seen) return e.last_error;
  return Status::DeadlineExceeded("resolving host '" + host + "' took longer than " +
                                  std::to_string(budget.count()) + " ms");
}

}  // namespace kvc::client
