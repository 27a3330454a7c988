// FakeWorker: a KvCompact Thrift server on a loopback port whose answers a test scripts, for
// fault injection in the client's tests (not part of the library). Each method's behaviour is a
// Script: answer normally, throw a typed error (Busy with retry-after, Unavailable, ...), or
// sleep first (a worker that hangs). Every call is counted and compact/lookup/fetch requests are
// recorded. Stop() closes the port (connections refused); Restart() serves again on it.
//
// Thread safety: every method is thread-safe; scripts may be changed while calls run.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "idl/KvCompact.h"
#include "services/rpc/server.h"

namespace kvc::client::testing {

struct Script {
  // Sleep this long before answering (a slow or stopped worker). Default: 0.
  std::chrono::milliseconds delay{0};
  // Throw this error (OK: answer normally). Busy carries retry_after.
  Status error = Status::OK();
  std::chrono::milliseconds retry_after{0};
  // Apply the error to this many calls only, then answer normally; -1 for every call.
  int times = -1;
};

class FakeWorker {
 public:
  // Starts serving on `port` (0: a free one). The canned answers: lookup matches
  // `lookup_matched` blocks; fetch returns `entry` inline.
  static std::unique_ptr<FakeWorker> Start(uint16_t port = 0);
  ~FakeWorker();

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  void Stop();
  // Serves again on the same port. False if it cannot bind it.
  bool Restart();

  // Scripts per method name ("compact", "lookup", "fetch", "delete_entry", "stats", "health").
  void SetScript(const std::string& method, Script script);
  // The lookup answer: `matched` blocks (0 is a miss) with a manifest naming `method`.
  void SetLookupMatch(int matched);
  // The compacted cache fetch returns inline (NotFound while none is set).
  void SetEntry(CompactedCache cache);

  int calls(const std::string& method) const;
  int total_calls() const;
  std::vector<rpc::CompactRequest> compact_requests() const;

  class Handler;

 private:
  FakeWorker() = default;

  std::shared_ptr<Handler> handler_;
  std::unique_ptr<rpc::ThriftServer> server_;
  uint16_t port_ = 0;
};

}  // namespace kvc::client::testing
