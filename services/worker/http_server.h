// HttpServer: a small HTTP/1.1 server on a Boost.Asio io_context (Boost.Beast) for the worker's
// operational endpoints. It parses requests and hands (method, target) to a route function
// that returns the response; it knows nothing of metrics or health itself.
//
// Robustness: each connection has a read deadline (request_timeout) and a header/body size
// limit; a request that does not parse, is too large or too slow gets its connection closed
// (400 when an answer is still possible), and the server keeps accepting. Keep-alive is
// honoured. Asio and Beast exceptions stay inside: Start reports failures as a Status, errors
// while serving are logged.
//
// Threading: everything runs on the io_context's thread(s); the route function is called there
// and should be quick. Start, Stop and port() must be called on that thread or before it runs.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace kvc::worker {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Maps a request to its response: method ("GET", ...) and target ("/metrics?x=1").
using HttpRoute = std::function<HttpResponse(const std::string& method, const std::string& target)>;

struct HttpServerOptions {
  // Default: "0.0.0.0".
  std::string address = "0.0.0.0";
  // 0 picks a free port. Default: 7402.
  uint16_t port = 7402;
  // A request must arrive whole within this time after the connection is ready for it.
  // Default: 10 s.
  std::chrono::milliseconds request_timeout{10'000};
  // Largest request (headers and body). Default: 64 KiB.
  uint32_t max_request_bytes = 64 << 10;
};

class HttpServer {
 public:
  // Binds and starts accepting on `io`. Unavailable when the address cannot be bound.
  // REQUIRES: io outlives the server.
  static Result<std::unique_ptr<HttpServer>> Start(boost::asio::io_context& io,
                                                   const HttpServerOptions& options,
                                                   HttpRoute route);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  // Stops accepting; connections in progress finish their current exchange. Idempotent.
  void Stop();

  class Impl;

 private:
  explicit HttpServer(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace kvc::worker
