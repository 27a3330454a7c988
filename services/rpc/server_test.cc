// A real ThriftServer on a loopback port, driven by the generated client.
#include "services/rpc/server.h"

#include <gtest/gtest.h>
#include <thrift/transport/TTransportException.h>

#include <future>
#include <thread>

#include "services/engine/engine_testing.h"
#include "services/engine/spec_hash.h"
#include "services/rpc/convert.h"
#include "services/rpc/handler.h"
#include "services/rpc/rpc_testing.h"
#include "storage/testing.h"

namespace kvc::rpc {
namespace {

using namespace std::chrono_literals;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::TieredStore::Open(engine::testing::StoreOptions(dir_.path().string()));
    ASSERT_TRUE(store.ok());
    engine_ = std::make_unique<engine::Engine>(
        engine::EngineOptions{}, std::shared_ptr<storage::TieredStore>(std::move(store).value()),
        nullptr, &metrics_);
    ASSERT_TRUE(engine_->Start().ok());
    ThriftServerOptions o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.max_connections = 8;
    auto server = ThriftServer::Start(
        std::make_shared<KvCompactHandler>(engine_.get(), &recorder_, HandlerOptions{}), o);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    ASSERT_NE(server_->port(), 0);
  }
  void TearDown() override {
    if (server_) server_->Stop();
    if (engine_) engine_->Stop();
  }
  CompactRequest Request(uint64_t seed) {
    CompactRequest r;
    r.request_id = "srv-" + std::to_string(seed);
    r.block_hashes = engine::testing::Chain(seed, 2);
    r.spec = SpecToThrift(engine::testing::FastSpec());
    r.__set_inline_payload(engine::testing::PayloadOf(engine::testing::TinyCache(seed)));
    return r;
  }

  storage::testing::TempDir dir_{"kvc-rpc-server"};
  MetricsRegistry metrics_;
  CallRecorder recorder_{&metrics_};
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<ThriftServer> server_;
};

TEST_F(ServerTest, ServesTheGeneratedClient) {
  testing::TestClient client("127.0.0.1", server_->port());
  Health h;
  client->health(h);
  EXPECT_TRUE(h.serving);
  CompactResult result;
  client->compact(result, Request(1));
  EXPECT_TRUE(result.stored);
  LookupResult found;
  client->lookup(found, engine::testing::Chain(1, 4),
                 engine::SpecHash(engine::testing::FastSpec()));
  EXPECT_EQ(found.matched_blocks, 2);
  FetchRequest fr;
  fr.block_hash = engine::testing::Chain(1, 2).back();
  fr.spec_hash = engine::SpecHash(engine::testing::FastSpec());
  FetchResult fetched;
  client->fetch(fetched, fr);
  EXPECT_GT(fetched.inline_payload.size(), 0u);
  // Typed exceptions cross the wire, and the connection stays usable after one.
  EXPECT_THROW(client->delete_entry("bad", fr.spec_hash), InvalidArgument);
  client->delete_entry(fr.block_hash, fr.spec_hash);
  EXPECT_THROW(client->fetch(fetched, fr), NotFound);
  Stats s;
  client->stats(s);
  EXPECT_EQ(s.store_deletes, 1);
}

TEST_F(ServerTest, ConcurrentClients) {
  std::vector<std::future<bool>> calls;
  for (int c = 0; c < 4; ++c) {
    calls.push_back(std::async(std::launch::async, [this, c] {
      testing::TestClient client("127.0.0.1", server_->port());
      CompactResult r;
      client->compact(r, Request(10 + c));
      return r.stored;
    }));
  }
  for (auto& f : calls) EXPECT_TRUE(f.get());
  EXPECT_EQ(engine_->Stats().store.puts, 4u);
}

TEST_F(ServerTest, GarbageClosesOnlyThatConnection) {
  testing::TestClient steady("127.0.0.1", server_->port());
  // An HTTP request, a frame of absurd size, a frame of random bytes, a truncated frame.
  std::string random_frame("\x00\x00\x00\x20", 4);
  for (int i = 0; i < 32; ++i) random_frame += static_cast<char>(i * 37 + 11);
  for (const std::string& junk :
       {std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), std::string("\x7f\xff\xff\xff", 4),
        random_frame, std::string("\x00\x00\x01\x00\x80\x01", 6)}) {
    const std::string reply = testing::Exchange("127.0.0.1", server_->port(), junk, 2s, true);
    EXPECT_EQ(reply.find("KvCompact"), std::string::npos);
    Health h;
    steady->health(h);  // the other connection still works
    EXPECT_TRUE(h.serving);
    testing::TestClient fresh("127.0.0.1", server_->port());
    fresh->health(h);  // and new ones are accepted
  }
}

TEST_F(ServerTest, BusyPortIsUnavailable) {
  ThriftServerOptions o;
  o.address = "127.0.0.1";
  o.port = server_->port();
  auto second = ThriftServer::Start(
      std::make_shared<KvCompactHandler>(engine_.get(), &recorder_, HandlerOptions{}), o);
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
}

TEST_F(ServerTest, StopWaitsForCallsInFlightThenRefuses) {
  const uint16_t port = server_->port();
  testing::TestClient idle("127.0.0.1", port);  // an idle connection must not block Stop
  auto call = std::async(std::launch::async, [&] {
    testing::TestClient client("127.0.0.1", port);
    CompactResult r;
    client->compact(r, Request(20));
    return r.stored;
  });
  for (int i = 0; i < 500 && engine_->Stats().jobs_submitted == 0; ++i) {
    std::this_thread::sleep_for(2ms);
  }
  server_->Stop();
  EXPECT_TRUE(call.get());
  EXPECT_THROW(testing::TestClient("127.0.0.1", port),
               apache::thrift::transport::TTransportException);
}

}  // namespace
}  // namespace kvc::rpc
