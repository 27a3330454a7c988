#include "common/prefix_hash.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "common/sha256.h"

namespace kvc {
namespace {

// Version tag of the salt serialisation. Changing anything in how salts or blocks are encoded
// requires a new tag, since stored caches are keyed by these hashes.
constexpr std::string_view kSaltTag = "kvcompact.prefix_salt.v1";
constexpr uint8_t kFullBlock = 0x01;
constexpr uint8_t kPartialBlock = 0x02;

void PutU32(std::vector<uint8_t>* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<uint8_t>(v >> (8 * i)));
}

void PutI32(std::vector<uint8_t>* out, int32_t v) { PutU32(out, static_cast<uint32_t>(v)); }

Status PutString(std::vector<uint8_t>* out, std::string_view what, std::string_view s) {
  if (s.size() > std::numeric_limits<uint32_t>::max()) {
    return Status::InvalidArgument("prefix salt: " + std::string(what) + " is longer than 4 GiB");
  }
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->insert(out->end(), s.begin(), s.end());
  return Status::OK();
}

Status CheckOptions(const PrefixHashOptions& options) {
  if (options.block_size <= 0 || options.block_size > kMaxPrefixBlockSize) {
    return Status::InvalidArgument("prefix hash: block_size " + std::to_string(options.block_size) +
                                   " is outside 1.." + std::to_string(kMaxPrefixBlockSize));
  }
  if (options.algo != HashAlgo::kSha256 && options.algo != HashAlgo::kXxh3_128) {
    return Status::InvalidArgument("prefix hash: unknown algorithm " +
                                   std::to_string(static_cast<int>(options.algo)));
  }
  return Status::OK();
}

BlockHash Digest(HashAlgo algo, std::span<const uint8_t> message) {
  BlockHash h;
  h.algo = algo;
  if (algo == HashAlgo::kSha256) {
    const Sha256::Digest d = Sha256::Hash(message);
    std::memcpy(h.bytes.data(), d.data(), d.size());
  } else {
    // The canonical (big-endian, as xxHash defines it) form is byte-order independent.
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(message.data(), message.size()));
    static_assert(sizeof(c.digest) == 16);
    std::memcpy(h.bytes.data(), c.digest, sizeof(c.digest));
  }
  return h;
}

}  // namespace

const char* HashAlgoName(HashAlgo algo) {
  switch (algo) {
    case HashAlgo::kSha256:
      return "sha256";
    case HashAlgo::kXxh3_128:
      return "xxh3_128";
  }
  return "unknown";
}

Result<HashAlgo> ParseHashAlgo(std::string_view name) {
  if (name == "sha256") return HashAlgo::kSha256;
  if (name == "xxh3_128") return HashAlgo::kXxh3_128;
  return Status::InvalidArgument("unknown hash algorithm '" + std::string(name) +
                                 "' (expected sha256 or xxh3_128)");
}

size_t HashDigestSize(HashAlgo algo) { return algo == HashAlgo::kXxh3_128 ? 16 : 32; }

PrefixSalt PrefixSalt::ForLayout(std::string model_id, const KvLayout& layout,
                                 uint32_t spec_version, std::string tenant) {
  PrefixSalt s;
  s.model_id = std::move(model_id);
  s.n_layers = layout.n_layers;
  s.n_kv_heads = layout.n_kv_heads;
  s.n_q_heads = layout.n_q_heads;
  s.head_dim = layout.head_dim;
  s.dtype = layout.dtype;
  s.spec_version = spec_version;
  s.tenant = std::move(tenant);
  return s;
}

std::string BlockHash::Hex() const { return ToHex(digest()); }

Result<std::vector<uint8_t>> SerializePrefixSalt(const PrefixSalt& salt,
                                                 const PrefixHashOptions& options) {
  KVC_RETURN_IF_ERROR(CheckOptions(options));
  if (salt.model_id.empty()) return Status::InvalidArgument("prefix salt: empty model id");
  std::vector<uint8_t> out;
  KVC_RETURN_IF_ERROR(PutString(&out, "tag", kSaltTag));
  KVC_RETURN_IF_ERROR(PutString(&out, "model id", salt.model_id));
  PutI32(&out, salt.n_layers);
  PutI32(&out, salt.n_kv_heads);
  PutI32(&out, salt.n_q_heads);
  PutI32(&out, salt.head_dim);
  out.push_back(static_cast<uint8_t>(salt.dtype));  // DType values are append-only
  PutU32(&out, salt.spec_version);
  KVC_RETURN_IF_ERROR(PutString(&out, "tenant", salt.tenant));
  PutI32(&out, options.block_size);
  return out;
}

Result<BlockHash> HashPrefixSalt(const PrefixSalt& salt, const PrefixHashOptions& options) {
  KVC_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, SerializePrefixSalt(salt, options));
  return Digest(options.algo, bytes);
}

Result<std::vector<BlockHash>> HashPrefix(std::span<const int32_t> tokens, const PrefixSalt& salt,
                                          const PrefixHashOptions& options) {
  KVC_ASSIGN_OR_RETURN(BlockHash prev, HashPrefixSalt(salt, options));
  const size_t block = static_cast<size_t>(options.block_size);
  std::vector<BlockHash> chain;
  chain.reserve((tokens.size() + block - 1) / block);
  std::vector<uint8_t> message;
  message.reserve(prev.size() + 5 + 4 * block);
  for (size_t begin = 0; begin < tokens.size(); begin += block) {
    const size_t n = std::min(block, tokens.size() - begin);
    const bool partial = n < block;
    message.assign(prev.digest().begin(), prev.digest().end());
    message.push_back(partial ? kPartialBlock : kFullBlock);
    PutU32(&message, static_cast<uint32_t>(n));
    for (size_t i = begin; i < begin + n; ++i) PutI32(&message, tokens[i]);
    BlockHash h = Digest(options.algo, message);
    h.n_tokens = static_cast<int32_t>(n);
    h.partial = partial;
    chain.push_back(h);
    prev = h;
  }
  return chain;
}

}  // namespace kvc
