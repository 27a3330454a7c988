// WorkerChannel: everything the client keeps per worker (internal to services/client).
//
//   - a small pool of Thrift connections (framed transport, binary protocol), each with socket
//     connect / send / receive timeouts; a connection whose call failed at the transport or
//     protocol level (or timed out, leaving a reply in flight) is closed, never reused;
//   - the worker's UCX endpoint, connected on first use and reused; a failed endpoint is
//     replaced on the next use (in-flight calls keep the old one alive until they return);
//   - health marks: "suspect until" after the worker failed to answer, "busy until" after it
//     answered Busy with a retry-after.
//
// Thread safety: every method is thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "idl/KvCompact.h"
#include "services/client/client_options.h"
#include "services/client/resolver.h"
#include "services/transport/endpoint.h"
#include "services/transport/ucx_context.h"

namespace apache::thrift::transport {
class TSocket;
class TTransport;
}  // namespace apache::thrift::transport

namespace kvc::client {

using Clock = std::chrono::steady_clock;

// Milliseconds left until `deadline` (0 when passed).
std::chrono::milliseconds Remaining(Clock::time_point deadline);
// The port of "host:port" (after the last colon); 0 when there is none or it is not a port.
uint16_t PortOfAddress(std::string_view address);

// One open Thrift connection.
class ThriftConnection {
 public:
  // Connects to `ip` (numeric, resolved by the caller) at the worker's Thrift port within
  // `connect` (Unavailable when refused or unreachable, DeadlineExceeded when the connect timed
  // out). `send` bounds every socket write.
  static Result<std::unique_ptr<ThriftConnection>> Open(const WorkerAddress& worker,
                                                        const std::string& ip,
                                                        std::chrono::milliseconds connect,
                                                        std::chrono::milliseconds send);
  ~ThriftConnection();
  ThriftConnection(const ThriftConnection&) = delete;
  ThriftConnection& operator=(const ThriftConnection&) = delete;

  // Runs `call(client)` with receive timeout `recv`. Typed worker errors come back as their
  // Status (Busy sets *retry_after_ms); a receive timeout is DeadlineExceeded, other transport
  // failures Unavailable, protocol errors Corruption. Any error that is not a typed worker error
  // marks the connection broken.
  Status Call(std::chrono::milliseconds recv,
              const std::function<void(rpc::KvCompactClient&)>& call, int64_t* retry_after_ms);

  bool broken() const { return broken_; }
  // True once the connection has served a call (it came from the pool).
  bool reused() const { return calls_ > 0; }

 private:
  ThriftConnection() = default;

  std::string remote_;
  std::shared_ptr<apache::thrift::transport::TSocket> socket_;
  std::shared_ptr<apache::thrift::transport::TTransport> transport_;
  std::unique_ptr<rpc::KvCompactClient> client_;
  bool broken_ = false;
  int64_t calls_ = 0;
};

class WorkerChannel {
 public:
  // `options` is borrowed and must outlive the channel.
  WorkerChannel(WorkerAddress address, const ClientOptions* options);
  ~WorkerChannel();

  const WorkerAddress& address() const { return address_; }
  const std::string& id() const { return id_; }

  // One Thrift call under `deadline`: the receive timeout is the time left. Takes a pooled
  // connection (or opens one, bounded by the connect timeout and the deadline) and returns it
  // afterwards unless it broke. When a reused connection fails at the transport level before
  // the deadline (the worker restarted and closed it), the idle pool is flushed and the call
  // runs once more on a fresh connection.
  Status Call(Clock::time_point deadline, const std::function<void(rpc::KvCompactClient&)>& call,
              int64_t* retry_after_ms = nullptr);

  // The UCX endpoint of this worker, connecting (once, shared by concurrent callers) when there
  // is none or the previous one failed. Asks the worker's health() for its UCX port when the
  // address has none. Unavailable when the worker runs without UCX or the connect fails.
  Result<std::shared_ptr<transport::Endpoint>> Endpoint(
      const std::shared_ptr<transport::UcxContext>& ctx, Clock::time_point deadline);
  // Forgets the endpoint (after a transfer failed); the next Endpoint() reconnects.
  void ResetEndpoint(const std::shared_ptr<transport::Endpoint>& failed);
  // Uses `port` for the worker's UCX listener from now on (a fetch answer names it).
  void LearnUcxPort(uint16_t port);

  // Health marks (see ClientOptions::suspect_period and Busy's retry-after).
  void MarkSuspect();
  void MarkHealthy();
  bool suspect(Clock::time_point now) const;
  void MarkBusy(std::chrono::milliseconds retry_after);
  Clock::time_point busy_until() const;
  // UCX to this worker failed to connect: skip it (inline fallback) until the suspect period
  // passes.
  void MarkUcxDown();
  bool ucx_down(Clock::time_point now) const;

  // Closes every idle connection.
  void DropIdle();

 private:
  Result<std::unique_ptr<ThriftConnection>> Acquire(Clock::time_point deadline);
  void Release(std::unique_ptr<ThriftConnection> conn);
  Result<uint16_t> UcxPort(Clock::time_point deadline);
  // The worker's numeric address within the connect timeout and the deadline.
  Result<std::string> ResolveHost(Clock::time_point deadline);

  const WorkerAddress address_;
  const std::string id_;
  const ClientOptions* const options_;
  HostResolver resolver_;

  std::mutex pool_mu_;
  std::vector<std::unique_ptr<ThriftConnection>> idle_;

  std::mutex ucx_mu_;  // serialises connecting; guards endpoint_ and ucx_port_
  std::shared_ptr<transport::Endpoint> endpoint_;
  uint16_t ucx_port_ = 0;

  std::atomic<int64_t> suspect_until_ns_{0};
  std::atomic<int64_t> busy_until_ns_{0};
  std::atomic<int64_t> ucx_down_until_ns_{0};
};

}  // namespace kvc::client
