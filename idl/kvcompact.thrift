// kvcompact worker interface (design §5). One service, KvCompact, served by kvcompactd over
// framed transport with the binary protocol. Tensors travel either inline (safetensors bytes in
// the message, for small caches and tests) or over UCX (services/transport): an upload session
// completed on the worker's UCX listener is named in CompactRequest.upload_session, and a fetch
// in UCX mode answers with the key the client passes to transport::Endpoint::Fetch.
//
// Byte fields:
//   block hash  the digest bytes of one link of the prefix hash chain (common/prefix_hash.h,
//               BlockHash::digest(): 32 bytes for SHA-256, 16 for xxh3-128), 1..128 bytes.
//   spec hash   services/engine/spec_hash.h SpecHash(spec): 32 bytes. A client computes it from
//               the same CompactionSpec it sends, so lookups need no round trip.
//   store key   (block hash, spec hash); a compacted cache is stored under the LAST block hash
//               of the chain it was built from.
//
// Errors are the typed exceptions below; every method may throw any of them. Each carries a
// message a person can act on. The mapping from the worker's status codes:
//   invalid_argument, failed_precondition -> InvalidArgument   (fix the request; do not retry)
//   not_found                             -> NotFound
//   resource_exhausted                    -> Busy              (retry after retry_after_ms)
//   corruption                            -> Corruption
//   not_supported                         -> Unsupported
//   deadline_exceeded                     -> DeadlineExceeded
//   unavailable, cancelled                -> Unavailable       (retry on another worker)
//   io_error, internal                    -> InternalError
//
// Evolution: fields are only ever appended with new ids; no id is reused.

namespace cpp kvc.rpc

exception InvalidArgument {
  1: string message
}

exception NotFound {
  1: string message
}

// The worker is at capacity (job queue full, staging bytes exhausted). Retry after
// retry_after_ms, here or on another worker.
exception Busy {
  1: string message
  2: i64 retry_after_ms
}

// Bytes failed validation (a stored entry's checksum, a damaged payload).
exception Corruption {
  1: string message
}

// Unknown method, format version, dtype or capability.
exception Unsupported {
  1: string message
}

exception DeadlineExceeded {
  1: string message
}

// The worker cannot serve now (shutting down, job cancelled by shutdown): try another worker or
// recompute.
exception Unavailable {
  1: string message
}

// A bug or an I/O failure on the worker; the message says which.
exception InternalError {
  1: string message
}

// KV layout of a cache (common/kv_cache.h KvLayout).
struct Layout {
  1: i32 n_layers
  2: i32 n_kv_heads
  3: i32 n_q_heads
  4: i32 head_dim
  5: string dtype          // "F32", "F16" or "BF16"
  6: i64 tokens            // source context length T
}

// A compaction spec (kernels/spec.h CompactionSpec). Names are the spec's names: method "am",
// "okdmd", "dynamickv", "d2o", "streamingllm", "h2o", "snapkv", "pyramidkv"; allocator
// "default", "uniform", "pyramid", "dynamickv", "d2o", "am"; am_selection "highest", "omp",
// "omp-fast", "scores"; am_selector any method name. Every other field of CompactionSpec is set
// through `options` by dotted name with a decimal or boolean value, e.g. "am.ridge" = "0.01",
// "okdmd.k_modes" = "8", "gate.escalation" = "2", "d2o.merge" = "false", "threads" = "4"
// (services/rpc/convert.h lists them). An unknown option key is InvalidArgument.
struct Spec {
  1: string method = "am"
  2: double ratio = 10.0
  3: i64 budget = 0
  4: string allocator = "default"
  5: string am_selection = "highest"
  6: string am_selector = "okdmd"
  7: double heldout_fraction = 0.2
  8: i64 seed = 0                  // the u64 seed's bits
  9: double gate_min_cosine = 0.0
  10: map<string, string> options = {}
}

