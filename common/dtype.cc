#include "common/dtype.h"

#include <cmath>
#include <string>

namespace kvc {

size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  return 0;
}

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
  }
  return "?";
}

Result<DType> ParseDType(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  if (name == "I32") return DType::kI32;
  if (name == "I64") return DType::kI64;
  return Status::NotSupported("unsupported dtype '" + std::string(name) +
                              "' (supported: F32, F16, BF16, I32, I64)");
}

uint16_t FloatToHalf(float f) {
  const uint32_t u = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u | static_cast<uint16_t>((abs >> 13) & 0x1ffu);
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: Inf
  if (abs >= 0x38800000u) {                       // normal half
    uint32_t mant_round = abs + 0xfffu + ((abs >> 13) & 1u);  // RNE on the dropped 13 bits
    return sign | static_cast<uint16_t>((mant_round - 0x38000000u) >> 13);
  }
  // Subnormal half (or zero): value = m * 2^-24, m = round(|f| * 2^24).
  if (abs < 0x33000000u) return sign;  // below half of the smallest subnormal: +-0
  const uint32_t exp = abs >> 23;
  const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - exp;  // 14..24
  uint32_t m = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (m & 1u))) ++m;
  return sign | static_cast<uint16_t>(m);
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return BitsToFloat(sign | 0x7f800000u | (mant << 13));
  if (exp != 0) return BitsToFloat(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return BitsToFloat(sign);
  float v = std::ldexp(static_cast<float>(mant), -24);
  return sign ? -v : v;
}

namespace {
float LoadAsFloat(DType t, const void* src, size_t i) {
  switch (t) {
    case DType::kF32: return static_cast<const float*>(src)[i];
    case DType::kF16: return HalfToFloat(static_cast<const uint16_t*>(src)[i]);
    case DType::kBF16: return Bf16ToFloat(static_cast<const uint16_t*>(src)[i]);
    default: return 0.f;
  }
}
void StoreFromFloat(DType t, void* dst, size_t i, float v) {
  switch (t) {
    case DType::kF32: static_cast<float*>(dst)[i] = v; break;
    case DType::kF16: static_cast<uint16_t*>(dst)[i] = FloatToHalf(v); break;
    case DType::kBF16: static_cast<uint16_t*>(dst)[i] = FloatToBf16(v); break;
    default: break;
  }
}
}  // namespace

void ConvertBuffer(DType from, const void* src, DType to, void* dst, size_t n) {
  if (from == to) {
    std::memcpy(dst, src, n * DTypeSize(from));
    return;
  }
  for (size_t i = 0; i < n; ++i) StoreFromFloat(to, dst, i, LoadAsFloat(from, src, i));
}

}  // namespace kvc
