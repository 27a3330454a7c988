#include "services/worker/http_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>

namespace kvc::worker {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// One connection: read a request, answer it, repeat while keep-alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpServerOptions& options, HttpRoute route)
      : stream_(std::move(socket)), options_(options), route_(std::move(route)) {}

  void Start() { Read(); }

 private:
  void Read() {
    parser_.emplace();
    parser_->header_limit(options_.max_request_bytes);
    parser_->body_limit(options_.max_request_bytes);
    stream_.expires_after(options_.request_timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof) return Close();
    if (ec) {
      // Malformed or oversized: say so when we can, then close. A timeout just closes.
      if (ec != beast::error::timeout && ec != asio::error::operation_aborted) {
        spdlog::debug("http: bad request from a client: {}", ec.message());
        return Reply(MakeResponse({400, "text/plain; charset=utf-8", "bad request\n"}, false, 11));
      }
      return Close();
    }
    const auto& req = parser_->get();
    HttpResponse answer;
    try {
      answer = route_(std::string(req.method_string()), std::string(req.target()));
    } catch (const std::exception& e) {
      spdlog::error("http: route failed: {}", e.what());
      answer = {500, "text/plain; charset=utf-8", "internal error\n"};
    }
    Reply(MakeResponse(std::move(answer), req.keep_alive(), req.version()));
  }

  std::shared_ptr<http::response<http::string_body>> MakeResponse(HttpResponse answer,
                                                                  bool keep_alive,
                                                                  unsigned version) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(answer.status), version);
    res->set(http::field::server, "kvcompactd");
    res->set(http::field::content_type, answer.content_type);
    res->keep_alive(keep_alive);
    res->body() = std::move(answer.body);
    res->prepare_payload();
    return res;
  }

  void Reply(std::shared_ptr<http::response<http::string_body>> res) {
    stream_.expires_after(options_.request_timeout);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec || !res->keep_alive()) return self->Close();
                        self->Read();
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  const HttpServerOptions options_;
  HttpRoute route_;
};

}  // namespace

class HttpServer::Impl : public std::enable_shared_from_this<HttpServer::Impl> {
 public:
  Impl(asio::io_context& io, HttpServerOptions options, HttpRoute route)
      : acceptor_(io), options_(std::move(options)), route_(std::move(route)) {}

  Status Open() {
    beast::error_code ec;
    const asio::ip::address addr = asio::ip::make_address(options_.address, ec);
    if (ec) return Status::InvalidArgument("http: bad address '" + options_.address + "'");
    const tcp::endpoint ep(addr, options_.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status::Unavailable("http: cannot listen on " + options_.address + ":" +
                                 std::to_string(options_.port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint(ec).port();
    return Status::OK();
  }

  void Accept() {
    acceptor_.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
      if (!ec) {
        std::make_shared<Session>(std::move(s), self->options_, self->route_)->Start();
      } else {
        spdlog::warn("http: accept failed: {}", ec.message());
      }
      self->Accept();
    });
  }

  void Stop() {
    beast::error_code ignored;
    acceptor_.close(ignored);
  }

  uint16_t port() const { return port_; }

 private:
  tcp::acceptor acceptor_;
  const HttpServerOptions options_;
  const HttpRoute route_;
  uint16_t port_ = 0;
};

Result<std::unique_ptr<HttpServer>> HttpServer::Start(asio::io_context& io,
                                                      const HttpServerOptions& options,
                                                      HttpRoute route) {
  auto impl = std::make_shared<Impl>(io, options, std::move(route));
  KVC_RETURN_IF_ERROR(impl->Open());
  impl->Accept();
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() { Stop(); }

uint16_t HttpServer::port() const { return impl_->port(); }

void HttpServer::Stop() { impl_->Stop(); }

}  // namespace kvc::worker
