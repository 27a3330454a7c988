// The bootstrap connection (internal): how a client finds a worker's UCP endpoint.
//
// UCX 1.13's sockaddr connection manager selects only transports that connect endpoint to
// endpoint (TCP, RDMA), so a client on the worker's host could never use shared memory. The
// listener therefore accepts a plain TCP connection on its socket address and answers with its
// UCP worker address and a connection token; the client creates its endpoint from that address
// (UCX picks shared memory on one host, TCP or RDMA across hosts) and sends a hello carrying
// the token, by which the listener adopts the endpoint. The TCP connection stays open for the
// endpoint's lifetime as a liveness signal: when either process exits or closes it, the other
// side sees EOF and fails the connection at once, whatever the transport.
//
//   client -> server  u32 magic "KVCB", u16 version, u16 reserved, u64 reserved     (16 bytes)
//   server -> client  u32 magic, u16 version, u16 status (Code), u64 token,
//                     u32 address length, address bytes (at most 64 KiB)
//
// Thread safety: pure functions on file descriptors the caller owns.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "services/transport/address.h"

namespace kvc::transport {

inline constexpr uint32_t kBootstrapMagic = 0x4243564b;  // "KVCB"
inline constexpr size_t kClientHelloBytes = 16;
inline constexpr size_t kMaxWorkerAddressBytes = 64 * 1024;

struct ServerHello {
  uint64_t token = 0;
  std::string worker_address;
};

// A non-blocking listening socket on `addr`. Unavailable when it cannot be bound.
Result<int> ListenSocket(const SocketAddress& addr);
// The address the socket is bound to.
Result<SocketAddress> LocalAddress(int fd);

// Client side, blocking up to `timeout` in total: connects, sends the client hello and reads the
// server hello. Returns the connected socket in *fd (the caller owns it). Unavailable when the
// connection is refused or the server closes it; DeadlineExceeded on timeout; Corruption or
// NotSupported for an unexpected answer.
Result<ServerHello> ClientHandshake(const SocketAddress& addr, std::chrono::milliseconds timeout,
                                    int* fd);

// Server side: checks a complete client hello (Corruption / NotSupported).
Status ParseClientHello(const char* bytes);
// Server side: the reply; status not OK tells the client why it is refused.
std::string EncodeServerHello(const Status& status, uint64_t token, const std::string& address);

// Writes all of `data` to a socket whose buffer has room (fresh connections), false on failure.
bool WriteAll(int fd, const std::string& data);

}  // namespace kvc::transport
