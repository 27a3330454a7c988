// Client::Compact: keys, routing, the payload (UCX upload or inline bytes) and the compact call.
#include <algorithm>
#include <optional>
#include <string>

#include "common/kv_io.h"
#include "services/client/client.h"
#include "services/client/client_impl.h"
#include "services/client/wire.h"
#include "services/rpc/convert.h"

namespace kvc::client {
namespace {

uint64_t TensorBytes(const KvCache& cache) {
  uint64_t bytes = 0;
  for (const LayerKv& l : cache.layers) {
    bytes += l.k.nbytes() + l.v.nbytes();
    if (l.q_window) bytes += l.q_window->nbytes();
    if (l.q_ref) bytes += l.q_ref->nbytes();
  }
  return bytes;
}

// The worker's time budget for an attempt ending at `deadline`: a little less than what is
// left, so its DeadlineExceeded arrives before the client gives up on the call.
int64_t WorkerDeadlineMs(Clock::time_point deadline) {
  const int64_t left = Remaining(deadline).count();
  return std::max<int64_t>(1, left - std::min<int64_t>(250, left / 10));
}

// What one compact call sends; reused across attempts so the inline bytes are encoded once.
class CompactCall {
 public:
  CompactCall(Client::Impl* impl, const KvCache& cache, rpc::CompactRequest request)
      : impl_(impl), cache_(cache), request_(std::move(request)), bytes_(TensorBytes(cache)) {}

  Result<rpc::CompactResult> Run(Attempt& a);
  bool via_ucx() const { return via_ucx_; }

 private:
  // Sets the request's source for this attempt: an upload session or the inline bytes.
  Status AttachPayload(Attempt& a);
  // Uploads over UCX. *fallback is set when inline bytes may stand in (UCX unavailable here or
  // at this worker, as opposed to a worker that failed the upload).
  Result<uint64_t> Upload(Attempt& a, bool* fallback);
  Status AttachInline(const Status& ucx_error);

