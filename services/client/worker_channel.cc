#include "services/client/worker_channel.h"

#include <thrift/TApplicationException.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/protocol/TProtocolException.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TSocket.h>
#include <thrift/transport/TTransportException.h>

#include <algorithm>
#include <charconv>
#include <string_view>
#include <utility>

#include "services/rpc/errors.h"

namespace kvc::client {
namespace {

using apache::thrift::TApplicationException;
using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::protocol::TProtocolException;
using apache::thrift::transport::TFramedTransport;
using apache::thrift::transport::TSocket;
using apache::thrift::transport::TTransportException;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

int64_t ToNs(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

int ClampMs(std::chrono::milliseconds ms) {
  return static_cast<int>(std::clamp<int64_t>(ms.count(), 1, 1 << 30));
}

}  // namespace

uint16_t PortOfAddress(std::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return 0;
  unsigned port = 0;
  const std::string_view digits = address.substr(colon + 1);
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), port);
  if (ec != std::errc() || end != digits.data() + digits.size() || port == 0 || port > 65535) {
    return 0;
  }
  return static_cast<uint16_t>(port);
}

std::chrono::milliseconds Remaining(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return std::max(left, std::chrono::milliseconds(0));
}

// --- ThriftConnection ---------------------------------------------------------------------------

Result<std::unique_ptr<ThriftConnection>> ThriftConnection::Open(const WorkerAddress& worker,
                                                                 const std::string& ip,
                                                                 std::chrono::milliseconds connect,
                                                                 std::chrono::milliseconds send) {
  std::unique_ptr<ThriftConnection> c(new ThriftConnection());
  c->remote_ = worker.id();
  try {
    c->socket_ = std::make_shared<TSocket>(ip, worker.thrift_port);
    c->socket_->setConnTimeout(ClampMs(connect));
    c->socket_->setSendTimeout(ClampMs(send));
    c->socket_->setNoDelay(true);
    c->socket_->setLinger(false, 0);
    c->transport_ = std::make_shared<TFramedTransport>(c->socket_);
    c->client_ =
        std::make_unique<rpc::KvCompactClient>(std::make_shared<TBinaryProtocol>(c->transport_));
    c->transport_->open();
  } catch (const TTransportException& e) {
    if (e.getType() == TTransportException::TIMED_OUT) {
      return Status::DeadlineExceeded("connect to " + c->remote_ + " timed out after " +
                                      std::to_string(connect.count()) + " ms");
    }
    return Status::Unavailable("connect to " + c->remote_ + ": " + e.what());
  } catch (const std::exception& e) {
    return Status::Unavailable("connect to " + c->remote_ + ": " + e.what());
  }
  return c;
}

ThriftConnection::~ThriftConnection() {
  try {
    if (transport_) transport_->close();
  } catch (const std::exception&) {  // closing a dead socket: nothing to do
  }
}

Status ThriftConnection::Call(std::chrono::milliseconds recv,
                              const std::function<void(rpc::KvCompactClient&)>& call,
                              int64_t* retry_after_ms) {
  if (retry_after_ms != nullptr) *retry_after_ms = 0;
  ++calls_;
  try {
    socket_->setRecvTimeout(ClampMs(recv));
    call(*client_);
    return Status::OK();
  } catch (const TTransportException& e) {
    broken_ = true;
    if (e.getType() == TTransportException::TIMED_OUT) {
      return Status::DeadlineExceeded("no answer from " + remote_ + " within " +
                                      std::to_string(recv.count()) + " ms");
    }
    return Status::Unavailable("connection to " + remote_ + " failed: " + e.what());
  } catch (const TProtocolException& e) {
    broken_ = true;
    return rpc::StatusFromThrift(e).WithContext(remote_);
  } catch (const TApplicationException& e) {
    broken_ = true;
    return rpc::StatusFromThrift(e).WithContext(remote_);
  } catch (const std::exception& e) {
    // The typed exceptions of idl/kvcompact.thrift: the reply was read whole, the connection is
    // still in step.
    return rpc::StatusFromThrift(e, retry_after_ms);
  }
}

// --- WorkerChannel ------------------------------------------------------------------------------

WorkerChannel::WorkerChannel(WorkerAddress address, const ClientOptions* options)
    : address_(std::move(address)),
      id_(address_.id()),
      options_(options),
      ucx_port_(address_.ucx_port) {}

WorkerChannel::~WorkerChannel() {
  std::lock_guard<std::mutex> lock(ucx_mu_);
  if (endpoint_) endpoint_->Close();
}

Result<std::unique_ptr<ThriftConnection>> WorkerChannel::Acquire(Clock::time_point deadline) {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    if (!idle_.empty()) {
      std::unique_ptr<ThriftConnection> c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
  }
  KVC_ASSIGN_OR_RETURN(std::string ip, ResolveHost(deadline));
  const auto connect = std::min(options_->timeouts.connect, Remaining(deadline));
  if (connect.count() <= 0) {
    return Status::DeadlineExceeded("no time left to connect to " + id_);
  }
  return ThriftConnection::Open(address_, ip, connect, options_->timeouts.send);
}

