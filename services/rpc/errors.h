// The mapping between kvc::Status and the typed exceptions of idl/kvcompact.thrift (the table
// is at the top of the .thrift file). The server throws with ThrowAsThrift; a client turns what
// a call threw back into a Status with StatusFromThrift.
//
// Thread safety: pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>

#include "common/status.h"

namespace kvc::rpc {

// Throws the typed exception for `status`, whose message is the status message. Busy carries
// `retry_after`. REQUIRES: !status.ok() (an OK status throws InternalError saying so).
[[noreturn]] void ThrowAsThrift(const Status& status, std::chrono::milliseconds retry_after);

// The Status a caught exception stands for: each typed exception maps back to its code
// (InvalidArgument -> kInvalidArgument, Busy -> kResourceExhausted, Unsupported ->
// kNotSupported, InternalError -> kInternal, ...); Thrift transport failures (connection
// refused, reset, timed out) -> kUnavailable; protocol errors -> kCorruption; application
// exceptions (unknown method, bad sequence id) and anything else -> kInternal. When
// `retry_after_ms` is given it receives Busy's hint (0 otherwise).
Status StatusFromThrift(const std::exception& e, int64_t* retry_after_ms = nullptr);

}  // namespace kvc::rpc
