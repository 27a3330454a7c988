// The identity of a compaction spec and of a stored entry, shared by the worker and its clients.
// This header and its library (kvc_spec_hash) need neither Thrift nor RocksDB: a client links it
// to compute the spec hash of the CompactionSpec it sends, so lookups and fetches need no round
// trip, and to build the key of a UCX fetch.
//
//   SpecHash(spec)      = SHA-256("kvcompact.spec_hash.v1\n" || spec.ToJson())   (32 bytes)
//   EntryFetchKey(b, s) = "kvc1" || u8 len(b) || b || u8 len(s) || s
//
// CompactionSpec::ToJson covers every field that changes the result (it leaves out `threads`,
// which does not) and carries the spec's own version, so two specs hash equal exactly when they
// ask for the same compaction. Changing ToJson or the domain string changes every hash: entries
// stored under the old hashes are then no longer found (not misread).
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "kernels/spec.h"

namespace kvc::engine {

// Bumped when the spec hash's input changes; clients may put it in PrefixSalt::spec_version.
inline constexpr uint32_t kSpecHashVersion = 1;
inline constexpr char kSpecHashDomain[] = "kvcompact.spec_hash.v1\n";
inline constexpr size_t kSpecHashSize = 32;

// The 32 raw bytes identifying `spec` (see above). Does not validate the spec.
std::string SpecHash(const CompactionSpec& spec);

// Lower-case hex of any byte string (for logs and messages).
std::string HexOf(std::string_view bytes);

// The key a client passes to transport::Endpoint::Fetch to receive the entry
// (block_hash, spec_hash) from a worker's UCX listener.
// REQUIRES: both parts 1..255 bytes (InvalidArgument otherwise).
Result<std::string> EntryFetchKey(std::string_view block_hash, std::string_view spec_hash);

struct EntryKeyParts {
  std::string block_hash;
  std::string spec_hash;
};
// Inverse of EntryFetchKey; InvalidArgument for anything EntryFetchKey cannot produce.
Result<EntryKeyParts> ParseEntryFetchKey(std::string_view key);

}  // namespace kvc::engine
