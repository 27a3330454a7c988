// SHA-256 (FIPS 180-4), incremental and one-shot.
//
// Thread safety: a Sha256 object is not safe for concurrent use; separate objects are
// independent. The one-shot helpers are pure.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace kvc {

class Sha256 {
 public:
  static constexpr size_t kDigestSize = 32;
  using Digest = std::array<uint8_t, kDigestSize>;

  Sha256() { Reset(); }

  // Starts a new message.
  void Reset();
  // Appends bytes to the message.
  void Update(std::span<const uint8_t> data);
  void Update(std::string_view data);
  // Pads, returns the digest of everything given since the last Reset, and resets.
  Digest Finish();

  static Digest Hash(std::span<const uint8_t> data);
  static Digest Hash(std::string_view data);

 private:
  void Compress(const uint8_t* block);

  std::array<uint32_t, 8> state_;
  std::array<uint8_t, 64> buffer_;
  size_t buffered_ = 0;  // bytes in buffer_
  uint64_t total_ = 0;   // message length in bytes so far
};

// Lower-case hexadecimal of `bytes`.
std::string ToHex(std::span<const uint8_t> bytes);

}  // namespace kvc
