// kvcompact client library: what an inference node links to compact its KV caches on a fleet of
// kvcompactd workers and to reuse them when a prefix comes back (design §2, §5).
//
//   auto client = Client::Create(options);                 // ClientOptions: workers, timeouts
//   auto put = client->Compact(tokens, cache, spec);        // hash, route, upload, compact
//   ...
//   auto hit = client->FetchPrefix(longer_tokens, layout, spec);  // longest stored prefix
//   if (!hit.ok() && IsRecompute(hit.status())) { /* compute locally */ }
//
// Keys. A request's tokens are hashed into the prefix chain of common/prefix_hash.h, salted with
// ClientOptions::model_id and tenant, the KV layout and the spec hash version; the spec is
// hashed with services/engine/spec_hash.h. An entry is stored under (last block hash of its
// chain, spec hash); Lookup asks for the longest prefix of a chain that has one.
//
// Routing. Requests go to workers by rendezvous hashing (rendezvous.h) of the chain's FIRST
// block hash, so a longer request that shares a stored request's first block reaches the worker
// holding it, whatever follows. Consequence: every request whose first block (ClientOptions::
// block_size tokens, 256 by default) is the same, e.g. a long shared system prompt, lands on the
// same worker; a deployment with such traffic picks a block size that lets first blocks differ.
//
// Failure handling. An attempt that fails for a reason another worker may not share (the worker
// is unreachable or timed out, Busy, shutting down, an internal or I/O error) is retried on the
// next worker of the key's rendezvous order (cycling), up to ClientOptions::max_attempts
// attempts, with exponential backoff and jitter (backoff.h) in between. A worker that answered
// Busy is not asked again before its retry-after has passed; a worker that failed to answer moves
// to the back of every order for ClientOptions::suspect_period. Each operation has one time
// budget (ClientTimeouts) for all its attempts; attempt i of n may use an equal share of what is
// left, remaining / (n - i), so a worker that hangs (stopped, overloaded) costs a share and the
// operation still fails over within its budget. Errors that another worker would repeat
// (InvalidArgument, NotSupported, NotFound, Corruption, FailedPrecondition) come back at once, as
// the worker's typed error, prefixed with the worker's id. When no attempt succeeds the result is
// Unavailable with a message starting "recompute" (Status::ToString "unavailable: recompute:
// ..."), listing what each worker said: the caller should compute the cache itself. A client
// never leaves its caller stuck past the budget.
//
// Transport of tensors (ClientOptions::ucx_mode). In kAuto mode a cache of at least
// inline_threshold_bytes (1 MiB) of tensors is uploaded over the worker's UCX listener
// (transport::Endpoint::Upload) and the compact request names the upload session; smaller caches
// travel inline in the Thrift request as safetensors bytes. When UCX cannot start in this
// process or cannot reach a worker, caches up to max_inline_bytes go inline instead. Fetch uses
// UCX when the entry is at least inline_threshold_bytes (or of unknown size) and inline
// otherwise, with the same fallback. Thrift connections are pooled per worker; UCX endpoints are
// connected once per worker and reused.
//
// Safety. The client sends only what a worker validates anyway; a request the worker refuses
// (bad shapes, NaN/Inf, unknown method) changes nothing on the worker, and the client keeps its
// connections. A timed-out or failed connection is closed, never reused.
//
// Logging: Thrift prints failed connects to stderr on its own; the first Client::Create sends
// those lines to spdlog at debug level instead (process-wide), since every failure is in the
// returned Status anyway.
//
// Thread safety: a Client is thread-safe; share one per process. REQUIRES: no call is in flight
// when it is destroyed.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/prefix_hash.h"
#include "common/status.h"
#include "kernels/spec.h"
#include "services/client/client_options.h"
#include "services/engine/engine_types.h"

