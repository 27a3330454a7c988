// Options of the kvcompact client library (services/client/client.h): the worker list, the time
// budget of every operation, retries and backoff, and the identity that salts prefix hashes.
//
// Every field documents its default. ClientOptions::Validate names the first bad field.
//
// Thread safety: plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/prefix_hash.h"
#include "common/status.h"

namespace kvc::client {

// One kvcompactd worker: "host:thrift_port" or "host:thrift_port:ucx_port". IPv6 hosts go in
// brackets: "[::1]:7400:7401".
struct WorkerAddress {
  std::string host;
  uint16_t thrift_port = 0;
  // The worker's UCX listener port; 0 means "ask the worker" (its health() reports it, once,
  // when the first UCX transfer needs it).
  uint16_t ucx_port = 0;

  // The identity used for rendezvous hashing: "host:thrift_port", exactly as given. Every
  // client of a deployment must spell a worker the same way to route keys to the same worker.
  std::string id() const;
  // "host:thrift_port[:ucx_port]".
  std::string ToString() const;
  bool operator==(const WorkerAddress&) const = default;
};

// Parses one address as above. InvalidArgument for an empty host, a missing or non-numeric
// port, or a port outside 1..65535.
Result<WorkerAddress> ParseWorkerAddress(std::string_view text);
// Parses a comma-separated list ("a:7400,b:7400:7401"); spaces around entries are ignored.
// InvalidArgument for an empty list, a bad entry (named), or the same worker id twice.
Result<std::vector<WorkerAddress>> ParseWorkerList(std::string_view text);

// How compaction inputs and fetched caches travel.
enum class UcxMode : uint8_t {
  // UCX for payloads of at least ClientOptions::inline_threshold_bytes when the worker has a
  // UCX listener; inline Thrift bytes otherwise, and as the fallback when UCX cannot start or
  // cannot reach the worker (payloads up to max_inline_bytes). Default.
  kAuto = 0,
  // Always inline (no UCX context is ever created). Payloads over max_inline_bytes fail with
  // InvalidArgument.
  kOff = 1,
  // Always UCX; no inline fallback (a worker without UCX counts as unavailable).
  kRequired = 2,
};
const char* UcxModeName(UcxMode mode);
// "auto", "off", "required".
Result<UcxMode> ParseUcxMode(std::string_view name);

// Time budgets. Each operation's budget covers all of its attempts, backoff included: when it
// runs out the operation ends (Unavailable "recompute: ..." if no worker answered).
struct ClientTimeouts {
  // TCP connect of a Thrift connection and the UCX connect; also bounds the lookup of a worker
  // host name never resolved before (a known name is served from its last answer while a
  // refresh runs: services/client/resolver.h). Default: 1 s.
  std::chrono::milliseconds connect{1000};
  // Socket send timeout of every Thrift call. Default: 5 s.
  std::chrono::milliseconds send{5000};
  // lookup: whole operation, and the receive timeout of each call. Default: 2 s.
  std::chrono::milliseconds lookup{2000};
  // fetch: whole operation, Thrift call plus UCX transfer. Default: 30 s.
  std::chrono::milliseconds fetch{30000};
  // compact: whole operation, upload plus compaction; the remaining budget is sent to the
  // worker as the request's deadline. Default: 120 s.
  std::chrono::milliseconds compact{120000};
  // Per-attempt cap for the UCX upload within compact. Default: 60 s.
  std::chrono::milliseconds upload{60000};
  // delete_entry, stats and health: whole operation. Default: 2 s.
  std::chrono::milliseconds admin{2000};
};

struct ClientOptions {
  // The workers, in any order (routing does not depend on the order). Required, non-empty.
  std::vector<WorkerAddress> workers;

  ClientTimeouts timeouts;

  // Attempts per operation, the first included; attempt i goes to the i-th worker of the key's
  // rendezvous order (cycling when there are fewer workers). Default: 3.
  int max_attempts = 3;
  // Exponential backoff between attempts: attempt i >= 1 waits a jittered delay in
  // [d/2, d] with d = min(backoff_max, backoff_base * 2^(i-1)). A worker's Busy retry-after
  // raises the wait for that worker. Defaults: 20 ms, 1 s.
  std::chrono::milliseconds backoff_base{20};
  std::chrono::milliseconds backoff_max{1000};
  // After a worker fails to answer (connection refused, timeout), it moves to the back of every
  // rendezvous order for this long, so calls stop paying its timeout. It is still tried when the
  // others fail. Default: 2 s.
  std::chrono::milliseconds suspect_period{2000};
  // Lookup asks up to this many workers (in rendezvous order) and keeps the longest match; more
  // than one finds entries written to a fallback worker while the first was down. It stops early
  // on a match of the whole chain. Default: 2.
  int lookup_fanout = 2;

  // Prefix hash salt and shape (common/prefix_hash.h). The tenant and model id isolate caches:
  // clients with different values never share entries. Defaults: tenant "", model "default",
  // blocks of 256 tokens, SHA-256.
  std::string tenant;
  std::string model_id = "default";
  int block_size = 256;
  HashAlgo hash_algo = HashAlgo::kSha256;

  // Transport of KV caches (see UcxMode). Default: kAuto.
  UcxMode ucx_mode = UcxMode::kAuto;
  // Caches (tensor bytes) below this travel inline in kAuto mode. Default: 1 MiB.
  uint64_t inline_threshold_bytes = uint64_t{1} << 20;
  // Largest encoded inline payload sent or accepted; keep it under the worker's Thrift frame
  // limit (80 MiB by default). Default: 64 MiB.
  uint64_t max_inline_bytes = uint64_t{64} << 20;
  // Byte budget of the UCX endpoint's buffers for fetched caches, per worker. Default: 1 GiB.
  uint64_t ucx_staging_bytes = uint64_t{1} << 30;

  // Idle Thrift connections kept per worker; more may be open while calls run. Default: 4.
  int max_idle_connections = 4;
  // Seed of the backoff jitter; 0 draws one from std::random_device. Default: 0.
  uint64_t jitter_seed = 0;

  // InvalidArgument naming the first field out of range (no workers, a duplicate worker, a
  // non-positive timeout, max_attempts < 1, backoff_base > backoff_max, block_size out of
  // range, empty model id, max_inline_bytes < inline_threshold_bytes, ...).
  Status Validate() const;
};

}  // namespace kvc::client