  Client::Impl* const impl_;
  const KvCache& cache_;
  rpc::CompactRequest request_;
  const uint64_t bytes_;
  bool encoded_ = false;
  bool via_ucx_ = false;
};

Result<uint64_t> CompactCall::Upload(Attempt& a, bool* fallback) {
  *fallback = false;
  Result<std::shared_ptr<transport::UcxContext>> ctx = impl_->Ucx();
  if (!ctx.ok()) {
    *fallback = true;
    return ctx.status();
  }
  if (a.worker->ucx_down(Clock::now())) {
    *fallback = true;
    return Status::Unavailable("UCX to " + a.worker->id() + " failed recently");
  }
  Result<std::shared_ptr<transport::Endpoint>> ep = a.worker->Endpoint(*ctx, a.deadline);
  if (!ep.ok()) {
    // Refused or no UCX listener: the worker may still serve Thrift. No answer at all: it is
    // not worth a second wait on the same worker.
    *fallback = ep.status().code() == Code::kUnavailable;
    if (*fallback) a.worker->MarkUcxDown();
    return ep.status();
  }
  transport::UploadOptions uo;
  uo.timeout = std::min(impl_->options().timeouts.upload, Remaining(a.deadline));
  Result<transport::UploadReceipt> receipt = (*ep)->Upload(cache_, uo);
  if (!receipt.ok()) {
    if (!(*ep)->connected()) a.worker->ResetEndpoint(*ep);
    return receipt.status().WithContext("UCX upload to " + a.worker->id());
  }
  return receipt->session;
}

Status CompactCall::AttachInline(const Status& ucx_error) {
  const uint64_t limit = impl_->options().max_inline_bytes;
  if (!encoded_) {
    if (bytes_ > limit) {
      return Status::InvalidArgument(
          "the cache has " + std::to_string(bytes_) + " tensor bytes, over max_inline_bytes (" +
          std::to_string(limit) + ") and UCX cannot carry it" +
          (ucx_error.ok() ? std::string() : ": " + ucx_error.ToString()));
    }
    KVC_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, EncodeKvCache(cache_));
    if (bytes.size() > limit) {
      return Status::InvalidArgument("the encoded cache (" + std::to_string(bytes.size()) +
                                     " bytes) is over max_inline_bytes (" + std::to_string(limit) +
                                     ")");
    }
    request_.inline_payload.assign(bytes.begin(), bytes.end());
    encoded_ = true;
  }
  request_.__isset.inline_payload = true;
  request_.__isset.upload_session = false;
  via_ucx_ = false;
  return Status::OK();
}

Status CompactCall::AttachPayload(Attempt& a) {
  const ClientOptions& o = impl_->options();
  const bool want_ucx = o.ucx_mode == UcxMode::kRequired ||
                        (o.ucx_mode == UcxMode::kAuto && bytes_ >= o.inline_threshold_bytes);
  Status ucx_error;
  if (want_ucx) {
    bool fallback = false;
    Result<uint64_t> session = Upload(a, &fallback);
    if (session.ok()) {
      request_.__set_upload_session(static_cast<int64_t>(*session));
      request_.__isset.inline_payload = false;
      via_ucx_ = true;
      return Status::OK();
    }
    if (!fallback || o.ucx_mode == UcxMode::kRequired) return session.status();
    ucx_error = session.status();
  }
  return AttachInline(ucx_error);
}

Result<rpc::CompactResult> CompactCall::Run(Attempt& a) {
  KVC_RETURN_IF_ERROR(AttachPayload(a));
  request_.deadline_ms = WorkerDeadlineMs(a.deadline);
  rpc::CompactResult out;
  KVC_RETURN_IF_ERROR(a.worker->Call(
      a.deadline, [&](rpc::KvCompactClient& c) { c.compact(out, request_); }, &a.retry_after_ms));
  return out;
}

// The worker would refuse these specs; checking here saves uploading the cache for nothing
// (a staged upload that no compact request claims holds worker memory until it expires).
Status CheckSpec(const CompactionSpec& spec) {
  Result<CompactionSpec> wire = rpc::SpecFromThrift(rpc::SpecToThrift(spec));
  if (!wire.ok()) return wire.status().WithContext("spec");
  return spec.Validate().WithContext("spec");
}

}  // namespace

Result<CompactReply> Client::Compact(std::span<const int32_t> tokens, const KvCache& cache,
                                     const CompactionSpec& spec, const CallOptions& call) {
  if (static_cast<int64_t>(tokens.size()) != cache.layout.tokens) {
    return Status::InvalidArgument("compact: " + std::to_string(tokens.size()) +
                                   " token ids for a cache of " +
                                   std::to_string(cache.layout.tokens) + " tokens");
  }
  KVC_RETURN_IF_ERROR(CheckSpec(spec));
  KVC_ASSIGN_OR_RETURN(PrefixChain chain, Chain(tokens, cache.layout, spec));
  const ClientOptions& o = impl_->options();
  const Clock::time_point deadline = Impl::Deadline(call, o.timeouts.compact);

  rpc::CompactRequest request;
  request.request_id = call.request_id;
  request.tenant = o.tenant;
  request.model = o.model_id;
  request.block_hashes = chain.block_hashes;
  request.spec = rpc::SpecToThrift(spec);
  CompactCall compact(impl_.get(), cache, std::move(request));

  CompactReply reply;
  const std::vector<size_t> order = impl_->Order(chain.route_hash());
  std::string worker;
  KVC_ASSIGN_OR_RETURN(rpc::CompactResult result,
                       impl_->Run<rpc::CompactResult>(
                           "compact", order, deadline,
                           [&](Attempt& a) -> Result<rpc::CompactResult> {
                             worker = a.worker->id();
                             return compact.Run(a);
                           },
                           &reply.attempts));
  KVC_ASSIGN_OR_RETURN(reply.outcome, OutcomeFromThrift(result));
  reply.worker = worker;
  reply.via_ucx = compact.via_ucx();
  reply.ref = {chain.block_hashes.back(), chain.spec_hash, chain.route_hash(), worker,
               reply.outcome.entry.payload_bytes};
  return reply;
}

}  // namespace kvc::client
