// CallRecorder: the one place where the worker's request-level calls are timed, logged and
// counted (Thrift methods and the UCX upload/fetch handlers alike). A caller wraps each call:
//
//   Status st = recorder.Record("lookup", [&](CallContext& ctx) { ...; return status; });
//
// Series (in the MetricsRegistry, when one is given):
//   kvc_rpc_requests_total{op,code}    calls by operation and status code name ("ok", ...)
//   kvc_rpc_latency_seconds{op}        wall time of each call
//   kvc_rpc_bytes_in_total{op}         payload bytes received (inline dumps, uploads)
//   kvc_rpc_bytes_out_total{op}        payload bytes sent (inline or UCX fetches)
//   kvc_store_lookups_total{result}    hit | miss, per lookup call
//   kvc_store_fetches_total{result}    hit | miss | corrupt, per fetch call
// Log lines: debug for successful calls; info for errors the caller caused (invalid argument,
// not found, busy, deadline, unsupported, cancelled); warn for unavailable; error for internal,
// I/O and corruption errors.
//
// Thread safety: thread-safe; Record may run concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <new>
#include <string>
#include <string_view>

#include "common/metrics.h"
#include "common/status.h"

namespace kvc::rpc {

// What one call reports about itself.
struct CallContext {
  uint64_t bytes_in = 0;   // payload bytes received
  uint64_t bytes_out = 0;  // payload bytes sent
  std::string detail;      // added to the log line (request id, key prefix, job id)
};

class CallRecorder {
 public:
  // `registry` may be null (nothing is counted); if set it must outlive the recorder.
  explicit CallRecorder(MetricsRegistry* registry);

  // Runs fn(CallContext&) -> Status and records it. An exception escaping `fn` becomes
  // ResourceExhausted (std::bad_alloc) or Internal (anything else), so callers see a Status.
  template <typename Fn>
  Status Record(std::string_view op, Fn&& fn) {
    CallContext ctx;
    const auto t0 = std::chrono::steady_clock::now();
    Status status;
    try {
      status = fn(ctx);
    } catch (const std::bad_alloc&) {
      status = Status::ResourceExhausted("the worker ran out of memory serving the call");
    } catch (const std::exception& e) {
      status = Status::Internal(std::string("unexpected exception: ") + e.what());
    }
    Done(op, ctx, status,
         std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return status;
  }

  void StoreLookup(bool hit);
  void StoreFetch(const Status& status);

 private:
  void Done(std::string_view op, const CallContext& ctx, const Status& status, double seconds);

  CounterFamily* requests_ = nullptr;
  HistogramFamily* latency_ = nullptr;
  CounterFamily* bytes_in_ = nullptr;
  CounterFamily* bytes_out_ = nullptr;
  CounterFamily* lookups_ = nullptr;
  CounterFamily* fetches_ = nullptr;
};

}  // namespace kvc::rpc