struct CompactRequest {
  1: string request_id             // caller's id, echoed in results and logs (may be empty)
  2: string tenant                 // recorded with the entry; isolation comes from the hash salt
  3: string model                  // recorded with the entry
  4: list<binary> block_hashes     // the prefix hash chain of the context, in chain order
  5: Spec spec
  // Exactly one of the two sources:
  6: optional i64 upload_session   // a UCX upload already completed on this worker (consumed)
  7: optional binary inline_payload  // a safetensors KV dump (common/kv_io.h)
  // Time budget in milliseconds from receipt; 0 means the worker's default. A job not started
  // within it is never started; one that finishes after it is reported DeadlineExceeded and not
  // stored.
  8: i64 deadline_ms = 0
}

struct Fidelity {
  1: bool measured                 // false when no held-out queries were available
  2: double mean_cosine
  3: double min_cosine
  4: double p10_cosine
  5: double mean_rel_l2
  6: double mass_error             // mean over heads
  7: bool gate_requested
  8: bool gate_passed
  9: i32 gate_rounds
  10: string report_json           // kernels/fidelity.h FidelityReport::ToJson
}

// What the worker knows of one stored compacted cache.
struct Manifest {
  1: binary block_hash
  2: binary spec_hash
  3: Layout layout
  4: i64 entries                   // kept keys, summed over layers and KV heads
  5: string method
  6: i64 created_ms                // Unix epoch milliseconds of the first put
  7: Fidelity fidelity
  8: i64 payload_bytes             // tensor bytes of the compacted cache
  9: map<string, string> attributes  // tenant, model, request_id, ...
}

struct CompactResult {
  1: string request_id
  2: Manifest manifest
  // False when the result was not stored: it failed the quality gate and the worker does not
  // store such results (manifest.fidelity says so).
  3: bool stored
  4: double achieved_ratio         // source tokens / average kept keys per (layer, KV head)
  5: double queue_ms
  6: double compute_ms
  7: string timings_json           // per-stage timings of the compactor
}

enum JobState {
  QUEUED = 1
  RUNNING = 2
  SUCCEEDED = 3
  FAILED = 4
  CANCELLED = 5
}

struct JobStatus {
  1: i64 job_id
  2: JobState state
  3: string request_id
  4: optional CompactResult result  // SUCCEEDED only
  5: string error_code             // FAILED / CANCELLED: e.g. "deadline_exceeded"; else empty
  6: string error_message
  7: i64 submitted_ms              // Unix epoch milliseconds
}

struct LookupResult {
  // Length of the longest prefix of the chain with a stored entry (0: none); the entry is
  // stored under block_hashes[matched_blocks - 1].
  1: i32 matched_blocks
  2: optional Manifest manifest
}

enum FetchMode {
  INLINE = 1                       // the compacted cache comes back in FetchResult.inline_payload
  UCX = 2                          // FetchResult.ucx_key names it for transport::Endpoint::Fetch
}

struct FetchRequest {
  1: binary block_hash
  2: binary spec_hash
  3: FetchMode mode = FetchMode.INLINE
}

struct FetchResult {
  1: Manifest manifest
  2: optional binary inline_payload  // INLINE: a safetensors compacted-cache file (kv_io.h)
  3: optional binary ucx_key         // UCX: the key to fetch on the worker's UCX listener
  4: optional string ucx_address     // UCX: "host:port" of that listener
}

struct TierStats {
  1: i64 entries
  2: i64 bytes
  3: i64 hits
  4: i64 misses
  5: i64 promotions
  6: i64 demotions
  7: i64 evictions
  8: i64 expirations
  9: i64 corruptions
}

struct Stats {
  1: i64 uptime_ms
  2: i32 queue_depth
  3: i32 queue_capacity
  4: i32 running_jobs
  5: i64 jobs_submitted
  6: i64 jobs_succeeded
  7: i64 jobs_failed
  8: i64 jobs_cancelled
  9: i64 jobs_rejected             // refused at admission (queue full, staging budget)
  10: i64 jobs_expired             // deadline passed before or during the run
  11: i64 staged_uploads
  12: i64 staged_bytes
  13: i64 staging_budget_bytes
  14: TierStats hot
  15: TierStats warm
  16: TierStats cold
  17: i64 store_puts
  18: i64 store_deletes
  19: i64 store_lookups            // store probes: one per chain block a lookup examined
  20: string executor              // "cpu"
}

