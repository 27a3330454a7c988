// Socket address resolution for listeners and clients (internal).
// Thread safety: pure functions (getaddrinfo is thread-safe).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "common/status.h"

namespace kvc::transport {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
};

// Resolves `host` (name or numeric IPv4/IPv6; empty with passive means any address) and `port`.
// InvalidArgument when the name cannot be resolved.
Result<SocketAddress> ResolveAddress(const std::string& host, uint16_t port, bool passive);
// "host:port" of an IPv4/IPv6 address; the port of `addr`.
std::string AddressToString(const sockaddr_storage& addr);
uint16_t AddressPort(const sockaddr_storage& addr);

}  // namespace kvc::transport
