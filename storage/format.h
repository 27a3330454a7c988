// The versioned encoding of one stored compacted cache (an "entry"): a manifest plus one blob of
// raw bytes per tensor. storage/FORMAT.md describes the bytes; this header is the code's contract.
//
//   manifest = fixed32 format_version | body | fixed64 xxh3_64(format_version | body)
//   body     = layout, per-layer head offsets, tensor list (name, dtype, shape, byte size,
//              xxh3_64 of the tensor's bytes), cache metadata, creation time, source tokens,
//              caller attributes
//   blob i   = the bytes of tensor i, host (little-endian) element order, no padding
//
// Per layer there are three tensors, in this order: k [sum_h t_h, head_dim] (layout dtype),
// v [sum_h t_h, head_dim] (layout dtype), beta [sum_h t_h] (F32); head h owns rows
// [offsets[h], offsets[h+1]) of each (design §3, ragged per-head budgets, no padding).
//
// Decoding validates everything and never trusts a length or count it has not bounded:
//   unknown format version                         -> NotSupported
//   bad manifest or tensor checksum                -> Corruption
//   truncated, trailing bytes, inconsistent shapes -> Corruption
// It never crashes and never returns a cache that differs from what was encoded.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "common/tensor.h"

namespace kvc::storage {

// The only manifest version this build writes and reads.
inline constexpr uint32_t kManifestFormatVersion = 1;

// Upper bound on an encoded manifest accepted by the decoder (a 1024-layer, 1024-head layout
// encodes to well under this).
inline constexpr size_t kMaxManifestBytes = 64u << 20;

// Extra fields the caller stores alongside the cache (Put's "manifest extras").
struct EntryExtras {
  // Token ids of the source prefix, so a reader can check the prefix it asked for (optional).
  std::vector<uint32_t> source_tokens;
  // Free-form attributes (tenant, model id, fidelity summary, ...).
  std::map<std::string, std::string> attributes;

  bool operator==(const EntryExtras&) const = default;
};

struct TensorDesc {
  std::string name;  // "layers.{l}.k", "layers.{l}.v" or "layers.{l}.beta"
  DType dtype = DType::kF32;
  Shape shape;
  uint64_t nbytes = 0;    // numel(shape) * DTypeSize(dtype)
  uint64_t checksum = 0;  // XXH3_64bits of the blob bytes

  bool operator==(const TensorDesc&) const = default;
};

struct Manifest {
  uint32_t format_version = kManifestFormatVersion;
  KvLayout layout;
  std::vector<std::vector<int64_t>> offsets;    // per layer, n_kv_heads + 1 entries
  std::vector<TensorDesc> tensors;              // 3 per layer: k, v, beta
  std::map<std::string, std::string> metadata;  // CompactedCache::metadata
  int64_t created_at_micros = 0;                // when the entry was first put
  EntryExtras extras;

  // Sum of the tensors' byte sizes.
  uint64_t payload_bytes() const;
  bool operator==(const Manifest&) const = default;
};

// An encoded entry. `blobs[i]` views the bytes of manifest tensor i inside the encoded cache:
// REQUIRES the cache passed to EncodeEntry to outlive this value and stay unmodified.
struct EncodedEntry {
  std::string manifest;
  std::vector<std::string_view> blobs;
  uint64_t payload_bytes = 0;
};

// Checks the structure a stored cache must have: valid layout, n_layers layers, offsets of
// n_kv_heads + 1 entries from 0 and non-decreasing with budgets in [0, T], k/v of the layout
// dtype and shape [total, head_dim], beta F32 [total]. With `check_values`, also
// CompactedCache::Validate() (K and V finite, beta not NaN / +Inf). InvalidArgument otherwise.
Status ValidateForStore(const CompactedCache& cache, bool check_values);

// Encodes `cache` (checksumming every tensor). InvalidArgument if ValidateForStore(cache, false)
// fails.
Result<EncodedEntry> EncodeEntry(const CompactedCache& cache, const EntryExtras& extras,
                                 int64_t created_at_micros);

// Serialises `manifest` as is (version, body, checksum) without validating it; EncodeEntry is the
// normal way to produce a manifest. Exposed for tests and fuzz seeds.
std::string EncodeManifest(const Manifest& manifest);

// Decodes and fully validates a manifest. Safe on arbitrary bytes (the fuzzing entry point).
Result<Manifest> DecodeManifest(std::string_view bytes);

// One tensor's stored bytes. `owner` keeps `data` alive (may be null when the caller guarantees
// the lifetime for as long as the assembled cache is used).
struct BlobRef {
  const void* data = nullptr;
  size_t size = 0;
  std::shared_ptr<void> owner;
};

// Corruption unless `size` equals desc.nbytes and the bytes hash to desc.checksum.
Status VerifyBlob(const TensorDesc& desc, const void* data, size_t size);

// Builds the cache from a decoded manifest and its blobs (one per manifest tensor, same order),
// verifying each blob with VerifyBlob. Tensors view the blob bytes when they are suitably aligned
// (they then share `owner`) and are copied otherwise; callers must treat them as read-only.
// Corruption on any mismatch; InvalidArgument if blobs.size() differs from the tensor count.
Result<CompactedCache> AssembleCache(const Manifest& manifest, std::span<const BlobRef> blobs);

// XXH3_64bits of `size` bytes.
uint64_t Checksum64(const void* data, size_t size);

}  // namespace kvc::storage
