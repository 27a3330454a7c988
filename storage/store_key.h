// StoreKey: the identity of a stored compacted cache (design §3: store key = (block hash, spec
// hash)).
//
// Both parts are opaque byte strings to the store. `block_hash` is the chained prefix hash of the
// last block the entry covers (the bytes of the prefix hasher's digest: 32 bytes for SHA-256, 16
// for xxh3-128; the hasher's algorithm tag and token count belong inside those bytes or in the
// spec hash, not here). `spec_hash` identifies the compaction spec (method, budget, version) so
// that two specs over the same prefix never share an entry. Equal keys mean the same entry; the
// store never interprets the bytes.
//
// Thread safety: plain value.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace kvc::storage {

// Each part must be 1..kMaxKeyPartBytes bytes long.
inline constexpr size_t kMaxKeyPartBytes = 128;

struct StoreKey {
  std::string block_hash;
  std::string spec_hash;

  bool operator==(const StoreKey&) const = default;
};

// InvalidArgument unless both parts are 1..kMaxKeyPartBytes bytes.
Status ValidateStoreKey(std::string_view block_hash, std::string_view spec_hash);

// The key's byte encoding used inside the databases: u8 len | block_hash | u8 len | spec_hash.
// Self-delimiting, so no encoded key is a proper prefix of another.
// REQUIRES: ValidateStoreKey(...).ok().
std::string EncodeStoreKey(std::string_view block_hash, std::string_view spec_hash);
inline std::string EncodeStoreKey(const StoreKey& key) {
  return EncodeStoreKey(key.block_hash, key.spec_hash);
}

// Inverse of EncodeStoreKey; Corruption if `encoded` is not exactly one well-formed key.
Result<StoreKey> DecodeStoreKey(std::string_view encoded);

// Lower-case hex of the first bytes of the block hash and spec hash, for messages and logs.
std::string StoreKeyDebugString(std::string_view block_hash, std::string_view spec_hash);

}  // namespace kvc::storage
