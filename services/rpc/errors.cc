#include "services/rpc/errors.h"

#include <thrift/TApplicationException.h>
#include <thrift/protocol/TProtocolException.h>
#include <thrift/transport/TTransportException.h>

#include <string>

#include "idl/kvcompact_types.h"

namespace kvc::rpc {
namespace {

template <typename E>
[[noreturn]] void Throw(const std::string& message) {
  E e;
  e.__set_message(message);
  throw e;
}

}  // namespace

void ThrowAsThrift(const Status& status, std::chrono::milliseconds retry_after) {
  const std::string& m = status.message();
  switch (status.code()) {
    case Code::kInvalidArgument:
    case Code::kFailedPrecondition:
      Throw<InvalidArgument>(m);
    case Code::kNotFound:
      Throw<NotFound>(m);
    case Code::kResourceExhausted: {
      Busy busy;
      busy.__set_message(m);
      busy.__set_retry_after_ms(retry_after.count());
      throw busy;
    }
    case Code::kCorruption:
      Throw<Corruption>(m);
    case Code::kNotSupported:
      Throw<Unsupported>(m);
    case Code::kDeadlineExceeded:
      Throw<DeadlineExceeded>(m);
    case Code::kUnavailable:
    case Code::kCancelled:
      Throw<Unavailable>(m);
    case Code::kIOError:
      Throw<InternalError>("I/O error on the worker: " + m);
    case Code::kInternal:
      Throw<InternalError>(m);
    case Code::kOk:
      break;
  }
  Throw<InternalError>("the worker reported an error without a code (a bug)");
}

Status StatusFromThrift(const std::exception& e, int64_t* retry_after_ms) {
  if (retry_after_ms != nullptr) *retry_after_ms = 0;
  if (auto* x = dynamic_cast<const InvalidArgument*>(&e)) {
    return Status::InvalidArgument(x->message);
  }
  if (auto* x = dynamic_cast<const NotFound*>(&e)) return Status::NotFound(x->message);
  if (auto* x = dynamic_cast<const Busy*>(&e)) {
    if (retry_after_ms != nullptr) *retry_after_ms = x->retry_after_ms;
    return Status::ResourceExhausted(x->message);
  }
  if (auto* x = dynamic_cast<const Corruption*>(&e)) return Status::Corruption(x->message);
  if (auto* x = dynamic_cast<const Unsupported*>(&e)) return Status::NotSupported(x->message);
  if (auto* x = dynamic_cast<const DeadlineExceeded*>(&e)) {
    return Status::DeadlineExceeded(x->message);
  }
  if (auto* x = dynamic_cast<const Unavailable*>(&e)) return Status::Unavailable(x->message);
  if (auto* x = dynamic_cast<const InternalError*>(&e)) return Status::Internal(x->message);
  if (dynamic_cast<const apache::thrift::transport::TTransportException*>(&e) != nullptr) {
    return Status::Unavailable(std::string("thrift transport: ") + e.what());
  }
  if (dynamic_cast<const apache::thrift::protocol::TProtocolException*>(&e) != nullptr) {
    return Status::Corruption(std::string("thrift protocol: ") + e.what());
  }
  return Status::Internal(std::string("thrift call failed: ") + e.what());
}

}  // namespace kvc::rpc
