#include "services/rpc/call_recorder.h"

#include <spdlog/spdlog.h>

#include "services/engine/engine_metrics.h"

namespace kvc::rpc {
namespace {

template <typename T>
T* Registered(Result<T*> r) {
  if (!r.ok()) {
    spdlog::error("rpc metrics: {}", r.status().ToString());
    return nullptr;
  }
  return *r;
}

spdlog::level::level_enum LevelFor(Code code) {
  switch (code) {
    case Code::kOk:
      return spdlog::level::debug;
    case Code::kInvalidArgument:
    case Code::kNotFound:
    case Code::kResourceExhausted:
    case Code::kDeadlineExceeded:
    case Code::kNotSupported:
    case Code::kCancelled:
    case Code::kFailedPrecondition:
      return spdlog::level::info;
    case Code::kUnavailable:
      return spdlog::level::warn;
    case Code::kCorruption:
    case Code::kIOError:
    case Code::kInternal:
      break;
  }
  return spdlog::level::err;
}

}  // namespace

CallRecorder::CallRecorder(MetricsRegistry* r) {
  if (r == nullptr) return;
  requests_ = Registered(r->AddCounter("kvc_rpc_requests_total",
                                       "Calls by operation and status code.", {"op", "code"}));
  latency_ = Registered(r->AddHistogram("kvc_rpc_latency_seconds", "Wall time of each call.",
                                        {"op"}, engine::LatencyBuckets()));
  bytes_in_ =
      Registered(r->AddCounter("kvc_rpc_bytes_in_total", "Payload bytes received.", {"op"}));
  bytes_out_ = Registered(r->AddCounter("kvc_rpc_bytes_out_total", "Payload bytes sent.", {"op"}));
  lookups_ =
      Registered(r->AddCounter("kvc_store_lookups_total", "Prefix lookups by result.", {"result"}));
  fetches_ =
      Registered(r->AddCounter("kvc_store_fetches_total", "Entry fetches by result.", {"result"}));
}

void CallRecorder::Done(std::string_view op, const CallContext& ctx, const Status& status,
                        double seconds) {
  if (requests_) requests_->WithLabels({op, CodeName(status.code())}).Inc();
  if (latency_) latency_->WithLabels({op}).Observe(seconds);
  if (bytes_in_ && ctx.bytes_in > 0) bytes_in_->WithLabels({op}).Inc(ctx.bytes_in);
  if (bytes_out_ && ctx.bytes_out > 0) bytes_out_->WithLabels({op}).Inc(ctx.bytes_out);
  const double ms = seconds * 1000.0;
  if (status.ok()) {
    spdlog::debug("rpc {} ok in {:.2f} ms {}", op, ms, ctx.detail);
  } else {
    spdlog::log(LevelFor(status.code()), "rpc {} failed in {:.2f} ms {}: {}", op, ms, ctx.detail,
                status.ToString());
  }
}

void CallRecorder::StoreLookup(bool hit) {
  if (lookups_) lookups_->WithLabels({hit ? "hit" : "miss"}).Inc();
}

void CallRecorder::StoreFetch(const Status& status) {
  if (!fetches_) return;
  if (status.ok()) {
    fetches_->WithLabels({"hit"}).Inc();
  } else if (status.IsNotFound()) {
    fetches_->WithLabels({"miss"}).Inc();
  } else if (status.IsCorruption()) {
    fetches_->WithLabels({"corrupt"}).Inc();
  }
}

}  // namespace kvc::rpc
