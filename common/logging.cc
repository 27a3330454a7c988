#include "common/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <memory>
#include <vector>

namespace kvc {
namespace {

constexpr LogLevel kAllLevels[] = {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo,
                                   LogLevel::kWarn,  LogLevel::kError, LogLevel::kCritical,
                                   LogLevel::kOff};

spdlog::level::level_enum ToSpdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return spdlog::level::trace;
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kCritical:
      return spdlog::level::critical;
    case LogLevel::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

}  // namespace

const char* LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return "trace";
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kCritical:
      return "critical";
    case LogLevel::kOff:
      return "off";
  }
  return "unknown";
}

Result<LogLevel> ParseLogLevel(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "warning") return LogLevel::kWarn;
  for (LogLevel level : kAllLevels) {
    if (lower == LogLevelName(level)) return level;
  }
  return Status::InvalidArgument("unknown log level '" + std::string(name) +
                                 "' (expected trace, debug, info, warn, error, critical or off)");
}

Status InitLogging(const LoggingOptions& options) {
  KVC_ASSIGN_OR_RETURN(LogLevel level, ParseLogLevel(options.level));
  std::vector<spdlog::sink_ptr> sinks;
  try {
    if (options.console) sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    if (!options.file.empty()) {
      sinks.push_back(
          std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file, /*truncate=*/false));
    }
    auto logger = std::make_shared<spdlog::logger>(options.name, sinks.begin(), sinks.end());
    logger->set_pattern(options.pattern);
    logger->set_level(ToSpdlog(level));
    // Anything at warn or above reaches the file even if the process dies soon after.
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(std::move(logger));
  } catch (const spdlog::spdlog_ex& e) {
    return Status::IOError(std::string("cannot set up logging: ") + e.what());
  }
  return Status::OK();
}

Status SetLogLevel(std::string_view name) {
  KVC_ASSIGN_OR_RETURN(LogLevel level, ParseLogLevel(name));
  spdlog::set_level(ToSpdlog(level));
  return Status::OK();
}

}  // namespace kvc
