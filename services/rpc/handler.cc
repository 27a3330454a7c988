#include "services/rpc/handler.h"

#include <utility>

#include "common/kv_io.h"
#include "services/engine/spec_hash.h"
#include "services/rpc/convert.h"
#include "services/rpc/errors.h"

namespace kvc::rpc {
namespace {

std::string RequestDetail(const CompactRequest& r) {
  return "request_id='" + r.request_id + "' blocks=" + std::to_string(r.block_hashes.size());
}

std::string KeyDetail(const std::string& block_hash) {
  return "block=" + engine::HexOf(block_hash.substr(0, 8));
}

}  // namespace

KvCompactHandler::KvCompactHandler(engine::Engine* engine, CallRecorder* recorder,
                                   HandlerOptions options)
    : engine_(engine), recorder_(recorder), options_(std::move(options)) {}

template <typename Fn>
void KvCompactHandler::Serve(const char* op, Fn&& fn) {
  const Status status = recorder_->Record(op, std::forward<Fn>(fn));
  if (!status.ok()) ThrowAsThrift(status, engine_->retry_after());
}

void KvCompactHandler::compact(CompactResult& _return, const CompactRequest& request) {
  Serve("compact", [&](CallContext& ctx) -> Status {
    ctx.detail = RequestDetail(request);
    ctx.bytes_in = request.inline_payload.size();
    KVC_ASSIGN_OR_RETURN(engine::CompactRequest req, RequestFromThrift(request));
    KVC_ASSIGN_OR_RETURN(engine::CompactOutcome outcome, engine_->Compact(std::move(req)));
    _return = ResultToThrift(outcome);
    return Status::OK();
  });
}

int64_t KvCompactHandler::compact_async(const CompactRequest& request) {
  int64_t id = 0;
  Serve("compact_async", [&](CallContext& ctx) -> Status {
    ctx.detail = RequestDetail(request);
    ctx.bytes_in = request.inline_payload.size();
    KVC_ASSIGN_OR_RETURN(engine::CompactRequest req, RequestFromThrift(request));
    KVC_ASSIGN_OR_RETURN(uint64_t job, engine_->CompactAsync(std::move(req)));
    id = static_cast<int64_t>(job);
    ctx.detail += " job=" + std::to_string(id);
    return Status::OK();
  });
  return id;
}

void KvCompactHandler::job_status(JobStatus& _return, int64_t job_id) {
  Serve("job_status", [&](CallContext& ctx) -> Status {
    ctx.detail = "job=" + std::to_string(job_id);
    if (job_id <= 0) return Status::InvalidArgument("job ids are positive");
    KVC_ASSIGN_OR_RETURN(engine::JobInfo job, engine_->GetJob(static_cast<uint64_t>(job_id)));
    _return = JobToThrift(job);
    return Status::OK();
  });
}

bool KvCompactHandler::cancel_job(int64_t job_id) {
  bool cancelled = false;
  Serve("cancel_job", [&](CallContext& ctx) -> Status {
    ctx.detail = "job=" + std::to_string(job_id);
    if (job_id <= 0) return Status::InvalidArgument("job ids are positive");
    KVC_ASSIGN_OR_RETURN(cancelled, engine_->Cancel(static_cast<uint64_t>(job_id)));
    return Status::OK();
  });
  return cancelled;
}

void KvCompactHandler::lookup(LookupResult& _return, const std::vector<std::string>& block_hashes,
                              const std::string& spec_hash) {
  Serve("lookup", [&](CallContext& ctx) -> Status {
    ctx.detail = "blocks=" + std::to_string(block_hashes.size());
    KVC_ASSIGN_OR_RETURN(engine::LookupOutcome found, engine_->Lookup(block_hashes, spec_hash));
    recorder_->StoreLookup(found.matched_blocks > 0);
    ctx.detail += " matched=" + std::to_string(found.matched_blocks);
    _return = LookupToThrift(found);
    return Status::OK();
  });
}

Status KvCompactHandler::FetchInto(FetchResult* out, const FetchRequest& request,
                                   CallContext& ctx) {
  ctx.detail = KeyDetail(request.block_hash);
  if (request.mode == FetchMode::UCX) {
    if (options_.ucx_address.empty()) {
      return Status::Unavailable("this worker runs without UCX; fetch inline");
    }
    KVC_ASSIGN_OR_RETURN(engine::EntryInfo entry,
                         engine_->Describe(request.block_hash, request.spec_hash));
    KVC_ASSIGN_OR_RETURN(std::string key,
                         engine::EntryFetchKey(request.block_hash, request.spec_hash));
    out->manifest = ManifestToThrift(entry);
    out->__set_ucx_key(std::move(key));
    out->__set_ucx_address(options_.ucx_address);
    return Status::OK();
  }
  if (request.mode != FetchMode::INLINE) {
    return Status::InvalidArgument("fetch mode " + std::to_string(static_cast<int>(request.mode)) +
                                   " is neither INLINE nor UCX");
  }
  KVC_ASSIGN_OR_RETURN(engine::FetchOutcome found,
                       engine_->Fetch(request.block_hash, request.spec_hash));
  KVC_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, EncodeCompactedCache(found.cache));
  if (bytes.size() > options_.max_inline_fetch_bytes) {
    return Status::InvalidArgument("the entry encodes to " + std::to_string(bytes.size()) +
                                   " bytes, over this worker's inline limit of " +
                                   std::to_string(options_.max_inline_fetch_bytes) +
                                   "; fetch it in UCX mode");
  }
  out->manifest = ManifestToThrift(found.entry);
  out->__set_inline_payload(std::string(bytes.begin(), bytes.end()));
  ctx.bytes_out = bytes.size();
  return Status::OK();
}

void KvCompactHandler::fetch(FetchResult& _return, const FetchRequest& request) {
  Serve("fetch", [&](CallContext& ctx) -> Status {
    Status status = FetchInto(&_return, request, ctx);
    recorder_->StoreFetch(status);
    return status;
  });
}

void KvCompactHandler::delete_entry(const std::string& block_hash, const std::string& spec_hash) {
  Serve("delete_entry", [&](CallContext& ctx) -> Status {
    ctx.detail = KeyDetail(block_hash);
    return engine_->Delete(block_hash, spec_hash);
  });
}

void KvCompactHandler::stats(Stats& _return) {
  Serve("stats", [&](CallContext&) -> Status {
    _return = StatsToThrift(engine_->Stats());
    return Status::OK();
  });
}

void KvCompactHandler::health(Health& _return) {
  Serve("health", [&](CallContext&) -> Status {
    const engine::EngineHealth h = engine_->Health();
    _return.serving = h.serving;
    _return.version = options_.version;
    _return.queue_depth = static_cast<int32_t>(h.queue_depth);
    _return.ucx_address = options_.ucx_address;
    _return.uptime_ms = h.uptime_ms;
    _return.executor = h.executor;
    return Status::OK();
  });
}

}  // namespace kvc::rpc
