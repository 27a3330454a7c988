// ThriftServer: serves a KvCompactIf handler on a TCP port with framed transport and the binary
// protocol (strict: a message must start with the protocol version), one thread per connection
// (TThreadedServer) up to max_connections.
//
// Robustness: a connection that sends bytes which are not a framed binary Thrift message (a
// frame over max_frame_bytes, a bad version, a malformed struct) is closed; the server and the
// other connections carry on. Thrift's exceptions stay inside this class: Start reports
// failures as a Status, and serving errors are logged.
//
// Thread safety: Start/Stop from one owner thread; port() from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "common/status.h"
#include "idl/KvCompact.h"

namespace apache::thrift::server {
class TThreadedServer;
}

namespace kvc::rpc {

struct ThriftServerOptions {
  // Address to bind; "0.0.0.0" means every IPv4 interface. Default: "0.0.0.0".
  std::string address = "0.0.0.0";
  // Port; 0 picks a free one (see port()). Default: 7400.
  uint16_t port = 7400;
  // Connections served at once (a thread each); further clients wait in the accept backlog.
  // Default: 256.
  int max_connections = 256;
  // Largest frame (one request or response) accepted. Inline payloads must fit in it.
  // Default: 80 MiB (64 MiB payload plus room for the rest of the message).
  uint32_t max_frame_bytes = 80u << 20;
  // Close a connection that sends nothing for this long; 0 keeps idle connections open.
  // Default: 0.
  std::chrono::milliseconds idle_timeout{0};
};

class ThriftServer {
 public:
  // Binds, starts serving on a thread of its own and returns once the socket listens.
  // Unavailable when the address cannot be bound (port in use, bad address).
  static Result<std::unique_ptr<ThriftServer>> Start(std::shared_ptr<KvCompactIf> handler,
                                                     const ThriftServerOptions& options);
  // Stop()s.
  ~ThriftServer();
  ThriftServer(const ThriftServer&) = delete;
  ThriftServer& operator=(const ThriftServer&) = delete;

  // The port actually bound.
  uint16_t port() const { return port_; }
  // Stops accepting, lets calls in flight finish, closes every connection and joins the serving
  // thread. Idempotent.
  void Stop();

 private:
  ThriftServer() = default;

  std::shared_ptr<apache::thrift::server::TThreadedServer> server_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace kvc::rpc
