// Endpoint: a client's connection to one kvcompactd worker's data plane.
//
// Connect once, then reuse the endpoint for every upload and fetch to that worker. Uploads send
// a KvCache as one payload (see wire.h): a header, then one active message per layer tensor
// (k, v, q_window, q_ref) by rendezvous from registered memory, then an end marker; the worker
// answers with its verdict. Fetch asks for a CompactedCache by key and receives it the same way.
//
// Endpoint is an abstract interface (the client library and its tests can substitute it); UCX
// implements it, created by Connect, which opens the worker's bootstrap socket (host:port),
// learns its UCP worker address and creates the endpoint to it: UCX picks shared memory on one
// host, TCP or RDMA across hosts (see bootstrap.h). The bootstrap socket stays open; closing
// the endpoint or exiting closes it and the worker drops this client's unfinished uploads.
//
// Thread safety: every method is thread-safe; concurrent uploads and fetches on one endpoint run
// independently. Blocking: Upload, Send and Fetch block the calling thread until the worker's
// answer or the timeout; the calling thread also computes the checksums of what it sends.
// REQUIRES: no call is in flight when the endpoint is destroyed.
//
// Failure: a refused connection is Unavailable; no answer within connect_timeout is
// DeadlineExceeded. Once the connection fails, in-flight and later calls return Unavailable;
// reconnect with Connect (the client library retries on another worker).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/kv_cache.h"
#include "common/status.h"
#include "services/transport/payload.h"
#include "services/transport/ucx_context.h"

namespace kvc::transport {

struct ConnectOptions {
  // How long Connect waits for the worker's answer. Default: 5 s.
  std::chrono::milliseconds connect_timeout{5000};
  // Byte budget for receiving fetched caches; a fetch larger than what is free fails with
  // ResourceExhausted. Default: 2 GiB.
  size_t staging_bytes = size_t{2} << 30;
  // Registration cache for sent tensors (see registration_cache.h). Defaults: 1 GiB, 512.
  size_t registration_cache_bytes = size_t{1} << 30;
  size_t registration_cache_entries = 512;
  // Tensor frames of at least this many bytes go by rendezvous (zero copy). Default: 64 KiB.
  size_t rndv_threshold = size_t{64} << 10;
};

struct UploadOptions {
  // Session id for the upload; 0 lets the worker assign one (returned in the receipt). An id
  // already in use on this connection is refused with InvalidArgument. Default: 0.
  uint64_t session_id = 0;
  // Deadline for the whole upload. On expiry the upload is withdrawn and DeadlineExceeded
  // returned. Default: 60 s.
  std::chrono::milliseconds timeout{60000};
  // Deliberate faults, for tests and tools only. Default: none.
  SendFaults faults;
};

struct FetchOptions {
  // Deadline for the whole fetch. Default: 60 s.
  std::chrono::milliseconds timeout{60000};
};

struct UploadReceipt {
  uint64_t session = 0;  // the id the worker filed the upload under
  uint64_t bytes = 0;    // tensor bytes sent
};

class Endpoint {
 public:
  virtual ~Endpoint() = default;

  // Uploads `cache` and returns once the worker has verified it and its upload handler
  // accepted it. Errors: InvalidArgument (the cache fails KvCache::Validate without the finite
  // check, or the worker found its tensors inconsistent), ResourceExhausted (the worker's
  // staging budget is full: retry later or elsewhere), Corruption (bytes damaged in transit),
  // whatever the worker's handler returned, Unavailable, DeadlineExceeded.
  // The cache's storage must not change until the call returns.
  virtual Result<UploadReceipt> Upload(const KvCache& cache, const UploadOptions& options) = 0;
  // Sends a prepared payload as is (Upload is MakeUploadPayload + Send). Errors as Upload.
  virtual Result<UploadReceipt> Send(OutgoingPayload payload, const UploadOptions& options) = 0;
  // Asks the worker for the compacted cache stored under `key` and receives it into this
  // endpoint's staging buffers (the returned tensors keep them). Errors: what the worker's fetch
  // handler returned (NotFound, ...), ResourceExhausted (local staging budget), Corruption,
  // InvalidArgument (the cache fails CompactedCache::Validate; key longer than 4096 bytes),
  // Unavailable, DeadlineExceeded.
  virtual Result<CompactedCache> Fetch(std::string_view key, const FetchOptions& options) = 0;

  // False once the connection has failed or been closed.
  virtual bool connected() const = 0;
  // "host:port" of the worker.
  virtual const std::string& remote() const = 0;
  // UCX's description of the endpoint's lanes and transports (for logs and tests).
  virtual std::string Describe() const = 0;
  // Closes the connection (flushing what was sent). Idempotent; the destructor calls it.
  virtual void Close() = 0;
};

// Connects to the worker listening on host:port. See the failure notes above.
Result<std::unique_ptr<Endpoint>> Connect(std::shared_ptr<UcxContext> ctx, const std::string& host,
                                          uint16_t port, const ConnectOptions& options = {});

}  // namespace kvc::transport
