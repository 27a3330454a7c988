// Byte-level encoding helpers of the storage format (internal to storage/).
//
// Fixed-width integers are little-endian, except the big-endian helpers used in keys where byte
// order must follow numeric order. Varints are LEB128 (7 bits per byte, low bits first), at most
// 5 bytes for 32-bit and 10 bytes for 64-bit values.
//
// Reader never reads past its end: every Get* returns false on truncation or an over-long varint
// and leaves the reader positioned where it was.
//
// Thread safety: pure functions; a Reader is not shared between threads.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace kvc::storage {

static_assert(std::endian::native == std::endian::little,
              "the storage format writes host-order tensor bytes and assumes a little-endian host");

inline void PutFixed32(std::string* dst, uint32_t v) {
  dst->append(reinterpret_cast<char*>(&v), 4);
}
inline void PutFixed64(std::string* dst, uint64_t v) {
  dst->append(reinterpret_cast<char*>(&v), 8);
}

inline void PutFixed32BE(std::string* dst, uint32_t v) { PutFixed32(dst, std::byteswap(v)); }
inline void PutFixed64BE(std::string* dst, uint64_t v) { PutFixed64(dst, std::byteswap(v)); }

inline uint64_t DecodeFixed64BE(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return std::byteswap(v);
}

inline void PutVarint64(std::string* dst, uint64_t v) {
  char buf[10];
  int n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  dst->append(buf, n);
}
inline void PutVarint32(std::string* dst, uint32_t v) { PutVarint64(dst, v); }

// Varint length followed by the bytes.
inline void PutLengthPrefixed(std::string* dst, std::string_view s) {
  PutVarint64(dst, s.size());
  dst->append(s.data(), s.size());
}

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  size_t remaining() const { return in_.size() - pos_; }
  size_t position() const { return pos_; }
  bool done() const { return pos_ == in_.size(); }

  bool GetU8(uint8_t* v) {
    if (remaining() < 1) return false;
    *v = static_cast<uint8_t>(in_[pos_++]);
    return true;
  }
  bool GetFixed32(uint32_t* v) { return GetRaw(v, 4); }
  bool GetFixed64(uint64_t* v) { return GetRaw(v, 8); }

  bool GetVarint64(uint64_t* v) {
    uint64_t result = 0;
    for (size_t i = 0, shift = 0; i < 10 && pos_ + i < in_.size(); ++i, shift += 7) {
      const uint8_t byte = static_cast<uint8_t>(in_[pos_ + i]);
      // The tenth byte may only carry the single top bit of a 64-bit value.
      if (i == 9 && byte > 1) return false;
      result |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) {
        pos_ += i + 1;
        *v = result;
        return true;
      }
    }
    return false;
  }
  bool GetVarint32(uint32_t* v) {
    const size_t saved = pos_;
    uint64_t x;
    if (!GetVarint64(&x) || x > UINT32_MAX) {
      pos_ = saved;
      return false;
    }
    *v = static_cast<uint32_t>(x);
    return true;
  }
  // The next n bytes; false if fewer remain.
  bool GetBytes(size_t n, std::string_view* out) {
    if (n > remaining()) return false;
    *out = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  // A varint length then that many bytes; false if the length exceeds `max_len` or the input.
  bool GetLengthPrefixed(std::string_view* out, size_t max_len) {
    const size_t saved = pos_;
    uint64_t n;
    if (!GetVarint64(&n) || n > max_len || n > remaining()) {
      pos_ = saved;
      return false;
    }
    *out = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }

 private:
  template <typename T>
  bool GetRaw(T* v, size_t n) {
    if (remaining() < n) return false;
    std::memcpy(v, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }

  std::string_view in_;
  size_t pos_ = 0;
};

}  // namespace kvc::storage
