#include "services/transport/ucx_status.h"

#include <string>

namespace kvc::transport {

Status FromUcs(ucs_status_t status, std::string_view what) {
  if (status == UCS_OK || status == UCS_INPROGRESS) return Status::OK();
  const std::string msg = std::string(what) + ": " + ucs_status_string(status);
  switch (status) {
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_IO_ERROR:
    case UCS_ERR_NO_DEVICE:
    case UCS_ERR_SOME_CONNECTS_FAILED:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_BUSY:
    case UCS_ERR_ALREADY_EXISTS:
      return Status::Unavailable(msg);
    case UCS_ERR_TIMED_OUT:
    case UCS_ERR_EXCEEDS_LIMIT:
      return Status::DeadlineExceeded(msg);
    case UCS_ERR_MESSAGE_TRUNCATED:
      return Status::Corruption(msg);
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_OUT_OF_RANGE:
      return Status::ResourceExhausted(msg);
    case UCS_ERR_CANCELED:
      return Status::Cancelled(msg);
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
      return Status::InvalidArgument(msg);
    case UCS_ERR_UNSUPPORTED:
      return Status::NotSupported(msg);
    case UCS_ERR_NO_ELEM:
      return Status::NotFound(msg);
    default:
      return Status::Internal(msg);
  }
}

ucs_status_t ToUcs(Code code) {
  switch (code) {
    case Code::kOk:
      return UCS_OK;
    case Code::kResourceExhausted:
      return UCS_ERR_NO_RESOURCE;
    case Code::kCorruption:
      return UCS_ERR_MESSAGE_TRUNCATED;
    case Code::kDeadlineExceeded:
      return UCS_ERR_TIMED_OUT;
    case Code::kInvalidArgument:
      return UCS_ERR_INVALID_PARAM;
    case Code::kNotSupported:
      return UCS_ERR_UNSUPPORTED;
    case Code::kNotFound:
      return UCS_ERR_NO_ELEM;
    default:
      return UCS_ERR_CANCELED;
  }
}

}  // namespace kvc::transport
