// Logging setup: a thin layer over spdlog. Code logs through spdlog directly (spdlog::info(...),
// SPDLOG_DEBUG(...)); this file only configures the default logger: level by name, stderr and/or
// an appended file, and a pattern with time, level and thread id.
//
// Thread safety: InitLogging replaces spdlog's default logger and must run before other threads
// log (at startup). SetLogLevel may be called at any time.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace kvc {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };

// "trace", "debug", "info", "warn" (or "warning"), "error", "critical", "off"; case-insensitive.
// InvalidArgument naming the accepted names otherwise.
Result<LogLevel> ParseLogLevel(std::string_view name);
// The canonical lower-case name.
const char* LogLevelName(LogLevel level);

struct LoggingOptions {
  // Minimum level that is written. Default: "info".
  std::string level = "info";
  // Write to stderr (coloured when it is a terminal). Default: true.
  bool console = true;
  // Also append to this file when non-empty; created if missing. Default: none.
  std::string file;
  // spdlog pattern. Default: ISO time with milliseconds, level, thread id, message.
  std::string pattern = "%Y-%m-%dT%H:%M:%S.%e [%l] [tid %t] %v";
  // Name of the default logger (appears with %n). Default: "kvc".
  std::string name = "kvc";
};

// Installs the default logger described by `options`. InvalidArgument for a bad level; IOError
// if the log file cannot be opened. On error the previous default logger stays in place.
Status InitLogging(const LoggingOptions& options);

// Changes the default logger's level. InvalidArgument for a bad name (level unchanged).
Status SetLogLevel(std::string_view name);

}  // namespace kvc
