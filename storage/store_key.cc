#include "storage/store_key.h"

#include "storage/coding.h"

namespace kvc::storage {

Status ValidateStoreKey(std::string_view block_hash, std::string_view spec_hash) {
  if (block_hash.empty() || block_hash.size() > kMaxKeyPartBytes) {
    return Status::InvalidArgument("store key: block hash must be 1.." +
                                   std::to_string(kMaxKeyPartBytes) + " bytes, got " +
                                   std::to_string(block_hash.size()));
  }
  if (spec_hash.empty() || spec_hash.size() > kMaxKeyPartBytes) {
    return Status::InvalidArgument("store key: spec hash must be 1.." +
                                   std::to_string(kMaxKeyPartBytes) + " bytes, got " +
                                   std::to_string(spec_hash.size()));
  }
  return Status::OK();
}

std::string EncodeStoreKey(std::string_view block_hash, std::string_view spec_hash) {
  std::string out;
  out.reserve(2 + block_hash.size() + spec_hash.size());
  out.push_back(static_cast<char>(block_hash.size()));
  out.append(block_hash);
  out.push_back(static_cast<char>(spec_hash.size()));
  out.append(spec_hash);
  return out;
}

Result<StoreKey> DecodeStoreKey(std::string_view encoded) {
  Reader r(encoded);
  StoreKey key;
  for (std::string* part : {&key.block_hash, &key.spec_hash}) {
    uint8_t n = 0;
    std::string_view bytes;
    if (!r.GetU8(&n) || n == 0 || n > kMaxKeyPartBytes || !r.GetBytes(n, &bytes)) {
      return Status::Corruption("store key: malformed encoding");
    }
    part->assign(bytes);
  }
  if (!r.done()) return Status::Corruption("store key: trailing bytes");
  return key;
}

std::string StoreKeyDebugString(std::string_view block_hash, std::string_view spec_hash) {
  static constexpr char kHex[] = "0123456789abcdef";
  auto hex = [](std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < 8; ++i) {
      out.push_back(kHex[static_cast<uint8_t>(s[i]) >> 4]);
      out.push_back(kHex[static_cast<uint8_t>(s[i]) & 0xf]);
    }
    if (s.size() > 8) out += "..";
    return out;
  };
  return hex(block_hash) + "/" + hex(spec_hash);
}

}  // namespace kvc::storage
