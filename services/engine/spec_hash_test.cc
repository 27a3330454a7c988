#include "services/engine/spec_hash.h"

#include <gtest/gtest.h>

#include <set>

#include "common/sha256.h"

namespace kvc::engine {
namespace {

TEST(SpecHashTest, IsStableSha256OfDomainAndJson) {
  CompactionSpec spec;
  const std::string h = SpecHash(spec);
  EXPECT_EQ(h.size(), kSpecHashSize);
  EXPECT_EQ(h, SpecHash(spec));
  // Recomputed independently from the documented definition.
  const Sha256::Digest d = Sha256::Hash(std::string(kSpecHashDomain) + spec.ToJson());
  EXPECT_EQ(h, std::string(reinterpret_cast<const char*>(d.data()), d.size()));
}

TEST(SpecHashTest, EveryResultChangingFieldChangesTheHash) {
  std::set<std::string> seen;
  CompactionSpec base;
  seen.insert(SpecHash(base));
  CompactionSpec s = base;
  s.method = Method::kSnapKv;
  EXPECT_TRUE(seen.insert(SpecHash(s)).second);
  s = base;
  s.ratio = 20;
  EXPECT_TRUE(seen.insert(SpecHash(s)).second);
  s = base;
  s.budget = 64;
  EXPECT_TRUE(seen.insert(SpecHash(s)).second);
  s = base;
  s.seed = 7;
  EXPECT_TRUE(seen.insert(SpecHash(s)).second);
  s = base;
  s.am.ridge = 0.5;
  EXPECT_TRUE(seen.insert(SpecHash(s)).second);
  s = base;
  s.gate.min_cosine = 0.99;
  EXPECT_TRUE(seen.insert(SpecHash(s)).second);
}

TEST(SpecHashTest, ThreadsDoNotChangeTheHash) {
  CompactionSpec a;
  CompactionSpec b;
  b.threads = 16;
  EXPECT_EQ(SpecHash(a), SpecHash(b));
}

TEST(EntryFetchKeyTest, RoundTrips) {
  const std::string block(32, '\x01');
  const std::string spec(32, '\xfe');
  Result<std::string> key = EntryFetchKey(block, spec);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->substr(0, 4), "kvc1");
  EXPECT_EQ(key->size(), 4 + 1 + 32 + 1 + 32);
  Result<EntryKeyParts> parts = ParseEntryFetchKey(*key);
  ASSERT_TRUE(parts.ok()) << parts.status().ToString();
  EXPECT_EQ(parts->block_hash, block);
  EXPECT_EQ(parts->spec_hash, spec);
}

TEST(EntryFetchKeyTest, RejectsMalformedKeys) {
  EXPECT_TRUE(EntryFetchKey("", "x").status().IsInvalidArgument());
  EXPECT_TRUE(EntryFetchKey(std::string(256, 'a'), "x").status().IsInvalidArgument());
  const std::string good = *EntryFetchKey("ab", "cd");
  for (const std::string& bad :
       {std::string(), std::string("kvc1"),
        std::string("kvc2\x02"
                    "ab\x02"
                    "cd"),
        good.substr(0, good.size() - 1), good + "x", std::string("kvc1\x00", 5)}) {
    EXPECT_TRUE(ParseEntryFetchKey(bad).status().IsInvalidArgument()) << HexOf(bad);
  }
  EXPECT_EQ(HexOf("\x01\xab"), "01ab");
}

}  // namespace
}  // namespace kvc::engine
