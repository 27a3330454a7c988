// Conversion of UCX status codes into the project's Status, at the edge of the transport.
//
//   connection failures (unreachable, reset, rejected, not connected, I/O) -> Unavailable
//   timeouts                                                              -> DeadlineExceeded
//   truncated messages                                                    -> Corruption
//   out of memory or resources                                            -> ResourceExhausted
//   cancellation                                                          -> Cancelled
//   anything else                                                         -> Internal
// Thread safety: pure functions.
#pragma once

#include <ucs/type/status.h>

#include <string_view>

#include "common/status.h"

namespace kvc::transport {

// Returns OK for UCS_OK (and UCS_INPROGRESS); otherwise the mapped code with a message
// "<what>: <ucs_status_string>".
Status FromUcs(ucs_status_t status, std::string_view what);

// The UCX status an active-message handler returns to refuse a rendezvous payload with `code`;
// the sender's request then completes with it.
ucs_status_t ToUcs(Code code);

}  // namespace kvc::transport
