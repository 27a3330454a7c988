// The AVX2 build of XXH3_64bits (see checksum.cc). Compiled with -mavx2: it must contain nothing
// but this function, so no AVX2 code can be shared with (and picked by the linker for) callers
// on CPUs without AVX2. XXH_INLINE_ALL keeps every xxhash function static to this file.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kvc::storage {

XXH64_hash_t Xxh3Avx2(const void* data, size_t size) { return XXH3_64bits(data, size); }

}  // namespace kvc::storage
