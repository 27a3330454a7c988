// Listener: the worker side of the data plane. Listens on a socket address, where a client's
// bootstrap connection learns the worker's UCP address (see bootstrap.h) and then connects its
// UCP endpoint, over whatever transport UCX selects; assembles uploaded KV caches in staging
// buffers and hands each complete, verified upload to the upload handler; answers fetches by
// pushing the compacted cache the fetch handler returns.
//
// Uploads: the header is checked (format version, layout, tensor shapes and sizes) and the
// staging buffers for every tensor are taken from the byte budget at once; a header that does
// not fit is refused with ResourceExhausted before any data moves. Each tensor frame must carry
// exactly the announced bytes and match its xxh3-64 checksum, and the end marker must follow
// every announced tensor; otherwise the upload fails with Corruption, its buffers return to the
// pool and nothing is delivered. An upload idle for longer than upload_idle_timeout is dropped
// (DeadlineExceeded to the client, buffers returned). A client that disconnects mid-upload
// loses its partial uploads; the listener and other clients carry on.
//
// Handlers run on the listener's handler threads, never on the progress thread; they may block
// (the engine's admission control, a store lookup) at the cost of delaying other handler calls.
// The upload handler's status is what the client's Upload returns. The KvCache it receives holds
// the staging buffers until the handler (or whoever it passes the cache to) drops it.
//
// Thread safety: all methods are thread-safe. Stop (and the destructor) closes every connection,
// fails unfinished uploads, waits for running handlers and returns.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/kv_cache.h"
#include "common/status.h"
#include "services/transport/staging_pool.h"
#include "services/transport/ucx_context.h"

namespace kvc::transport {

struct UploadInfo {
  uint64_t session = 0;
  std::string peer;    // client address "host:port"
  uint64_t bytes = 0;  // tensor bytes received
};

struct FetchRequest {
  uint64_t session = 0;
  std::string key;
  std::string peer;
};

// Takes ownership of a complete upload. Returns the status sent back to the client.
using UploadHandler = std::function<Status(const UploadInfo& info, KvCache cache)>;
// The compacted cache to push for a fetch, or the error to send instead (NotFound, ...).
using FetchHandler = std::function<Result<CompactedCache>(const FetchRequest& request)>;

struct ListenerOptions {
  // Address to listen on; empty or "0.0.0.0" means every IPv4 interface. Default: "0.0.0.0".
  std::string address = "0.0.0.0";
  // Port; 0 picks a free one (see Listener::port). Default: 0.
  uint16_t port = 0;
  // Staging pool to draw upload buffers from (shared with the engine, say). Default: null, a
  // pool of its own with staging_bytes.
  std::shared_ptr<StagingPool> staging;
  // Byte budget of the listener's own pool. Default: 4 GiB.
  size_t staging_bytes = size_t{4} << 30;
  // An upload with no traffic for this long is dropped. Default: 30 s.
  std::chrono::milliseconds upload_idle_timeout{30000};
  // Deadline for pushing one fetched cache. Default: 60 s.
  std::chrono::milliseconds push_timeout{60000};
  // Threads that run the handlers (and push fetched caches). Default: 2.
  int handler_threads = 2;
  // Pushed tensor frames of at least this many bytes go by rendezvous. Default: 64 KiB.
  size_t rndv_threshold = size_t{64} << 10;
};

// Counters since Start. Upload failures are counted once, by cause.
struct ListenerStats {
  uint64_t connections_accepted = 0;
  uint64_t connections_open = 0;
  uint64_t connections_lost = 0;     // ended by an endpoint error (client vanished or reset)
  uint64_t uploads_completed = 0;    // delivered and accepted by the handler
  uint64_t uploads_rejected = 0;     // delivered, the handler returned an error
  uint64_t uploads_invalid = 0;      // refused: bad descriptor, unsupported, duplicate session
  uint64_t uploads_over_budget = 0;  // refused: staging budget (ResourceExhausted)
  uint64_t uploads_corrupt = 0;      // sizes, checksums or framing wrong
  uint64_t uploads_timed_out = 0;    // idle past upload_idle_timeout
  uint64_t uploads_aborted = 0;      // withdrawn by the client or lost with its connection
  uint64_t bytes_received = 0;       // tensor bytes of completed uploads
  uint64_t fetches_served = 0;
  uint64_t fetches_failed = 0;
  size_t staging_in_use = 0;
  size_t staging_cached = 0;
};

class Listener {
 public:
  // Starts listening. `on_upload` may be null (uploads refused with NotSupported), as may
  // `on_fetch`. Unavailable when the address cannot be bound (port in use, ...);
  // InvalidArgument when it cannot be resolved.
  static Result<std::unique_ptr<Listener>> Start(std::shared_ptr<UcxContext> ctx,
                                                 const ListenerOptions& options,
                                                 UploadHandler on_upload, FetchHandler on_fetch);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The port actually bound.
  uint16_t port() const;
  // "address:port" actually bound.
  std::string address() const;
  ListenerStats stats() const;
  const std::shared_ptr<StagingPool>& staging() const;
  // Idempotent.
  void Stop();

  class Impl;

 private:
  explicit Listener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvc::transport
