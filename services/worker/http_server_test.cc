#include "services/worker/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <thread>

#include "services/rpc/rpc_testing.h"

namespace kvc::worker {
namespace {

using namespace std::chrono_literals;

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.request_timeout = 500ms;
    o.max_request_bytes = 4096;
    auto server =
        HttpServer::Start(io_, o, [this](const std::string& method, const std::string& target) {
          ++calls_;
          if (target == "/boom") throw std::runtime_error("route bug");
          if (target != "/hello") return HttpResponse{404, "text/plain", "nope\n"};
          return HttpResponse{200, "text/plain", method + " hello\n"};
        });
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    boost::asio::post(io_, [this] { server_->Stop(); });
    io_.stop();
    thread_.join();
  }
  std::string Raw(const std::string& bytes) {
    return rpc::testing::Exchange("127.0.0.1", server_->port(), bytes, 2s);
  }

  boost::asio::io_context io_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  std::atomic<int> calls_{0};
};

TEST_F(HttpServerTest, RoutesRequests) {
  std::string body;
  EXPECT_EQ(rpc::testing::HttpGet("127.0.0.1", server_->port(), "/hello", &body), 200);
  EXPECT_EQ(body, "GET hello\n");
  EXPECT_EQ(rpc::testing::HttpGet("127.0.0.1", server_->port(), "/other", &body), 404);
  EXPECT_EQ(rpc::testing::HttpGet("127.0.0.1", server_->port(), "/boom", &body), 500);
  EXPECT_EQ(calls_.load(), 3);
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequests) {
  const std::string two =
      "GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n"
      "Connection: close\r\n\r\n";
  const std::string reply = Raw(two);
  size_t first = reply.find("HTTP/1.1 200");
  ASSERT_NE(first, std::string::npos);
  EXPECT_NE(reply.find("HTTP/1.1 200", first + 1), std::string::npos) << reply;
}

TEST_F(HttpServerTest, GarbageAndOversizedRequestsCloseOnlyThatConnection) {
  EXPECT_NE(Raw("\x16\x03\x01 definitely not http\r\n\r\n").find("400"), std::string::npos);
  const std::string huge = "GET /hello HTTP/1.1\r\nX-Big: " + std::string(10000, 'a') + "\r\n\r\n";
  EXPECT_EQ(Raw(huge).find("200"), std::string::npos);
  // A client that sends half a request and stalls is cut off by the request timeout.
  const auto t0 = std::chrono::steady_clock::now();
  rpc::testing::Exchange("127.0.0.1", server_->port(), "GET /hel", 5s);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_EQ(rpc::testing::HttpGet("127.0.0.1", server_->port(), "/hello"), 200);
  EXPECT_EQ(calls_.load(), 1);
}

TEST_F(HttpServerTest, BusyPortIsUnavailable) {
  HttpServerOptions o;
  o.address = "127.0.0.1";
  o.port = server_->port();
  boost::asio::io_context other;
  EXPECT_EQ(HttpServer::Start(other, o, nullptr).status().code(), Code::kUnavailable);
  o.address = "not an address";
  EXPECT_EQ(HttpServer::Start(other, o, nullptr).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace kvc::worker
