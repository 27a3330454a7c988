#include "common/logging.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace kvc {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(LoggingTest, ParseLevels) {
  EXPECT_EQ(*ParseLogLevel("trace"), LogLevel::kTrace);
  EXPECT_EQ(*ParseLogLevel("DEBUG"), LogLevel::kDebug);
  EXPECT_EQ(*ParseLogLevel("Info"), LogLevel::kInfo);
  EXPECT_EQ(*ParseLogLevel("warn"), LogLevel::kWarn);
  EXPECT_EQ(*ParseLogLevel("warning"), LogLevel::kWarn);
  EXPECT_EQ(*ParseLogLevel("error"), LogLevel::kError);
  EXPECT_EQ(*ParseLogLevel("critical"), LogLevel::kCritical);
  EXPECT_EQ(*ParseLogLevel("off"), LogLevel::kOff);
  Status s = ParseLogLevel("verbose").status();
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("'verbose'"), std::string::npos);
  EXPECT_STREQ(LogLevelName(LogLevel::kWarn), "warn");
}

TEST(LoggingTest, FileSinkLevelAndPattern) {
  const std::string path = (std::filesystem::path(::testing::TempDir()) /
                            ("kvc_log_" + std::to_string(::getpid()) + ".log"))
                               .string();
  std::filesystem::remove(path);
  LoggingOptions opt;
  opt.console = false;
  opt.file = path;
  opt.level = "info";
  ASSERT_TRUE(InitLogging(opt).ok());
  spdlog::debug("hidden-debug-line");
  spdlog::info("visible-info-line {}", 42);
  spdlog::default_logger()->flush();
  std::string text = ReadAll(path);
  EXPECT_EQ(text.find("hidden-debug-line"), std::string::npos) << text;
  EXPECT_NE(text.find("[info] [tid "), std::string::npos) << text;
  EXPECT_NE(text.find("visible-info-line 42"), std::string::npos) << text;

  ASSERT_TRUE(SetLogLevel("debug").ok());
  spdlog::debug("now-debug-line");
  spdlog::default_logger()->flush();
  EXPECT_NE(ReadAll(path).find("now-debug-line"), std::string::npos);

  // Errors leave the working logger in place.
  EXPECT_TRUE(SetLogLevel("loud").IsInvalidArgument());
  LoggingOptions bad_level = opt;
  bad_level.level = "loud";
  EXPECT_TRUE(InitLogging(bad_level).IsInvalidArgument());
  LoggingOptions bad_file = opt;
  bad_file.file = path + "/under-a-regular-file.log";  // the parent is a file: cannot open
  Status s = InitLogging(bad_file);
  EXPECT_EQ(s.code(), Code::kIOError) << s.ToString();
  spdlog::warn("still-here");
  EXPECT_NE(ReadAll(path).find("still-here"), std::string::npos);

  LoggingOptions console;
  ASSERT_TRUE(InitLogging(console).ok());  // back to stderr for the other tests
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace kvc
