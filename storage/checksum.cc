// Checksum64: XXH3_64bits (seed 0) of a byte range, with the vector code picked at run time.
//
// The distribution's libxxhash is built for baseline x86-64 (SSE2: about 6 GB/s here); the AVX2
// kernel runs at about twice that, which matters because every byte put or read is hashed. The
// AVX2 copy lives in checksum_avx2.cc, compiled with -mavx2 and called only on CPUs that have
// it. Every path computes the same function (checksum_test compares them with libxxhash).
#include <cstddef>
#include <cstdint>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "storage/format.h"

namespace kvc::storage {

#if defined(KVC_STORAGE_XXH3_AVX2)
// checksum_avx2.cc
uint64_t Xxh3Avx2(const void* data, size_t size);
#endif

uint64_t Checksum64(const void* data, size_t size) {
  static const char kEmpty[1] = {0};
  if (size == 0) data = kEmpty;
#if defined(KVC_STORAGE_XXH3_AVX2)
  static const bool kHaveAvx2 = __builtin_cpu_supports("avx2");
  if (kHaveAvx2) return Xxh3Avx2(data, size);
#endif
  return XXH3_64bits(data, size);
}

}  // namespace kvc::storage
