#include "storage/store_key.h"

#include <gtest/gtest.h>

#include <set>

namespace kvc::storage {
namespace {

TEST(StoreKeyTest, EncodingRoundTripsAndIsUnambiguous) {
  const std::string block(32, '\x01');
  const StoreKey key{block, "spec"};
  ASSERT_TRUE(ValidateStoreKey(key.block_hash, key.spec_hash).ok());
  const std::string encoded = EncodeStoreKey(key);
  EXPECT_EQ(encoded.size(), 2 + 32 + 4);
  Result<StoreKey> back = DecodeStoreKey(encoded);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, key);
  // Moving bytes between the two parts changes the encoding.
  std::set<std::string> seen;
  for (const StoreKey& k : {StoreKey{"ab", "c"}, StoreKey{"a", "bc"}, StoreKey{"abc", "d"}}) {
    EXPECT_TRUE(seen.insert(EncodeStoreKey(k)).second);
  }
}

TEST(StoreKeyTest, RejectsBadParts) {
  EXPECT_TRUE(ValidateStoreKey("", "s").IsInvalidArgument());
  EXPECT_TRUE(ValidateStoreKey("b", "").IsInvalidArgument());
  EXPECT_TRUE(ValidateStoreKey(std::string(kMaxKeyPartBytes + 1, 'x'), "s").IsInvalidArgument());
  EXPECT_TRUE(ValidateStoreKey(std::string(kMaxKeyPartBytes, 'x'), "s").ok());
  EXPECT_TRUE(DecodeStoreKey("").status().IsCorruption());
  EXPECT_TRUE(DecodeStoreKey(std::string("\x05"
                                         "ab",
                                         3))
                  .status()
                  .IsCorruption());
  EXPECT_TRUE(DecodeStoreKey(EncodeStoreKey("a", "b") + "x").status().IsCorruption());
}

TEST(StoreKeyTest, DebugStringIsHex) {
  EXPECT_EQ(StoreKeyDebugString(std::string("\x01\xab", 2), "z"), "01ab/7a");
}

}  // namespace
}  // namespace kvc::storage