Result<std::string> WorkerChannel::ResolveHost(Clock::time_point deadline) {
  const auto budget = std::min(options_->timeouts.connect, Remaining(deadline));
  if (budget.count() <= 0) {
    return Status::DeadlineExceeded("no time left to connect to " + id_);
  }
  Result<std::string> ip = resolver_.Resolve(address_.host, budget);
  if (!ip.ok()) return ip.status().WithContext("connect to " + id_);
  return ip;
}

void WorkerChannel::Release(std::unique_ptr<ThriftConnection> conn) {
  if (conn == nullptr || conn->broken()) return;
  std::lock_guard<std::mutex> lock(pool_mu_);
  if (static_cast<int>(idle_.size()) < options_->max_idle_connections) {
    idle_.push_back(std::move(conn));
  }
}

void WorkerChannel::DropIdle() {
  std::vector<std::unique_ptr<ThriftConnection>> dropped;
  std::lock_guard<std::mutex> lock(pool_mu_);
  dropped.swap(idle_);
}

Status WorkerChannel::Call(Clock::time_point deadline,
                           const std::function<void(rpc::KvCompactClient&)>& call,
                           int64_t* retry_after_ms) {
  for (int round = 0;; ++round) {
    KVC_ASSIGN_OR_RETURN(std::unique_ptr<ThriftConnection> conn, Acquire(deadline));
    const bool reused = conn->reused();
    const auto recv = Remaining(deadline);
    if (recv.count() <= 0) {
      Release(std::move(conn));
      return Status::DeadlineExceeded("no time left for a call to " + id_);
    }
    Status st = conn->Call(recv, call, retry_after_ms);
    const bool stale = reused && conn->broken() && st.code() == Code::kUnavailable;
    Release(std::move(conn));
    if (!stale || round > 0 || Remaining(deadline).count() <= 0) return st;
    DropIdle();  // the others were opened before the same restart
  }
}

Result<uint16_t> WorkerChannel::UcxPort(Clock::time_point deadline) {
  if (ucx_port_ != 0) return ucx_port_;
  rpc::Health health;
  KVC_RETURN_IF_ERROR(Call(deadline, [&](rpc::KvCompactClient& c) { c.health(health); }));
  const uint16_t port = PortOfAddress(health.ucx_address);
  if (port == 0) {
    return Status::Unavailable("worker " + id_ + " runs without UCX");
  }
  ucx_port_ = port;
  return port;
}

Result<std::shared_ptr<transport::Endpoint>> WorkerChannel::Endpoint(
    const std::shared_ptr<transport::UcxContext>& ctx, Clock::time_point deadline) {
  std::lock_guard<std::mutex> lock(ucx_mu_);
  if (endpoint_ && endpoint_->connected()) return endpoint_;
  endpoint_.reset();
  KVC_ASSIGN_OR_RETURN(uint16_t port, UcxPort(deadline));
  KVC_ASSIGN_OR_RETURN(std::string ip, ResolveHost(deadline));
  transport::ConnectOptions co;
  co.connect_timeout = std::min(options_->timeouts.connect, Remaining(deadline));
  if (co.connect_timeout.count() <= 0) {
    return Status::DeadlineExceeded("no time left to connect UCX to " + id_);
  }
  co.staging_bytes = options_->ucx_staging_bytes;
  Result<std::unique_ptr<transport::Endpoint>> ep = transport::Connect(ctx, ip, port, co);
  if (!ep.ok()) return ep.status().WithContext("UCX connect to " + id_);
  endpoint_ = std::shared_ptr<transport::Endpoint>(std::move(ep).value());
  return endpoint_;
}

void WorkerChannel::ResetEndpoint(const std::shared_ptr<transport::Endpoint>& failed) {
  std::lock_guard<std::mutex> lock(ucx_mu_);
  if (endpoint_ != failed) return;
  endpoint_.reset();
  if (address_.ucx_port == 0) ucx_port_ = 0;  // a restarted worker may listen elsewhere
}

void WorkerChannel::LearnUcxPort(uint16_t port) {
  std::lock_guard<std::mutex> lock(ucx_mu_);
  if (port == 0 || port == ucx_port_) return;
  ucx_port_ = port;
  endpoint_.reset();
}

void WorkerChannel::MarkSuspect() {
  suspect_until_ns_.store(NowNs() + std::chrono::nanoseconds(options_->suspect_period).count());
}

void WorkerChannel::MarkHealthy() { suspect_until_ns_.store(0); }

bool WorkerChannel::suspect(Clock::time_point now) const {
  return suspect_until_ns_.load() > ToNs(now);
}

void WorkerChannel::MarkBusy(std::chrono::milliseconds retry_after) {
  busy_until_ns_.store(NowNs() + std::chrono::nanoseconds(retry_after).count());
}

Clock::time_point WorkerChannel::busy_until() const {
  return Clock::time_point(std::chrono::nanoseconds(busy_until_ns_.load()));
}

void WorkerChannel::MarkUcxDown() {
  ucx_down_until_ns_.store(NowNs() + std::chrono::nanoseconds(options_->suspect_period).count());
}

bool WorkerChannel::ucx_down(Clock::time_point now) const {
  return ucx_down_until_ns_.load() > ToNs(now);
}

}  // namespace kvc::client
