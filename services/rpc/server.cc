#include "services/rpc/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <thrift/TConfiguration.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/server/TThreadedServer.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TServerSocket.h>

#include <future>

namespace kvc::rpc {
namespace {

using apache::thrift::TConfiguration;
using apache::thrift::protocol::TBinaryProtocolFactory;
using apache::thrift::server::TServerEventHandler;
using apache::thrift::server::TThreadedServer;
using apache::thrift::transport::TFramedTransport;
using apache::thrift::transport::TServerSocket;
using apache::thrift::transport::TTransport;
using apache::thrift::transport::TTransportFactory;

// Framed transports with our frame and message limits (the stock factory uses Thrift's 16 MB
// defaults).
class FramedFactory final : public TTransportFactory {
 public:
  explicit FramedFactory(std::shared_ptr<TConfiguration> config) : config_(std::move(config)) {}
  std::shared_ptr<TTransport> getTransport(std::shared_ptr<TTransport> trans) override {
    return std::make_shared<TFramedTransport>(std::move(trans), config_);
  }

 private:
  std::shared_ptr<TConfiguration> config_;
};

// Reports the bound port once serve() listens.
class ReadySignal final : public TServerEventHandler {
 public:
  ReadySignal(std::shared_ptr<TServerSocket> socket, std::promise<int> ready)
      : socket_(std::move(socket)), ready_(std::move(ready)) {}
  void preServe() override {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int port = socket_->getPort();
    if (::getsockname(socket_->getSocketFD(), reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                        : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    }
    ready_.set_value(port);
  }

 private:
  std::shared_ptr<TServerSocket> socket_;
  std::promise<int> ready_;
};

}  // namespace

Result<std::unique_ptr<ThriftServer>> ThriftServer::Start(std::shared_ptr<KvCompactIf> handler,
                                                          const ThriftServerOptions& options) {
  const int frame = static_cast<int>(std::min<uint32_t>(options.max_frame_bytes, INT32_MAX));
  auto config = std::make_shared<TConfiguration>(frame, frame);
  auto socket = std::make_shared<TServerSocket>(options.address, options.port);
  if (options.idle_timeout.count() > 0) {
    socket->setRecvTimeout(static_cast<int>(options.idle_timeout.count()));
  }
  auto protocol = std::make_shared<TBinaryProtocolFactory>(0, 0, /*strict_read=*/true,
                                                           /*strict_write=*/true);
  std::unique_ptr<ThriftServer> server(new ThriftServer());
  server->server_ =
      std::make_shared<TThreadedServer>(std::make_shared<KvCompactProcessor>(std::move(handler)),
                                        socket, std::make_shared<FramedFactory>(config), protocol);
  server->server_->setConcurrentClientLimit(std::max(1, options.max_connections));
  std::promise<int> ready;
  std::future<int> bound = ready.get_future();
  server->server_->setServerEventHandler(std::make_shared<ReadySignal>(socket, std::move(ready)));
  auto failed = std::make_shared<std::promise<std::string>>();
  std::future<std::string> failure = failed->get_future();
  server->thread_ = std::thread([srv = server->server_, failed] {
    try {
      srv->serve();
    } catch (const std::exception& e) {
      spdlog::error("thrift: serving stopped: {}", e.what());
      failed->set_value(e.what());
      return;
    }
    failed->set_value("");
  });
  // Either serve() listens (preServe fires) or it throws before that.
  while (bound.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready) {
    if (failure.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      server->thread_.join();
      server->server_.reset();
      return Status::Unavailable("thrift: cannot serve on " + options.address + ":" +
                                 std::to_string(options.port) + ": " + failure.get());
    }
  }
  server->port_ = static_cast<uint16_t>(bound.get());
  return server;
}

ThriftServer::~ThriftServer() { Stop(); }

void ThriftServer::Stop() {
  if (server_ == nullptr) return;
  try {
    server_->stop();
  } catch (const std::exception& e) {
    spdlog::warn("thrift: stop: {}", e.what());
  }
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace kvc::rpc
