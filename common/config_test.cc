#include "common/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace kvc {
namespace {

constexpr char kText[] = R"({
  // comments are allowed
  "server": {"port": 7070, "host": "0.0.0.0", "tls": false, "ratio": 0.25},
  "engine": {"queue": {"depth": 64}, "threads": 8, "budget": 1.5e9},
  "metadata": {"anything": [1, 2], "goes": {"here": null}},
  "big": 18446744073709551615,
  "nothing": null
})";

Config Load() {
  Result<Config> c = Config::Parse(kText, "test.json");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : Config();
}

void ExpectInvalid(const Status& s, const std::string& needle) {
  EXPECT_TRUE(s.IsInvalidArgument()) << s.ToString();
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.ToString();
}

TEST(ConfigTest, TypedLookupsAndDefaults) {
  const Config c = Load();
  EXPECT_EQ(*c.GetInt("server.port", 1), 7070);
  EXPECT_EQ(*c.GetInt("engine.queue.depth", 1), 64);
  EXPECT_EQ(*c.GetString("server.host", "x"), "0.0.0.0");
  EXPECT_FALSE(*c.GetBool("server.tls", true));
  EXPECT_DOUBLE_EQ(*c.GetDouble("server.ratio", 0), 0.25);
  EXPECT_DOUBLE_EQ(*c.GetDouble("engine.budget", 0), 1.5e9);
  EXPECT_DOUBLE_EQ(*c.GetDouble("engine.threads", 0), 8.0);  // integers are numbers
  // Missing keys give the default, at any depth.
  EXPECT_EQ(*c.GetInt("server.missing", 42), 42);
  EXPECT_EQ(*c.GetInt("nowhere.deep.key", -3), -3);
  EXPECT_EQ(*c.GetString("server.name", "kvc"), "kvc");
  EXPECT_TRUE(*c.GetBool("engine.verbose", true));
  EXPECT_DOUBLE_EQ(*c.GetDouble("x", 2.5), 2.5);
  EXPECT_TRUE(c.Has("server.port"));
  EXPECT_TRUE(c.Has("nothing"));
  EXPECT_FALSE(c.Has("server.nope"));
  EXPECT_EQ(c.source(), "test.json");

  const Config empty;
  EXPECT_EQ(*empty.GetInt("a.b", 5), 5);
}

TEST(ConfigTest, WrongTypesNameKeyAndExpectedType) {
  const Config c = Load();
  ExpectInvalid(c.GetInt("server.host", 0).status(),
                "config key 'server.host' must be an integer, got string \"0.0.0.0\"");
  ExpectInvalid(c.GetInt("engine.budget", 0).status(), "must be an integer, got float");
  ExpectInvalid(c.GetInt("big", 0).status(), "does not fit in a 64-bit integer");
  ExpectInvalid(c.GetString("server.port", "").status(), "'server.port' must be a string");
  ExpectInvalid(c.GetBool("server.port", false).status(), "must be a boolean");
  ExpectInvalid(c.GetDouble("server.tls", 0).status(), "must be a number, got boolean");
  ExpectInvalid(c.GetString("nothing", "").status(), "got null");
  ExpectInvalid(c.GetInt("server", 0).status(), "got object");
  ExpectInvalid(c.GetInt("server.port.x", 0).status(),
                "config key 'server.port' is integer 7070, expected an object");
  ExpectInvalid(c.GetInt("server..port", 0).status(), "malformed config key");
  ExpectInvalid(c.GetInt("", 0).status(), "malformed config key");
  EXPECT_NE(c.GetInt("server.host", 0).status().message().find("test.json"), std::string::npos);
}

TEST(ConfigTest, ParseErrorsCarryLineAndColumn) {
  Status s = Config::Parse("{\n  \"a\": 1,\n  \"b\": }\n", "bad.json").status();
  ExpectInvalid(s, "bad.json:3:8: invalid JSON");
  ExpectInvalid(Config::Parse("[1, 2]").status(), "top level must be a JSON object, got array");
  ExpectInvalid(Config::Parse("{\"a\": 1, \"a\": 2}").status(), "duplicate key 'a'");
  ExpectInvalid(Config::Parse("{\"a\": {\"x\": 1, \"x\": 1}}").status(), "duplicate key 'x'");
  ExpectInvalid(Config::Parse("").status(), "invalid JSON");
  ExpectInvalid(
      Config::Parse("{\"a\": " + std::string(100, '[') + std::string(100, ']') + "}").status(),
      "nesting deeper");
}

TEST(ConfigTest, LoadFile) {
  const std::filesystem::path dir =
      std::filesystem::path(::testing::TempDir()) / ("kvc_cfg_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "c.json").string();
  std::ofstream(path) << kText;
  Result<Config> c = Config::LoadFile(path);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(*c->GetInt("engine.threads", 0), 8);
  EXPECT_EQ(c->source(), path);

  EXPECT_TRUE(Config::LoadFile((dir / "none.json").string()).status().IsNotFound());
  EXPECT_EQ(Config::LoadFile(dir.string()).status().code(), Code::kIOError);  // a directory
  std::ofstream(path) << "{\"a\": tru}";
  Status bad = Config::LoadFile(path).status();
  ExpectInvalid(bad, path + ":1:");
  std::filesystem::remove_all(dir);
}

TEST(ConfigTest, UnknownKeys) {
  const Config c = Load();
  const std::vector<std::string> known = {
      "server.port",    "server.host", "server.tls", "engine.queue.depth",
      "engine.threads", "metadata",    "big",        "nothing"};
  // "server.ratio" and "engine.budget" are not known; "metadata" accepts its whole subtree.
  EXPECT_EQ(c.UnknownKeys(known), (std::vector<std::string>{"engine.budget", "server.ratio"}));
  ExpectInvalid(c.CheckKnownKeys(known), "'engine.budget', 'server.ratio'");

  // An unknown object is reported once, not member by member.
  const std::vector<std::string> few = {"server.port", "big", "nothing", "metadata"};
  EXPECT_EQ(c.UnknownKeys(few),
            (std::vector<std::string>{"engine", "server.host", "server.ratio", "server.tls"}));

  std::vector<std::string> all = known;
  all.push_back("server.ratio");
  all.push_back("engine.budget");
  EXPECT_TRUE(c.UnknownKeys(all).empty());
  EXPECT_TRUE(c.CheckKnownKeys(all).ok());
  // A known leaf key that holds an object accepts it as a whole.
  EXPECT_TRUE(
      c.UnknownKeys(std::vector<std::string>{"server", "engine", "metadata", "big", "nothing"})
          .empty());
}

}  // namespace
}  // namespace kvc