struct Health {
  1: bool serving
  2: string version
  3: i32 queue_depth
  4: string ucx_address            // empty when the worker runs without UCX
  5: i64 uptime_ms
  6: string executor
}

service KvCompact {
  // Compacts and stores, waiting for the result (at most the request's deadline).
  CompactResult compact(1: CompactRequest request)
      throws (1: InvalidArgument invalid, 2: NotFound not_found, 3: Busy busy,
              4: Corruption corruption, 5: Unsupported unsupported,
              6: DeadlineExceeded deadline, 7: Unavailable unavailable, 8: InternalError internal)

  // Queues a compaction; returns its job id at once. Poll job_status.
  i64 compact_async(1: CompactRequest request)
      throws (1: InvalidArgument invalid, 2: NotFound not_found, 3: Busy busy,
              4: Corruption corruption, 5: Unsupported unsupported,
              6: DeadlineExceeded deadline, 7: Unavailable unavailable, 8: InternalError internal)

  // NotFound for an unknown job id (finished jobs are kept for a while, then forgotten).
  JobStatus job_status(1: i64 job_id)
      throws (1: InvalidArgument invalid, 2: NotFound not_found, 3: Busy busy,
              4: Corruption corruption, 5: Unsupported unsupported,
              6: DeadlineExceeded deadline, 7: Unavailable unavailable, 8: InternalError internal)

  // Cancels a queued or running job (a running compaction finishes but is not stored). Returns
  // false when the job had already finished.
  bool cancel_job(1: i64 job_id)
      throws (1: InvalidArgument invalid, 2: NotFound not_found, 3: Busy busy,
              4: Corruption corruption, 5: Unsupported unsupported,
              6: DeadlineExceeded deadline, 7: Unavailable unavailable, 8: InternalError internal)

  // The longest prefix of the chain with an entry under spec_hash. A miss is matched_blocks 0.
  LookupResult lookup(1: list<binary> block_hashes, 2: binary spec_hash)
      throws (1: InvalidArgument invalid, 2: NotFound not_found, 3: Busy busy,
              4: Corruption corruption, 5: Unsupported unsupported,
              6: DeadlineExceeded deadline, 7: Unavailable unavailable, 8: InternalError internal)

  // The entry (block_hash, spec_hash). NotFound when absent; Corruption when it failed its
  // checksums (it has then been removed).
  FetchResult fetch(1: FetchRequest request)
      throws (1: InvalidArgument invalid, 2: NotFound not_found, 3: Busy busy,
              4: Corruption corruption, 5: Unsupported unsupported,
              6: DeadlineExceeded deadline, 7: Unavailable unavailable, 8: InternalError internal)

  // Removes the entry. NotFound when there was none.
  void delete_entry(1: binary block_hash, 2: binary spec_hash)
      throws (1: InvalidArgument invalid, 2: NotFound not_found, 3: Busy busy,
              4: Corruption corruption, 5: Unsupported unsupported,
              6: DeadlineExceeded deadline, 7: Unavailable unavailable, 8: InternalError internal)

  Stats stats()
      throws (1: InvalidArgument invalid, 2: NotFound not_found, 3: Busy busy,
              4: Corruption corruption, 5: Unsupported unsupported,
              6: DeadlineExceeded deadline, 7: Unavailable unavailable, 8: InternalError internal)

  // Never throws for a worker that is up; serving is false while it starts or shuts down.
  Health health()
      throws (1: InvalidArgument invalid, 2: NotFound not_found, 3: Busy busy,
              4: Corruption corruption, 5: Unsupported unsupported,
              6: DeadlineExceeded deadline, 7: Unavailable unavailable, 8: InternalError internal)
}
