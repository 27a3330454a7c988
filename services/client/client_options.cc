#include "services/client/client_options.h"

#include <charconv>
#include <set>
#include <string>

namespace kvc::client {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Result<uint16_t> ParsePort(std::string_view text, std::string_view what, std::string_view whole) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < 1 ||
      value > 65535) {
    return Status::InvalidArgument("worker '" + std::string(whole) + "': " + std::string(what) +
                                   " '" + std::string(text) + "' is not a port in 1..65535");
  }
  return static_cast<uint16_t>(value);
}

// Splits "host:rest" or "[v6]:rest" into host and the text after the host's colon.
Result<std::pair<std::string, std::string_view>> SplitHost(std::string_view text) {
  if (text.starts_with("[")) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Status::InvalidArgument("worker '" + std::string(text) +
                                     "': expected [ipv6]:thrift_port[:ucx_port]");
    }
    return std::pair{std::string(text.substr(1, close - 1)), text.substr(close + 2)};
  }
  const size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return Status::InvalidArgument("worker '" + std::string(text) +
                                   "': expected host:thrift_port[:ucx_port]");
  }
  return std::pair{std::string(text.substr(0, colon)), text.substr(colon + 1)};
}

Status Positive(std::chrono::milliseconds value, const char* name) {
  if (value.count() > 0) return Status::OK();
  return Status::InvalidArgument(std::string("ClientOptions.") + name + " must be positive (got " +
                                 std::to_string(value.count()) + " ms)");
}

}  // namespace

std::string WorkerAddress::id() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(thrift_port);
}

std::string WorkerAddress::ToString() const {
  return ucx_port == 0 ? id() : id() + ":" + std::to_string(ucx_port);
}

Result<WorkerAddress> ParseWorkerAddress(std::string_view text) {
  text = Trim(text);
  KVC_ASSIGN_OR_RETURN(auto parts, SplitHost(text));
  WorkerAddress w;
  w.host = std::move(parts.first);
  if (w.host.empty()) {
    return Status::InvalidArgument("worker '" + std::string(text) + "': empty host");
  }
  std::string_view ports = parts.second;
  const size_t colon = ports.find(':');
  KVC_ASSIGN_OR_RETURN(w.thrift_port, ParsePort(ports.substr(0, colon), "thrift port", text));
  if (colon != std::string_view::npos) {
    KVC_ASSIGN_OR_RETURN(w.ucx_port, ParsePort(ports.substr(colon + 1), "ucx port", text));
  }
  return w;
}

Result<std::vector<WorkerAddress>> ParseWorkerList(std::string_view text) {
  std::vector<WorkerAddress> out;
  std::set<std::string> seen;
  while (!Trim(text).empty()) {
    const size_t comma = text.find(',');
    const std::string_view entry = Trim(text.substr(0, comma));
    text = comma == std::string_view::npos ? std::string_view() : text.substr(comma + 1);
    if (entry.empty()) return Status::InvalidArgument("worker list has an empty entry");
    KVC_ASSIGN_OR_RETURN(WorkerAddress w, ParseWorkerAddress(entry));
    if (!seen.insert(w.id()).second) {
      return Status::InvalidArgument("worker " + w.id() + " is listed twice");
    }
    out.push_back(std::move(w));
  }
  if (out.empty()) return Status::InvalidArgument("the worker list is empty");
  return out;
}

const char* UcxModeName(UcxMode mode) {
  switch (mode) {
    case UcxMode::kAuto:
      return "auto";
    case UcxMode::kOff:
      return "off";
    case UcxMode::kRequired:
      return "required";
  }
  return "?";
}

Result<UcxMode> ParseUcxMode(std::string_view name) {
  for (UcxMode m : {UcxMode::kAuto, UcxMode::kOff, UcxMode::kRequired}) {
    if (name == UcxModeName(m)) return m;
  }
  return Status::InvalidArgument("UCX mode '" + std::string(name) +
                                 "' is not one of auto, off, required");
}

Status ClientOptions::Validate() const {
  if (workers.empty()) return Status::InvalidArgument("ClientOptions.workers is empty");
  std::set<std::string> seen;
  for (const WorkerAddress& w : workers) {
    if (w.host.empty() || w.thrift_port == 0) {
      return Status::InvalidArgument("ClientOptions.workers: '" + w.ToString() +
                                     "' needs a host and a thrift port");
    }
    if (!seen.insert(w.id()).second) {
      return Status::InvalidArgument("ClientOptions.workers: " + w.id() + " is listed twice");
    }
  }
  KVC_RETURN_IF_ERROR(Positive(timeouts.connect, "timeouts.connect"));
  KVC_RETURN_IF_ERROR(Positive(timeouts.send, "timeouts.send"));
  KVC_RETURN_IF_ERROR(Positive(timeouts.lookup, "timeouts.lookup"));
  KVC_RETURN_IF_ERROR(Positive(timeouts.fetch, "timeouts.fetch"));
  KVC_RETURN_IF_ERROR(Positive(timeouts.compact, "timeouts.compact"));
  KVC_RETURN_IF_ERROR(Positive(timeouts.upload, "timeouts.upload"));
  KVC_RETURN_IF_ERROR(Positive(timeouts.admin, "timeouts.admin"));
  KVC_RETURN_IF_ERROR(Positive(backoff_base, "backoff_base"));
  if (max_attempts < 1 || max_attempts > 100) {
    return Status::InvalidArgument("ClientOptions.max_attempts must be in 1..100");
  }
  if (backoff_max < backoff_base) {
    return Status::InvalidArgument("ClientOptions.backoff_max is below backoff_base");
  }
  if (suspect_period.count() < 0) {
    return Status::InvalidArgument("ClientOptions.suspect_period is negative");
  }
  if (lookup_fanout < 1) return Status::InvalidArgument("ClientOptions.lookup_fanout must be >= 1");
  if (model_id.empty()) return Status::InvalidArgument("ClientOptions.model_id is empty");
  if (block_size < 1 || block_size > kMaxPrefixBlockSize) {
    return Status::InvalidArgument("ClientOptions.block_size must be in 1.." +
                                   std::to_string(kMaxPrefixBlockSize));
  }
  if (max_inline_bytes < inline_threshold_bytes) {
    return Status::InvalidArgument(
        "ClientOptions.max_inline_bytes is below inline_threshold_bytes");
  }
  if (ucx_staging_bytes == 0)
    return Status::InvalidArgument("ClientOptions.ucx_staging_bytes is 0");
  if (max_idle_connections < 0) {
    return Status::InvalidArgument("ClientOptions.max_idle_connections is negative");
  }
  return Status::OK();
}

}  // namespace kvc::client
