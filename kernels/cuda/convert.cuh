// f16 / bf16 <-> f32 conversion on the device, bit-identical to common/dtype.h's host functions
// (round to nearest, ties to even; NaN stays a quiet NaN with the same payload rule; infinities
// stay infinite; f16 subnormals exact both ways). The scalar functions below are __host__
// __device__, so the host tests run the very code the kernels run.
//
// Widening (f16 -> f32, bf16 -> f32) lets AmFit run on half-precision caches: the raw 2-byte data
// is uploaded (half the PCIe bytes) and widened on the device (UploadAsF32); every product and
// solve then runs in f32 (design §4 step 3). Narrowing (f32 -> f16 / bf16) returns compacted
// results in the cache's dtype.
//
// Stream semantics: queued on `stream`; nothing synchronises (UploadAsF32 as Upload, context.h).
// Thread safety: stateless.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "kernels/cuda/memory_pool.h"

#if defined(__CUDACC__)
#define KVC_HOST_DEVICE __host__ __device__
#else
#define KVC_HOST_DEVICE
#endif

namespace kvc::cuda {

KVC_HOST_DEVICE inline uint32_t ConvFloatBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

KVC_HOST_DEVICE inline float ConvBitsFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// IEEE binary16 bits -> f32 (exact).
KVC_HOST_DEVICE inline float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1fu) return ConvBitsFloat(sign | 0x7f800000u | (mant << 13));
  if (exp != 0) return ConvBitsFloat(sign | ((exp + 112u) << 23) | (mant << 13));
  const float v = float(mant) * 5.9604644775390625e-8f;  // mant * 2^-24, exact
  return sign != 0 ? -v : v;
}

// f32 -> binary16 bits, round to nearest even (common/dtype.cc's FloatToHalf).
KVC_HOST_DEVICE inline uint16_t FloatToHalfBits(float f) {
  const uint32_t u = ConvFloatBits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u | uint16_t((abs >> 13) & 0x1ffu));
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);
  if (abs >= 0x38800000u) {
    const uint32_t mant_round = abs + 0xfffu + ((abs >> 13) & 1u);
    return uint16_t(sign | uint16_t((mant_round - 0x38000000u) >> 13));
  }
  if (abs < 0x33000000u) return sign;
  const uint32_t exp = abs >> 23;
  const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
  const uint32_t shift = 126u - exp;  // 14..24
  uint32_t m = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  if (rem > half || (rem == half && (m & 1u))) ++m;
  return uint16_t(sign | uint16_t(m));
}

KVC_HOST_DEVICE inline float Bf16BitsToFloat(uint16_t h) {
  return ConvBitsFloat(uint32_t(h) << 16);
}

// f32 -> bfloat16 bits, round to nearest even (common/dtype.h's FloatToBf16).
KVC_HOST_DEVICE inline uint16_t FloatToBf16Bits(float f) {
  uint32_t u = ConvFloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x0040u);
  const uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;
  return uint16_t(u >> 16);
}

// One conversion of a batch: `count` elements from src (dtype from) to dst (dtype to).
struct ConvertJob {
  const void* src = nullptr;
  void* dst = nullptr;
  int64_t count = 0;
};

// Pairs the device converts: f16/bf16 -> f32 and f32 -> f16/bf16 (and any dtype to itself, a
// plain copy).
bool DeviceConvertSupported(DType from, DType to);

// ---- Launcher ----------------------------------------------------------------------------------
// Converts up to kMaxConvertJobs jobs in one launch. REQUIRES: a supported pair of different
// dtypes, jobs.size() <= kMaxConvertJobs, device pointers.
inline constexpr int kMaxConvertJobs = 64;
cudaError_t LaunchConvert(DType from, DType to, const ConvertJob* jobs, int num_jobs,
                          cudaStream_t stream);

// ---- Validated entry points --------------------------------------------------------------------
// REQUIRES (else InvalidArgument / NotSupported for an unsupported pair): count >= 0, non-null
// device pointers when count > 0, src and dst do not overlap.
Status ConvertOnDevice(DType from, const void* src, DType to, void* dst, int64_t count,
                       cudaStream_t stream);
// Any number of jobs with the same dtype pair, kMaxConvertJobs per launch.
Status ConvertBatchOnDevice(DType from, DType to, const std::vector<ConvertJob>& jobs,
                            cudaStream_t stream);

// Uploads `count` host elements of `dtype` (f32, f16 or bf16) and widens them to a new f32 pool
// buffer on the device. The host memory may be reused when this returns.
Result<DeviceBuffer> UploadAsF32(DType dtype, const void* host, size_t count,
                                 DeviceMemoryPool& pool, cudaStream_t stream);

}  // namespace kvc::cuda
