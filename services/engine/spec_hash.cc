#include "services/engine/spec_hash.h"

#include <span>

#include "common/sha256.h"

namespace kvc::engine {
namespace {

constexpr std::string_view kFetchKeyMagic = "kvc1";
constexpr size_t kMaxPart = 255;

}  // namespace

std::string SpecHash(const CompactionSpec& spec) {
  Sha256 h;
  h.Update(std::string_view(kSpecHashDomain));
  h.Update(spec.ToJson());
  const Sha256::Digest d = h.Finish();
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

std::string HexOf(std::string_view bytes) {
  return ToHex(
      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

Result<std::string> EntryFetchKey(std::string_view block_hash, std::string_view spec_hash) {
  if (block_hash.empty() || block_hash.size() > kMaxPart || spec_hash.empty() ||
      spec_hash.size() > kMaxPart) {
    return Status::InvalidArgument("entry key: block hash and spec hash must each be 1..255 bytes");
  }
  std::string key(kFetchKeyMagic);
  key += static_cast<char>(block_hash.size());
  key += block_hash;
  key += static_cast<char>(spec_hash.size());
  key += spec_hash;
  return key;
}

Result<EntryKeyParts> ParseEntryFetchKey(std::string_view key) {
  const auto bad = [] {
    return Status::InvalidArgument("entry key: not a key made by EntryFetchKey (kvc1 format)");
  };
  if (!key.starts_with(kFetchKeyMagic)) return bad();
  key.remove_prefix(kFetchKeyMagic.size());
  EntryKeyParts parts;
  for (std::string* out : {&parts.block_hash, &parts.spec_hash}) {
    if (key.empty()) return bad();
    const size_t n = static_cast<uint8_t>(key[0]);
    if (n == 0 || key.size() < 1 + n) return bad();
    *out = std::string(key.substr(1, n));
    key.remove_prefix(1 + n);
  }
  if (!key.empty()) return bad();
  return parts;
}

}  // namespace kvc::engine
