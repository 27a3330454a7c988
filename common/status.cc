#include "common/status.h"

namespace kvc {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kNotFound: return "not_found";
    case Code::kCorruption: return "corruption";
    case Code::kNotSupported: return "not_supported";
    case Code::kIOError: return "io_error";
    case Code::kResourceExhausted: return "resource_exhausted";
    case Code::kUnavailable: return "unavailable";
    case Code::kDeadlineExceeded: return "deadline_exceeded";
    case Code::kCancelled: return "cancelled";
    case Code::kFailedPrecondition: return "failed_precondition";
    case Code::kInternal: return "internal";
  }
  return "unknown";
}

Status::Status(Code code, std::string_view msg) {
  if (code != Code::kOk) rep_ = std::make_shared<const Rep>(Rep{code, std::string(msg)});
}

const std::string& Status::message() const {
  static const std::string kEmpty;
  return rep_ ? rep_->msg : kEmpty;
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(CodeName(rep_->code)) + ": " + rep_->msg;
}

Status Status::WithContext(std::string_view prefix) const {
  if (ok()) return *this;
  std::string msg(prefix);
  msg += ": ";
  msg += rep_->msg;
  return Status(rep_->code, msg);
}

}  // namespace kvc
