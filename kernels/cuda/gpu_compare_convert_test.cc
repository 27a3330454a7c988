// f16 / bf16 conversions (convert.cuh): RefChecksConvert.* check the host/device scalar functions
// against common/dtype.h bit for bit (every 16-bit pattern, and f32 inputs around every rounding
// boundary); GpuCompareConvert.* run the kernels on the same inputs and skip without a device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "common/dtype.h"
#include "kernels/cuda/am_fit_typed.h"
#include "kernels/cuda/compare_util.h"
#include "kernels/cuda/convert.cuh"

namespace kvc::cuda::test {
namespace {

std::vector<uint16_t> AllPatterns() {
  std::vector<uint16_t> h(65536);
  for (uint32_t i = 0; i < 65536; ++i) h[i] = uint16_t(i);
  return h;
}

// f32 inputs that exercise narrowing: every f16 and bf16 value, the midpoints between
// neighbours (ties), one ulp either side of them, specials and pseudo-random bit patterns.
std::vector<float> NarrowingInputs() {
  std::vector<float> f;
  for (uint32_t i = 0; i < 65536; ++i) {
    for (uint32_t u : {FloatBits(HalfToFloat(uint16_t(i))), uint32_t(i) << 16}) {
      for (int delta : {-1, 0, 1}) f.push_back(BitsToFloat(u + uint32_t(delta)));
    }
    const float a = HalfToFloat(uint16_t(i)), b = HalfToFloat(uint16_t(i + 1));
    if (std::isfinite(a) && std::isfinite(b)) {
      const float mid = float((double(a) + double(b)) / 2);
      for (int delta : {-1, 0, 1}) f.push_back(BitsToFloat(FloatBits(mid) + uint32_t(delta)));
    }
    const uint32_t bmid = (uint32_t(i) << 16) | 0x8000u;  // bf16 tie
    for (int delta : {-1, 0, 1}) f.push_back(BitsToFloat(bmid + uint32_t(delta)));
  }
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 200000; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    f.push_back(BitsToFloat(uint32_t(x)));
  }
  for (float s : {0.f, -0.f, INFINITY, -INFINITY, NAN, 65504.f, 65520.f, 65519.996f, 5.96e-8f,
                  2.98e-8f, 1e-40f, 3.4e38f}) {
    f.push_back(s);
  }
  return f;
}

TEST(RefChecksConvert, WideningMatchesHostForEveryPattern) {
  for (uint16_t h : AllPatterns()) {
    ASSERT_EQ(FloatBits(HalfBitsToFloat(h)), FloatBits(HalfToFloat(h))) << "f16 " << h;
    ASSERT_EQ(FloatBits(Bf16BitsToFloat(h)), FloatBits(Bf16ToFloat(h))) << "bf16 " << h;
  }
}

TEST(RefChecksConvert, NarrowingMatchesHostAroundEveryBoundary) {
  for (float f : NarrowingInputs()) {
    ASSERT_EQ(FloatToHalfBits(f), FloatToHalf(f)) << "f32 bits " << FloatBits(f);
    ASSERT_EQ(FloatToBf16Bits(f), FloatToBf16(f)) << "f32 bits " << FloatBits(f);
  }
}

TEST(RefChecksConvert, SupportedPairs) {
  EXPECT_TRUE(DeviceConvertSupported(DType::kF16, DType::kF32));
  EXPECT_TRUE(DeviceConvertSupported(DType::kF32, DType::kBF16));
  EXPECT_FALSE(DeviceConvertSupported(DType::kF16, DType::kBF16));
  EXPECT_FALSE(DeviceConvertSupported(DType::kI32, DType::kF32));
}

std::vector<uint32_t> Bits(const std::vector<float>& f) {
  std::vector<uint32_t> u(f.size());
  for (size_t i = 0; i < f.size(); ++i) u[i] = FloatBits(f[i]);
  return u;
}

TEST(GpuCompareConvert, EveryHalfPatternWidensLikeTheHost) {
  KVC_REQUIRE_GPU(ctx);
  const std::vector<uint16_t> h = AllPatterns();
  for (DType t : {DType::kF16, DType::kBF16}) {
    Result<DeviceBuffer> got = UploadAsF32(t, h.data(), h.size(), ctx.pool(), ctx.stream());
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    std::vector<float> want(h.size());
    ConvertBuffer(t, h.data(), DType::kF32, want.data(), h.size());
    EXPECT_EQ(Bits(ToHost(*got, h.size())), Bits(want)) << DTypeName(t);
  }
}

TEST(GpuCompareConvert, NarrowingMatchesTheHostInOneBatch) {
  KVC_REQUIRE_GPU(ctx);
  const std::vector<float> f = NarrowingInputs();
  const size_t half = f.size() / 2;
  DeviceBuffer src = ToDevice(f);
  Result<DeviceBuffer> out = ctx.pool().AllocateArray<uint16_t>(f.size());
  ASSERT_TRUE(out.ok());
  for (DType t : {DType::kF16, DType::kBF16}) {
    const std::vector<ConvertJob> jobs = {
        {src.as<float>(), out->as<uint16_t>(), int64_t(half)},
        {src.as<float>() + half, out->as<uint16_t>() + half, int64_t(f.size() - half)}};
    ASSERT_TRUE(ConvertBatchOnDevice(DType::kF32, t, jobs, ctx.stream()).ok());
    Result<std::vector<uint16_t>> got = Download(out->as<uint16_t>(), f.size(), ctx.stream());
    ASSERT_TRUE(got.ok());
    std::vector<uint16_t> want(f.size());
    ConvertBuffer(DType::kF32, f.data(), t, want.data(), f.size());
    EXPECT_EQ(*got, want) << DTypeName(t);
  }
}

// AmFit on f16 inputs widened on the device equals AmFit on the host-widened f32 inputs.
TEST(GpuCompareConvert, AmFitOnHalfInputs) {
  KVC_REQUIRE_GPU(ctx);
  const AmCase c = ComparisonCases()[2];
  AmFitHostProblem p = MakeProblem(c);
  std::vector<uint16_t> q(p.q.size()), k(p.k.size()), v(p.v.size());
  for (auto* pair : {&p.q, &p.k, &p.v}) {
    std::vector<uint16_t>& dst = pair == &p.q ? q : pair == &p.k ? k : v;
    for (size_t i = 0; i < pair->size(); ++i) {
      dst[i] = FloatToHalf((*pair)[i]);
      (*pair)[i] = HalfToFloat(dst[i]);  // the f32 problem holds the same (rounded) values
    }
  }
  AmFitTypedHostProblem tp{DType::kF16, q.data(), k.data(),   v.data(), p.batch,
                           p.n,         p.tokens, p.head_dim, p.budgets};
  Result<AmFitHostResult> got = AmFitOnHostTyped(tp, StrictAmOptions(), ctx);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  Result<AmFitHostResult> want = AmFitOnHost(p, StrictAmOptions(), ctx);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  EXPECT_EQ(got->indices, want->indices);
  EXPECT_EQ(got->values, want->values);
  EXPECT_EQ(got->beta, want->beta);
}

}  // namespace
}  // namespace kvc::cuda::test
