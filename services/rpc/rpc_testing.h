// Helpers for tests that talk to a worker over the network: a generated Thrift client over a
// framed binary connection, and raw TCP exchanges (for garbage bytes and plain HTTP). Not part
// of the RPC API; Thrift exceptions pass through to the test.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "idl/KvCompact.h"

namespace apache::thrift::transport {
class TTransport;
}

namespace kvc::rpc::testing {

class TestClient {
 public:
  // Connects (throws TTransportException when nothing listens). Frames up to 80 MiB.
  TestClient(const std::string& host, uint16_t port,
             std::chrono::milliseconds timeout = std::chrono::seconds(60));
  ~TestClient();
  KvCompactClient* operator->() { return client_.get(); }
  KvCompactClient& get() { return *client_; }

 private:
  std::shared_ptr<apache::thrift::transport::TTransport> transport_;
  std::unique_ptr<KvCompactClient> client_;
};

// Connects to host:port, writes `bytes` (optionally shutting down the write side), and returns
// everything read until the peer closes or `timeout` passes. Empty on connection failure.
std::string Exchange(const std::string& host, uint16_t port, const std::string& bytes,
                     std::chrono::milliseconds timeout, bool shutdown_write = false);

// One HTTP/1.1 GET; returns the status code (0 on failure) and fills *body when given.
int HttpGet(const std::string& host, uint16_t port, const std::string& target,
            std::string* body = nullptr);

}  // namespace kvc::rpc::testing
