// HostResolver: host name resolution bounded by the caller's time (internal to services/client).
//
// getaddrinfo cannot be interrupted: a worker whose name server hangs (a container cut off its
// network, a dead resolver) would hold a client call for the resolver's own timeout, far past
// the call's deadline. HostResolver runs each lookup on a helper thread and waits for it at most
// the caller's budget:
//   - a numeric IPv4/IPv6 host is returned as it is, with no lookup;
//   - a fresh answer (younger than `ttl`) is returned at once;
//   - otherwise the caller waits for a lookup of that host (one at a time per host: concurrent
//     callers share it) until its budget ends; if the lookup has not finished by then, the last
//     good answer is returned when there is one (a name that stops resolving keeps its old
//     address: the connect that follows is bounded by its own timeout), else DeadlineExceeded.
// A lookup left running finishes on its own thread and its answer is kept for the next caller.
//
// Thread safety: every method is thread-safe. Helper threads hold the shared state they need, so
// a resolver may be destroyed while a lookup is still running.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace kvc::client {

// Blocking lookup of one host name to a numeric address ("10.0.0.7", "::1"). Unavailable when
// the name does not resolve.
using LookupFn = std::function<Result<std::string>(const std::string& host)>;

// getaddrinfo (AF_UNSPEC, SOCK_STREAM, AI_ADDRCONFIG): the first address, as text.
Result<std::string> SystemLookup(const std::string& host);

// True when `host` is a numeric IPv4 or IPv6 address.
bool IsNumericHost(const std::string& host);

struct ResolverOptions {
  // How long a successful answer is used without asking again. Default: 10 s.
  std::chrono::milliseconds ttl{10'000};
  // The lookup function; tests substitute slow or failing ones. Default: SystemLookup.
  LookupFn lookup = SystemLookup;
};

class HostResolver {
 public:
  explicit HostResolver(ResolverOptions options = {});
  ~HostResolver();
  HostResolver(const HostResolver&) = delete;
  HostResolver& operator=(const HostResolver&) = delete;

  // The numeric address of `host`, waiting at most `budget` (see the header comment).
  // DeadlineExceeded when the lookup outlasts the budget and no earlier answer exists;
  // Unavailable when the name does not resolve (and no earlier answer exists).
  Result<std::string> Resolve(const std::string& host, std::chrono::milliseconds budget);

  struct State;  // shared with the lookup threads; defined in resolver.cc

 private:
  const ResolverOptions options_;
  std::shared_ptr<State> state_;
};

}  // namespace kvc::client
