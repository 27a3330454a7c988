#include "common/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace kvc {
namespace {

TEST(DTypeTest, NamesRoundTrip) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kI32, DType::kI64}) {
    auto r = ParseDType(DTypeName(t));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(*r, t);
  }
  EXPECT_EQ(ParseDType("F64").status().code(), Code::kNotSupported);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
}

TEST(HalfTest, ExactValues) {
  EXPECT_EQ(FloatToHalf(0.f), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.f), 0x8000);
  EXPECT_EQ(FloatToHalf(1.f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.f), 0x7bff);
  EXPECT_EQ(HalfToFloat(0x3555), 0.333251953125f);
}

TEST(HalfTest, InfNaNAndOverflow) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(FloatToHalf(inf), 0x7c00);
  EXPECT_EQ(FloatToHalf(-inf), 0xfc00);
  EXPECT_TRUE(std::isinf(HalfToFloat(0x7c00)));
  uint16_t nan = FloatToHalf(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x03ff, 0);
  EXPECT_TRUE(std::isnan(HalfToFloat(nan)));
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(-std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(FloatToHalf(65519.f), 0x7bff);  // below the halfway point to 65536
  EXPECT_EQ(FloatToHalf(65520.f), 0x7c00);  // tie: rounds to even (Inf)
  EXPECT_EQ(FloatToHalf(1e6f), 0x7c00);
}

TEST(HalfTest, Subnormals) {
  const float min_sub = std::ldexp(1.f, -24);
  EXPECT_EQ(FloatToHalf(min_sub), 0x0001);
  EXPECT_EQ(HalfToFloat(0x0001), min_sub);
  EXPECT_EQ(HalfToFloat(0x03ff), std::ldexp(1023.f, -24));
  EXPECT_EQ(FloatToHalf(std::ldexp(1.f, -25)), 0x0000);          // tie to even: 0
  EXPECT_EQ(FloatToHalf(std::ldexp(3.f, -26)), 0x0001);          // 0.75 ulp: up
  EXPECT_EQ(FloatToHalf(std::ldexp(3.f, -25)), 0x0002);          // 1.5 ulp tie: even (2)
  EXPECT_EQ(FloatToHalf(std::ldexp(5.f, -25)), 0x0002);          // 2.5 ulp tie: even (2)
  EXPECT_EQ(FloatToHalf(-std::ldexp(1.f, -14)), 0x8400);         // smallest normal
  EXPECT_EQ(FloatToHalf(std::ldexp(1023.5f, -24)), 0x0400);      // rounds into the normals
  // Every half value round-trips exactly.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // NaN payloads
    ASSERT_EQ(FloatToHalf(HalfToFloat(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
}

TEST(HalfTest, TiesToEvenInNormals) {
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1).
  EXPECT_EQ(FloatToHalf(1.f + std::ldexp(1.f, -11)), 0x3c00);
  // 1 + 3*2^-11 is halfway between 1+2^-10 (odd) and 1+2^-9 (even).
  EXPECT_EQ(FloatToHalf(1.f + 3 * std::ldexp(1.f, -11)), 0x3c02);
  EXPECT_EQ(FloatToHalf(1.f + std::ldexp(1.f, -11) + std::ldexp(1.f, -20)), 0x3c01);
}

TEST(Bf16Test, RoundingAndSpecials) {
  EXPECT_EQ(FloatToBf16(1.f), 0x3f80);
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.f);
  // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even (1).
  EXPECT_EQ(FloatToBf16(1.f + std::ldexp(1.f, -8)), 0x3f80);
  EXPECT_EQ(FloatToBf16(1.f + 3 * std::ldexp(1.f, -8)), 0x3f82);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  // A signalling-NaN pattern with payload only in the low bits must not become Inf.
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(BitsToFloat(0x7f800001u)))));
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7f80);  // overflow rounds to Inf
  const float sub = std::numeric_limits<float>::denorm_min();
  EXPECT_EQ(FloatToBf16(sub), 0x0000);
  EXPECT_EQ(Bf16ToFloat(0x0001), BitsToFloat(0x00010000u));  // bf16 subnormal is exact
}

TEST(ConvertTest, BufferRoundTrip) {
  float src[4] = {1.5f, -2.25f, 0.f, 1024.f};
  uint16_t h[4];
  float back[4];
  ConvertBuffer(DType::kF32, src, DType::kF16, h, 4);
  ConvertBuffer(DType::kF16, h, DType::kF32, back, 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(back[i], src[i]);
  ConvertBuffer(DType::kF32, src, DType::kBF16, h, 4);
  ConvertBuffer(DType::kBF16, h, DType::kF32, back, 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(back[i], src[i]);
}

}  // namespace
}  // namespace kvc
