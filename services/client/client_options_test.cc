#include "services/client/client_options.h"

#include <gtest/gtest.h>

#include "services/client/worker_channel.h"

namespace kvc::client {
namespace {

TEST(WorkerAddress, ParsesHostAndPorts) {
  Result<WorkerAddress> a = ParseWorkerAddress("node-1:7400");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->host, "node-1");
  EXPECT_EQ(a->thrift_port, 7400);
  EXPECT_EQ(a->ucx_port, 0);
  EXPECT_EQ(a->id(), "node-1:7400");

  Result<WorkerAddress> b = ParseWorkerAddress(" 127.0.0.1:7400:7401 ");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->host, "127.0.0.1");
  EXPECT_EQ(b->ucx_port, 7401);
  EXPECT_EQ(b->ToString(), "127.0.0.1:7400:7401");
  EXPECT_EQ(b->id(), "127.0.0.1:7400");  // the UCX port is not part of the identity

  Result<WorkerAddress> v6 = ParseWorkerAddress("[::1]:9000:9001");
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->id(), "[::1]:9000");
  EXPECT_EQ(ParseWorkerAddress(v6->ToString())->ToString(), v6->ToString());
}

TEST(WorkerAddress, RejectsMalformed) {
  for (const char* bad : {"", "host", ":7400", "host:", "host:0", "host:65536", "host:12x",
                          "host:7400:", "host:7400:abc", "[::1]7400", "[::1", "host:-5"}) {
    Result<WorkerAddress> r = ParseWorkerAddress(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "' was accepted";
    if (!r.ok()) {
      EXPECT_TRUE(r.status().IsInvalidArgument()) << bad;
    }
  }
}

TEST(WorkerList, ParsesAndRejectsDuplicates) {
  Result<std::vector<WorkerAddress>> list = ParseWorkerList("a:1, b:2:3 ,c:4");
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[1].ucx_port, 3);
  // The same worker id twice, even with another UCX port, is a mistake.
  Result<std::vector<WorkerAddress>> dup = ParseWorkerList("a:1,a:1:9");
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("twice"), std::string::npos);
  EXPECT_FALSE(ParseWorkerList("").ok());
  EXPECT_FALSE(ParseWorkerList("a:1,,b:2").ok());
  EXPECT_FALSE(ParseWorkerList("a:1,bogus").ok());
}

TEST(ClientOptions, DefaultsNeedOnlyWorkers) {
  ClientOptions o;
  EXPECT_FALSE(o.Validate().ok());
  o.workers = *ParseWorkerList("127.0.0.1:7400");
  EXPECT_TRUE(o.Validate().ok()) << o.Validate().ToString();
}

TEST(ClientOptions, ValidateNamesTheField) {
  auto base = [] {
    ClientOptions o;
    o.workers = *ParseWorkerList("127.0.0.1:7400");
    return o;
  };
  struct Case {
    const char* field;
    void (*mutate)(ClientOptions&);
  };
  const Case cases[] = {
      {"timeouts.lookup",
       [](ClientOptions& o) { o.timeouts.lookup = std::chrono::milliseconds(0); }},
      {"timeouts.connect",
       [](ClientOptions& o) { o.timeouts.connect = std::chrono::milliseconds(-1); }},
      {"max_attempts", [](ClientOptions& o) { o.max_attempts = 0; }},
      {"backoff_max", [](ClientOptions& o) { o.backoff_max = std::chrono::milliseconds(1); }},
      {"block_size", [](ClientOptions& o) { o.block_size = 0; }},
      {"model_id", [](ClientOptions& o) { o.model_id.clear(); }},
      {"lookup_fanout", [](ClientOptions& o) { o.lookup_fanout = 0; }},
      {"max_inline_bytes", [](ClientOptions& o) { o.max_inline_bytes = 1; }},
      {"workers", [](ClientOptions& o) { o.workers.push_back(o.workers[0]); }},
  };
  for (const Case& c : cases) {
    ClientOptions o = base();
    c.mutate(o);
    const Status st = o.Validate();
    ASSERT_FALSE(st.ok()) << c.field;
    EXPECT_TRUE(st.IsInvalidArgument());
    EXPECT_NE(st.message().find(c.field), std::string::npos) << st.ToString();
  }
}

TEST(UcxMode, NamesRoundTrip) {
  for (UcxMode m : {UcxMode::kAuto, UcxMode::kOff, UcxMode::kRequired}) {
    Result<UcxMode> back = ParseUcxMode(UcxModeName(m));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, m);
  }
  EXPECT_FALSE(ParseUcxMode("sometimes").ok());
}

TEST(PortOfAddress, ReadsTheLastPort) {
  EXPECT_EQ(PortOfAddress("127.0.0.1:45685"), 45685);
  EXPECT_EQ(PortOfAddress("[::1]:9"), 9);
  EXPECT_EQ(PortOfAddress("0.0.0.0:7401"), 7401);
  for (const char* bad : {"", "host", "host:", "host:0", "host:70000", "host:12a"}) {
    EXPECT_EQ(PortOfAddress(bad), 0) << bad;
  }
}

}  // namespace
}  // namespace kvc::client
