#include "services/worker/worker_options.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "storage/testing.h"

namespace kvc::worker {
namespace {

Result<CommandLine> Parse(std::vector<std::string> args, std::string* printed = nullptr) {
  args.insert(args.begin(), "kvcompactd");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  std::ostringstream out;
  Result<CommandLine> r = ParseCommandLine(static_cast<int>(argv.size()), argv.data(), out);
  if (printed != nullptr) *printed = out.str();
  return r;
}

class WorkerOptionsTest : public ::testing::Test {
 protected:
  std::string WriteConfig(const std::string& text) {
    const std::string path = dir_.Sub("config.json");
    std::ofstream(path) << text;
    return path;
  }
  storage::testing::TempDir dir_{"kvc-worker-options"};
};

TEST_F(WorkerOptionsTest, EmbeddedDefaults) {
  Result<CommandLine> r = Parse({});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const WorkerOptions& o = r->options;
  EXPECT_EQ(o.data_dir, "./var");
  EXPECT_EQ(o.thrift_port, 7400);
  EXPECT_EQ(o.ucx_port, 7401);
  EXPECT_EQ(o.http_port, 7402);
  EXPECT_EQ(o.executor, "auto");
  EXPECT_TRUE(o.ucx_enabled);
  EXPECT_TRUE(o.store_sync);
  const storage::TieredStoreOptions s = o.StoreOptions();
  EXPECT_EQ(s.warm.path, "./var/warm");
  EXPECT_TRUE(s.cold.path.empty());
  EXPECT_EQ(s.maintenance_interval.count(), 0);
}

TEST_F(WorkerOptionsTest, ConfigFileThenFlags) {
  const std::string path = WriteConfig(R"({
    // comments are fine
    "data_dir": "/tmp/kvc-data",
    "ports": {"thrift": 9000, "http": 9002},
    "ucx": {"enabled": false},
    "engine": {"queue_capacity": 5, "default_deadline_ms": 1500, "store_failed_gate": true},
    "store": {"cold": true, "cold_ttl_s": 3600}
  })");
  Result<CommandLine> r = Parse({"--config", path, "--thrift-port", "9100", "--queue-capacity", "9",
                                 "--default-deadline-ms", "2500"});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const WorkerOptions& o = r->options;
  EXPECT_EQ(o.data_dir, "/tmp/kvc-data");
  EXPECT_EQ(o.thrift_port, 9100);  // the flag beats the file
  EXPECT_EQ(o.http_port, 9002);    // the file beats the default
  EXPECT_EQ(o.ucx_port, 7401);     // untouched
  EXPECT_FALSE(o.ucx_enabled);
  EXPECT_EQ(o.engine.queue_capacity, 9u);
  EXPECT_EQ(o.engine.default_deadline.count(), 2500);
  EXPECT_TRUE(o.engine.store_failed_gate);
  EXPECT_EQ(o.StoreOptions().cold.path, "/tmp/kvc-data/cold");
  EXPECT_EQ(o.StoreOptions().cold.ttl.count(), 3600LL * 1000 * 1000);
}

TEST_F(WorkerOptionsTest, UnknownAndMistypedKeysAreRejected) {
  Result<CommandLine> r = Parse({"--config", WriteConfig(R"({"ports": {"thirft": 1}})")});
  ASSERT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("ports.thirft"), std::string::npos);
  r = Parse({"--config", WriteConfig(R"({"engine": {"queue_capacity": "many"}})")});
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  r = Parse({"--config", WriteConfig(R"({"ports": {"thrift": 70000}})")});
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  r = Parse({"--config", WriteConfig("{not json")});
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  r = Parse({"--config", dir_.Sub("missing.json")});
  EXPECT_EQ(r.status().code(), Code::kNotFound);
}

TEST_F(WorkerOptionsTest, BadFlagsAndValues) {
  EXPECT_EQ(Parse({"--no-such-flag"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Parse({"--thrift-port", "x"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Parse({"--http-port", "7400"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Parse({"--executor", "tpu"}).status().code(), Code::kInvalidArgument);
  for (const char* kind : {"auto", "cpu", "gpu"}) EXPECT_TRUE(Parse({"--executor", kind}).ok());
  EXPECT_EQ(Parse({"--queue-capacity", "0"}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Parse({"--log-level", "loud"}).status().code(), Code::kInvalidArgument);
  // Ports of 0 never clash, and --no-ucx frees the UCX port.
  EXPECT_TRUE(Parse({"--thrift-port", "0", "--http-port", "0", "--ucx-port", "0"}).ok());
  EXPECT_TRUE(Parse({"--no-ucx", "--http-port", "7401"}).ok());
}

TEST_F(WorkerOptionsTest, HelpAndVersion) {
  std::string printed;
  Result<CommandLine> r = Parse({"--help"}, &printed);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->exit_now);
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_NE(printed.find("--thrift-port"), std::string::npos);
  EXPECT_NE(printed.find("--config"), std::string::npos);
  r = Parse({"--version"}, &printed);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->exit_now);
  EXPECT_NE(printed.find("kvcompactd"), std::string::npos);
}

TEST_F(WorkerOptionsTest, EveryConfigKeyIsRead) {
  const std::vector<std::string> keys = ConfigKeys();
  EXPECT_GE(keys.size(), 40u);
  for (const std::string& k : keys) {
    const size_t dot = k.find('.');
    const std::string text = dot == std::string::npos ? "{\"" + k + "\": null}"
                                                      : "{\"" + k.substr(0, dot) + "\": {\"" +
                                                            k.substr(dot + 1) + "\": null}}";
    WorkerOptions o;
    // null is present with the wrong type: the key is known and looked up, not ignored.
    const Status st = ApplyConfig(*Config::Parse(text), &o);
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << k;
    EXPECT_NE(st.message().find(k), std::string::npos) << st.ToString();
  }
}

}  // namespace
}  // namespace kvc::worker
