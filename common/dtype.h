// Element types and scalar conversions. f16 and bf16 conversions round to nearest, ties to even;
// NaN stays NaN (quiet), infinities stay infinite, f16 subnormals are exact both ways.
// Thread safety: all functions are pure. Header usable from C++20 (CUDA translation units).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "common/status.h"

namespace kvc {

// Floating types hold KV data; the integer types exist for index tensors (offsets, positions)
// in files and payloads. Append only: values are written into the storage format.
enum class DType : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2, kI32 = 3, kI64 = 4 };

size_t DTypeSize(DType t);
// safetensors spelling: "F32", "F16", "BF16", "I32", "I64".
const char* DTypeName(DType t);
// Accepts the safetensors spelling; anything else is NotSupported.
Result<DType> ParseDType(std::string_view name);
inline bool IsFloating(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE binary16 <-> binary32.
uint16_t FloatToHalf(float f);
float HalfToFloat(uint16_t h);

// bfloat16 <-> binary32.
inline uint16_t FloatToBf16(float f) {
  uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN
  uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;  // round to nearest even; overflow to Inf is correct behaviour
  return static_cast<uint16_t>(u >> 16);
}
inline float Bf16ToFloat(uint16_t h) { return BitsToFloat(static_cast<uint32_t>(h) << 16); }

// Converts `n` elements between floating dtypes. REQUIRES: both floating; buffers do not overlap.
void ConvertBuffer(DType from, const void* src, DType to, void* dst, size_t n);

}  // namespace kvc
