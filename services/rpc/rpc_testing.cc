#include "services/rpc/rpc_testing.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <thrift/TConfiguration.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TSocket.h>
#include <unistd.h>

#include <cstdlib>

namespace kvc::rpc::testing {

using apache::thrift::TConfiguration;
using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::transport::TFramedTransport;
using apache::thrift::transport::TSocket;

TestClient::TestClient(const std::string& host, uint16_t port, std::chrono::milliseconds timeout) {
  auto config = std::make_shared<TConfiguration>(80 << 20, 80 << 20);
  auto socket = std::make_shared<TSocket>(host, port, config);
  socket->setConnTimeout(static_cast<int>(timeout.count()));
  socket->setRecvTimeout(static_cast<int>(timeout.count()));
  socket->setSendTimeout(static_cast<int>(timeout.count()));
  transport_ = std::make_shared<TFramedTransport>(socket, config);
  client_ = std::make_unique<KvCompactClient>(std::make_shared<TBinaryProtocol>(transport_));
  transport_->open();
}

TestClient::~TestClient() {
  try {
    transport_->close();
  } catch (...) {
  }
}

std::string Exchange(const std::string& host, uint16_t port, const std::string& bytes,
                     std::chrono::milliseconds timeout, bool shutdown_write) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    if (shutdown_write) ::shutdown(fd, SHUT_WR);
    const auto end = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return out;
}

int HttpGet(const std::string& host, uint16_t port, const std::string& target, std::string* body) {
  const std::string request =
      "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n";
  const std::string response = Exchange(host, port, request, std::chrono::seconds(10));
  if (response.rfind("HTTP/1.1 ", 0) != 0 || response.size() < 12) return 0;
  if (body != nullptr) {
    const size_t split = response.find("\r\n\r\n");
    *body = split == std::string::npos ? "" : response.substr(split + 4);
  }
  return std::atoi(response.substr(9, 3).c_str());
}

}  // namespace kvc::rpc::testing
