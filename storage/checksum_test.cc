// Checksum64 must be XXH3_64bits exactly, whichever vector path the CPU takes: stored checksums
// are read back on other machines.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <random>
#include <string>

#include "storage/format.h"

namespace kvc::storage {
namespace {

TEST(ChecksumTest, MatchesLibxxhashAtEverySizeAndAlignment) {
  std::mt19937_64 rng(5);
  std::string buf(70000, '\0');
  for (char& c : buf) c = static_cast<char>(rng());
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; n <= 1100; ++n) {
      ASSERT_EQ(Checksum64(buf.data() + offset, n), XXH3_64bits(buf.data() + offset, n))
          << "offset " << offset << " size " << n;
    }
    for (size_t n : {4095u, 4096u, 4097u, 65536u, 69990u}) {
      ASSERT_EQ(Checksum64(buf.data() + offset, n), XXH3_64bits(buf.data() + offset, n)) << n;
    }
  }
  EXPECT_EQ(Checksum64(nullptr, 0), XXH3_64bits("", 0));
}

}  // namespace
}  // namespace kvc::storage
