// The prefix hash chain of design §3: the key under which compacted caches are stored and looked
// up. Tokens are split into blocks of B; the chain is
//   h_0 = H(salt)
//   h_i = H(h_{i-1} || kind_i || n_i || tokens of block i as little-endian int32)
// where kind_i marks a full block or the partial last block and n_i is its token count (u32
// little-endian), so a partial block can never hash equal to a full one. The salt binds the
// chain to a model, a KV layout, a dtype, a compaction spec version, a tenant and the block size;
// it is serialised canonically (fixed field order, u32 little-endian lengths before strings,
// fixed-width little-endian integers) behind a version tag. The result depends on nothing but
// these inputs: it is the same across processes, builds and machines.
//
// Properties callers rely on: the chain of a token sequence's prefix equals the longer
// sequence's chain on every full block the prefix covers; changing any salt field or any token
// changes that block's hash and every later one; different tenants never share a hash.
//
// Thread safety: pure functions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/dtype.h"
#include "common/kv_cache.h"
#include "common/status.h"

namespace kvc {

// Append only: the values may be stored next to hashes.
enum class HashAlgo : uint8_t {
  kSha256 = 0,    // SHA-256, 32-byte digests (default)
  kXxh3_128 = 1,  // XXH3 128-bit, 16-byte digests: faster, not collision resistant
};

// "sha256" / "xxh3_128".
const char* HashAlgoName(HashAlgo algo);
// Accepts the names above; anything else is InvalidArgument.
Result<HashAlgo> ParseHashAlgo(std::string_view name);
// 32 for SHA-256, 16 for xxh3-128.
size_t HashDigestSize(HashAlgo algo);

// What a chain is bound to. Every field takes part in the hash.
struct PrefixSalt {
  std::string model_id;  // required, non-empty
  int n_layers = 0;
  int n_kv_heads = 0;
  int n_q_heads = 0;
  int head_dim = 0;
  DType dtype = DType::kF16;  // dtype of K and V
  uint32_t spec_version = 0;  // version of the compaction spec the cache is built with
  std::string tenant;         // empty for single-tenant deployments

  // The salt for `layout` (whose token count is ignored: it is not part of a prefix's identity).
  static PrefixSalt ForLayout(std::string model_id, const KvLayout& layout, uint32_t spec_version,
                              std::string tenant);
};

// Largest accepted block size, in tokens.
inline constexpr int kMaxPrefixBlockSize = 1 << 20;

struct PrefixHashOptions {
  // Hash function. Default: SHA-256.
  HashAlgo algo = HashAlgo::kSha256;
  // Tokens per block, 1..kMaxPrefixBlockSize. Default: 256.
  int block_size = 256;
};

// One link of the chain.
struct BlockHash {
  std::array<uint8_t, 32> bytes{};  // the digest; xxh3-128 fills the first 16, the rest stay 0
  HashAlgo algo = HashAlgo::kSha256;
  int32_t n_tokens = 0;  // tokens in this block (0 for the salt hash h_0)
  bool partial = false;  // true only for a last block with fewer than block_size tokens

  size_t size() const { return HashDigestSize(algo); }
  // The size() meaningful bytes.
  std::span<const uint8_t> digest() const { return {bytes.data(), size()}; }
  // Lower-case hex of digest().
  std::string Hex() const;
  bool operator==(const BlockHash&) const = default;
};

// The canonical serialisation of the salt (what h_0 hashes), for inspection and tests.
// InvalidArgument for an empty model id, a block size out of range or a string over 4 GiB.
Result<std::vector<uint8_t>> SerializePrefixSalt(const PrefixSalt& salt,
                                                 const PrefixHashOptions& options);

// h_0 = H(salt).
Result<BlockHash> HashPrefixSalt(const PrefixSalt& salt, const PrefixHashOptions& options = {});

// h_1 .. h_n for `tokens`: one entry per block of options.block_size tokens, the last marked
// partial when it is short. Empty tokens give an empty chain. Errors as SerializePrefixSalt.
Result<std::vector<BlockHash>> HashPrefix(std::span<const int32_t> tokens, const PrefixSalt& salt,
                                          const PrefixHashOptions& options = {});

}  // namespace kvc
