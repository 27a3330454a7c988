// KvCompactHandler: the Thrift service of idl/kvcompact.thrift over an Engine. Every method is
// one CallRecorder::Record around "translate the arguments, call the engine, translate the
// result"; a non-OK status becomes the typed exception (errors.h). No service logic lives here.
//
// Ownership: the engine and the recorder are borrowed and must outlive the handler (and the
// server that calls it). Thread safety: methods run concurrently on the server's threads; the
// handler has no mutable state of its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "idl/KvCompact.h"
#include "services/engine/engine.h"
#include "services/rpc/call_recorder.h"

namespace kvc::rpc {

struct HandlerOptions {
  // Reported by health(). Default: the project version.
  std::string version = "0.1.0";
  // "host:port" of the worker's UCX listener, reported by health() and UCX fetches; empty when
  // the worker runs without UCX (fetch in UCX mode is then Unavailable). Default: "".
  std::string ucx_address;
  // Largest compacted cache fetch() returns inline (encoded bytes); a larger one is
  // InvalidArgument asking for a UCX fetch. Keep it under the server's frame limit.
  // Default: 64 MiB.
  uint64_t max_inline_fetch_bytes = uint64_t{64} << 20;
};

class KvCompactHandler final : public KvCompactIf {
 public:
  KvCompactHandler(engine::Engine* engine, CallRecorder* recorder, HandlerOptions options);

  void compact(CompactResult& _return, const CompactRequest& request) override;
  int64_t compact_async(const CompactRequest& request) override;
  void job_status(JobStatus& _return, int64_t job_id) override;
  bool cancel_job(int64_t job_id) override;
  void lookup(LookupResult& _return, const std::vector<std::string>& block_hashes,
              const std::string& spec_hash) override;
  void fetch(FetchResult& _return, const FetchRequest& request) override;
  void delete_entry(const std::string& block_hash, const std::string& spec_hash) override;
  void stats(Stats& _return) override;
  void health(Health& _return) override;

 private:
  // Records `fn` under `op` and throws the typed exception for a non-OK status.
  template <typename Fn>
  void Serve(const char* op, Fn&& fn);
  Status FetchInto(FetchResult* out, const FetchRequest& request, CallContext& ctx);

  engine::Engine* const engine_;
  CallRecorder* const recorder_;
  const HandlerOptions options_;
};

}  // namespace kvc::rpc
