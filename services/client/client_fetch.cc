// Client::Fetch: the fetch call, then the cache over UCX (transport::Endpoint::Fetch) or from
// the inline answer.
#include <string>

#include "services/client/client.h"
#include "services/client/client_impl.h"
#include "services/client/wire.h"
#include "services/rpc/convert.h"

namespace kvc::client {
namespace {

class FetchCall {
 public:
  FetchCall(Client::Impl* impl, const EntryRef& ref) : impl_(impl), ref_(ref) {}

  Result<FetchReply> Run(Attempt& a);

 private:
  // Fetches over UCX. *fallback is set when an inline fetch may stand in (UCX unavailable here
  // or at this worker).
  Result<FetchReply> OverUcx(Attempt& a, bool* fallback);
  Result<FetchReply> Inline(Attempt& a);
  rpc::FetchRequest Request(rpc::FetchMode::type mode) const;

  Client::Impl* const impl_;
  const EntryRef& ref_;
};

rpc::FetchRequest FetchCall::Request(rpc::FetchMode::type mode) const {
  rpc::FetchRequest r;
  r.block_hash = ref_.block_hash;
  r.spec_hash = ref_.spec_hash;
  r.mode = mode;
  return r;
}

Result<FetchReply> FetchCall::OverUcx(Attempt& a, bool* fallback) {
  *fallback = true;
  KVC_ASSIGN_OR_RETURN(std::shared_ptr<transport::UcxContext> ctx, impl_->Ucx());
  if (a.worker->ucx_down(Clock::now())) {
    return Status::Unavailable("UCX to " + a.worker->id() + " failed recently");
  }
  Result<std::shared_ptr<transport::Endpoint>> ep = a.worker->Endpoint(ctx, a.deadline);
  if (!ep.ok()) {
    *fallback = ep.status().code() == Code::kUnavailable;
    if (*fallback) a.worker->MarkUcxDown();
    return ep.status();
  }
  *fallback = false;
  rpc::FetchResult answer;
  const rpc::FetchRequest request = Request(rpc::FetchMode::UCX);
  KVC_RETURN_IF_ERROR(a.worker->Call(
      a.deadline, [&](rpc::KvCompactClient& c) { c.fetch(answer, request); }, &a.retry_after_ms));
  if (!answer.__isset.ucx_key) {
    return Status::Corruption("worker " + a.worker->id() + " answered a UCX fetch without a key");
  }
  const uint16_t port = answer.__isset.ucx_address ? PortOfAddress(answer.ucx_address) : 0;
  std::shared_ptr<transport::Endpoint> endpoint = *ep;
  if (port != 0 && !endpoint->remote().ends_with(":" + std::to_string(port))) {
    a.worker->LearnUcxPort(port);  // the worker's listener moved: reconnect there
    KVC_ASSIGN_OR_RETURN(endpoint, a.worker->Endpoint(ctx, a.deadline));
  }
  transport::FetchOptions fo;
  fo.timeout = Remaining(a.deadline);
  Result<CompactedCache> cache = endpoint->Fetch(answer.ucx_key, fo);
  if (!cache.ok()) {
    if (!endpoint->connected()) a.worker->ResetEndpoint(endpoint);
    return cache.status().WithContext("UCX fetch from " + a.worker->id());
  }
  FetchReply reply;
  KVC_ASSIGN_OR_RETURN(reply.entry, rpc::ManifestFromThrift(answer.manifest));
  reply.cache = std::move(cache).value();
  DropReservedMetadata(&reply.cache);
  reply.worker = a.worker->id();
  reply.via_ucx = true;
  return reply;
}

Result<FetchReply> FetchCall::Inline(Attempt& a) {
  rpc::FetchResult answer;
  const rpc::FetchRequest request = Request(rpc::FetchMode::INLINE);
  KVC_RETURN_IF_ERROR(a.worker->Call(
      a.deadline, [&](rpc::KvCompactClient& c) { c.fetch(answer, request); }, &a.retry_after_ms));
  if (!answer.__isset.inline_payload) {
    return Status::Corruption("worker " + a.worker->id() +
                              " answered an inline fetch without a payload");
  }
  if (answer.inline_payload.size() > impl_->options().max_inline_bytes) {
    return Status::InvalidArgument("the inline answer of " + a.worker->id() + " (" +
                                   std::to_string(answer.inline_payload.size()) +
                                   " bytes) is over max_inline_bytes");
  }
  FetchReply reply;
  KVC_ASSIGN_OR_RETURN(reply.entry, rpc::ManifestFromThrift(answer.manifest));
  KVC_ASSIGN_OR_RETURN(reply.cache, DecodeCompacted(std::move(answer.inline_payload),
                                                    "fetch from " + a.worker->id()));
  reply.worker = a.worker->id();
  return reply;
}

Result<FetchReply> FetchCall::Run(Attempt& a) {
  const ClientOptions& o = impl_->options();
  const bool want_ucx =
      o.ucx_mode == UcxMode::kRequired ||
      (o.ucx_mode == UcxMode::kAuto &&
       (ref_.payload_bytes == 0 || ref_.payload_bytes >= o.inline_threshold_bytes));
  if (want_ucx) {
    bool fallback = false;
    Result<FetchReply> r = OverUcx(a, &fallback);
    if (r.ok() || !fallback || o.ucx_mode == UcxMode::kRequired) return r;
  }
  return Inline(a);
}

}  // namespace

Result<FetchReply> Client::Fetch(const EntryRef& ref, const CallOptions& call) {
  if (ref.block_hash.empty() || ref.spec_hash.empty()) {
    return Status::InvalidArgument("fetch: the entry reference has no block or spec hash");
  }
  if (ref.worker.empty() && ref.route_hash.empty()) {
    return Status::InvalidArgument("fetch: the entry reference names neither a worker nor a route");
  }
  const Clock::time_point deadline = Impl::Deadline(call, impl_->options().timeouts.fetch);
  const std::vector<size_t> order =
      ref.route_hash.empty() ? std::vector<size_t>{}
                             : impl_->OrderWithFirst(impl_->IndexOf(ref.worker), ref.route_hash);
  std::vector<size_t> targets = order;
  if (targets.empty()) {
    const int i = impl_->IndexOf(ref.worker);
    if (i < 0) return Status::InvalidArgument("fetch: unknown worker '" + ref.worker + "'");
    targets.push_back(static_cast<size_t>(i));
  }
  FetchCall fetch(impl_.get(), ref);
  return impl_->Run<FetchReply>("fetch", targets, deadline, [&](Attempt& a) -> Result<FetchReply> {
    Result<FetchReply> r = fetch.Run(a);
    // After the holder failed, a fallback worker that lacks the entry says nothing about it.
    if (!r.ok() && r.status().IsNotFound() && a.index > 0) {
      return Status::Unavailable("not found here after the first worker failed");
    }
    return r;
  });
}

}  // namespace kvc::client
