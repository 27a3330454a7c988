// The one error model of kvcompact: a Status (code + message) and a Result<T> (a value or a
// non-OK Status). Everything that can fail returns one of these; exceptions from third-party
// libraries (Thrift, Asio, RocksDB, UCX) are converted at the edge.
//
// Thread safety: Status and Result are values; const methods may be called concurrently.
// The OK path allocates nothing. Header usable from C++20 (CUDA translation units).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace kvc {

// Error codes. Append only: the numeric values travel over the wire (Thrift) and into logs.
enum class Code : uint8_t {
  kOk = 0,
  kInvalidArgument = 1,     // the caller sent something malformed; retrying will not help
  kNotFound = 2,            // no such entry / file / job
  kCorruption = 3,          // stored or received bytes fail validation (checksum, framing)
  kNotSupported = 4,        // unknown format version, dtype, method or capability
  kIOError = 5,             // the OS or a storage engine failed
  kResourceExhausted = 6,   // queue full / memory budget exceeded; retry later
  kUnavailable = 7,         // no worker could serve it; the caller should recompute
  kDeadlineExceeded = 8,    // a deadline passed before completion
  kCancelled = 9,           // cancelled by the caller or by shutdown
  kFailedPrecondition = 10, // valid request, wrong state (e.g. quality gate failed)
  kInternal = 11,           // a bug: an invariant did not hold
};

// Returns a stable lower-case name for `code`, e.g. "invalid_argument".
const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string_view msg);

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string_view m) { return {Code::kInvalidArgument, m}; }
  static Status NotFound(std::string_view m) { return {Code::kNotFound, m}; }
  static Status Corruption(std::string_view m) { return {Code::kCorruption, m}; }
  static Status NotSupported(std::string_view m) { return {Code::kNotSupported, m}; }
  static Status IOError(std::string_view m) { return {Code::kIOError, m}; }
  static Status ResourceExhausted(std::string_view m) { return {Code::kResourceExhausted, m}; }
  static Status Unavailable(std::string_view m) { return {Code::kUnavailable, m}; }
  static Status DeadlineExceeded(std::string_view m) { return {Code::kDeadlineExceeded, m}; }
  static Status Cancelled(std::string_view m) { return {Code::kCancelled, m}; }
  static Status FailedPrecondition(std::string_view m) { return {Code::kFailedPrecondition, m}; }
  static Status Internal(std::string_view m) { return {Code::kInternal, m}; }

  bool ok() const { return rep_ == nullptr; }
  Code code() const { return rep_ ? rep_->code : Code::kOk; }
  // Empty for OK.
  const std::string& message() const;
  // "OK" or "<code name>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is "<prefix>: <message>"; OK stays OK.
  Status WithContext(std::string_view prefix) const;

  bool IsInvalidArgument() const { return code() == Code::kInvalidArgument; }
  bool IsNotFound() const { return code() == Code::kNotFound; }
  bool IsCorruption() const { return code() == Code::kCorruption; }
  bool IsNotSupported() const { return code() == Code::kNotSupported; }

  // Explicitly drops a status the caller has decided not to act on.
  void IgnoreError() const {}

 private:
  struct Rep {
    Code code;
    std::string msg;
  };
  std::shared_ptr<const Rep> rep_;  // null means OK
};

// A value of type T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  // REQUIRES: !status.ok() (an OK status without a value is turned into kInternal).
  Result(Status status)  // NOLINT: implicit by design
      : status_(status.ok() ? Status::Internal("Result constructed from OK status")
                            : std::move(status)) {}

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  // REQUIRES: ok().
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T&& operator*() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;  // OK iff value_ holds a value
};

}  // namespace kvc

#define KVC_CONCAT_INNER_(a, b) a##b
#define KVC_CONCAT_(a, b) KVC_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define KVC_RETURN_IF_ERROR(expr)            \
  do {                                       \
    ::kvc::Status kvc_st_ = (expr);          \
    if (!kvc_st_.ok()) return kvc_st_;       \
  } while (0)

// `lhs` = value of the Result `expr`, or return its status.
#define KVC_ASSIGN_OR_RETURN(lhs, expr)                                   \
  auto KVC_CONCAT_(kvc_res_, __LINE__) = (expr);                          \
  if (!KVC_CONCAT_(kvc_res_, __LINE__).ok())                              \
    return KVC_CONCAT_(kvc_res_, __LINE__).status();                      \
  lhs = std::move(KVC_CONCAT_(kvc_res_, __LINE__)).value()