namespace kvc::client {

// The start of the message of the Unavailable status returned when no worker could serve.
inline constexpr char kRecompute[] = "recompute";
// True for that status: the caller should compute (or keep) the cache locally.
bool IsRecompute(const Status& status);

// A request's keys.
struct PrefixChain {
  std::vector<BlockHash> blocks;          // the chain, with token counts and the partial flag
  std::vector<std::string> block_hashes;  // the digests as byte strings, chain order
  std::string spec_hash;                  // SpecHash(spec), 32 bytes
  // The routing key: the first block's digest. REQUIRES: non-empty chain.
  const std::string& route_hash() const { return block_hashes.front(); }
  // Tokens covered by the first `n` blocks.
  int64_t TokensIn(size_t n) const;
};

// Names one stored entry and where to find it.
struct EntryRef {
  std::string block_hash;  // the entry's key: the last block hash of the chain it was built from
  std::string spec_hash;
  std::string route_hash;      // the first block hash of that chain (the routing key)
  std::string worker;          // WorkerAddress::id() of the worker known to hold it; may be empty
  uint64_t payload_bytes = 0;  // tensor bytes of the entry; 0 when unknown
};

// Per-call options.
struct CallOptions {
  // Echoed by the worker in results and logs. Default: empty.
  std::string request_id;
  // The operation's time budget; 0 uses the ClientTimeouts default. Default: 0.
  std::chrono::milliseconds timeout{0};
};

struct CompactReply {
  engine::CompactOutcome outcome;  // the worker's answer: manifest, fidelity, stored, timings
  EntryRef ref;                    // where the entry lives (outcome.stored) or would have lived
  std::string worker;              // the worker that compacted it
  int attempts = 0;                // attempts made, the successful one included
  bool via_ucx = false;            // the cache was uploaded over UCX (else inline)
};

struct LookupReply {
  size_t chain_blocks = 0;                 // length of the chain asked about
  size_t matched_blocks = 0;               // longest stored prefix, in blocks (0: miss)
  int64_t matched_tokens = 0;              // tokens of that prefix
  std::optional<engine::EntryInfo> entry;  // its manifest (matched_blocks > 0)
  EntryRef ref;                            // how to Fetch/Delete it (matched_blocks > 0)
  int workers_answered = 0;  // workers that answered (at most ClientOptions::lookup_fanout)
};

struct FetchReply {
  engine::EntryInfo entry;  // the manifest
  CompactedCache cache;     // the compacted cache (layout.tokens = its source length)
  std::string worker;
  bool via_ucx = false;
};

// A prefix found and fetched.
struct PrefixHit {
  LookupReply lookup;
  FetchReply fetch;
};

struct WorkerHealth {
  bool serving = false;
  std::string version;
  int queue_depth = 0;
  std::string ucx_address;  // empty: the worker runs without UCX
  int64_t uptime_ms = 0;
  std::string executor;
};

// One worker's answer to a fan-out call (Stats, Health): value set iff status.ok().
template <typename T>
struct WorkerReport {
  std::string worker;  // WorkerAddress::id()
  Status status;
  std::optional<T> value;
};

class Client {
 public:
  // InvalidArgument when options.Validate() fails. Connects nothing yet (connections open on
  // first use).
  static Result<std::unique_ptr<Client>> Create(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientOptions& options() const;

  // The keys of `tokens` for a cache of `layout` compacted with `spec` (see above).
  // InvalidArgument for empty tokens or an invalid layout.
  Result<PrefixChain> Chain(std::span<const int32_t> tokens, const KvLayout& layout,
                            const CompactionSpec& spec) const;
  // Worker ids in the order a chain's requests try them (rendezvous order, before suspect
  // workers are moved back).
  std::vector<std::string> RouteOf(const PrefixChain& chain) const;

  // Compacts `cache` on a worker and stores it there under the chain of `tokens`.
  // REQUIRES: tokens.size() == cache.layout.tokens (InvalidArgument otherwise); the cache's
  // storage does not change until the call returns. Errors: the worker's typed error for a bad
  // cache or spec (InvalidArgument, NotSupported; nothing is stored), DeadlineExceeded when the
  // compaction outlived the budget, Unavailable "recompute: ..." when no worker could serve.
  // A result that failed the spec's quality gate comes back OK with outcome.stored == false.
  Result<CompactReply> Compact(std::span<const int32_t> tokens, const KvCache& cache,
                               const CompactionSpec& spec, const CallOptions& call = {});

  // The longest prefix of `tokens` stored for (layout, spec). A miss is OK with
  // matched_blocks == 0. Unavailable "recompute: ..." when no worker answered.
  Result<LookupReply> Lookup(std::span<const int32_t> tokens, const KvLayout& layout,
                             const CompactionSpec& spec, const CallOptions& call = {});
  Result<LookupReply> LookupChain(const PrefixChain& chain, const CallOptions& call = {});

  // The compacted cache `ref` names, from ref.worker first (then the route's order).
  // NotFound when that worker has no such entry; Corruption when the entry failed its checksums
  // (the worker has removed it); Unavailable "recompute: ..." when no worker answered.
  Result<FetchReply> Fetch(const EntryRef& ref, const CallOptions& call = {});

  // Lookup, then Fetch of the match. NotFound when no prefix is stored. The budget covers both.
  Result<PrefixHit> FetchPrefix(std::span<const int32_t> tokens, const KvLayout& layout,
                                const CompactionSpec& spec, const CallOptions& call = {});

  // Removes the entry `ref` names (from ref.worker, else its route's first worker). NotFound
  // when there was none.
  Status Delete(const EntryRef& ref, const CallOptions& call = {});

  // Every worker's counters / health, one report per worker in ClientOptions order. One attempt
  // per worker (the admin budget each); a worker that does not answer has a non-OK status.
  std::vector<WorkerReport<engine::EngineStats>> Stats(const CallOptions& call = {});
  std::vector<WorkerReport<WorkerHealth>> Health(const CallOptions& call = {});

  class Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvc::client
