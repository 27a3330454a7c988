#include "common/prefix_hash.h"

#include <gtest/gtest.h>

#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "common/sha256.h"

namespace kvc {
namespace {

// ---- SHA-256: the FIPS 180-4 / NIST example vectors --------------------------------------------

std::string Sha256Hex(std::string_view s) { return ToHex(Sha256::Hash(s)); }

TEST(Sha256Test, NistVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(
      Sha256Hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmn"
                "opqklmnopqrlmnopqrsmnopqrstnopqrstu"),
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256Test, OneMillionAInPieces) {
  Sha256 h;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) h.Update(chunk);
  EXPECT_EQ(ToHex(h.Finish()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // Finish resets: the object hashes a new message afterwards.
  h.Update("abc");
  EXPECT_EQ(ToHex(h.Finish()), Sha256Hex("abc"));
}

TEST(Sha256Test, IncrementalEqualsOneShotAtEveryPaddingBoundary) {
  std::string msg;
  for (int i = 0; i < 200; ++i) msg.push_back(static_cast<char>(i * 37 + 11));
  for (size_t len : {0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 200}) {
    const std::string_view m(msg.data(), len);
    for (size_t step : {1, 3, 64, 70}) {
      Sha256 h;
      for (size_t i = 0; i < len; i += step) h.Update(m.substr(i, step));
      EXPECT_EQ(h.Finish(), Sha256::Hash(m)) << "len " << len << " step " << step;
    }
  }
  EXPECT_NE(Sha256::Hash(std::string_view(msg.data(), 55)),
            Sha256::Hash(std::string_view(msg.data(), 56)));
}

// ---- prefix hash chain
// ---------------------------------------------------------------------------

PrefixSalt SaltA() {
  PrefixSalt s;
  s.model_id = "llama-3-8b";
  s.n_layers = 32;
  s.n_kv_heads = 8;
  s.n_q_heads = 32;
  s.head_dim = 128;
  s.dtype = DType::kF16;
  s.spec_version = 1;
  s.tenant = "acme";
  return s;
}

std::vector<int32_t> Iota(int n, int32_t start = 0) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), start);
  return v;
}

std::vector<std::string> ChainHex(const std::vector<int32_t>& tokens, const PrefixSalt& salt,
                                  const PrefixHashOptions& opt) {
  std::vector<std::string> out;
  Result<BlockHash> h0 = HashPrefixSalt(salt, opt);
  EXPECT_TRUE(h0.ok()) << h0.status().ToString();
  if (!h0.ok()) return out;
  out.push_back(h0->Hex());
  Result<std::vector<BlockHash>> chain = HashPrefix(tokens, salt, opt);
  EXPECT_TRUE(chain.ok()) << chain.status().ToString();
  if (!chain.ok()) return out;
  for (const BlockHash& b : *chain) out.push_back(b.Hex());
  return out;
}

// Fixed vectors: any machine and build must produce exactly these. The SHA-256 values were
// computed independently from the documented encoding (salt fields, u32 lengths, block kind and
// count, little-endian int32 tokens) with another SHA-256 implementation.
TEST(PrefixHashTest, FixedVectorsSha256) {
  PrefixHashOptions b4;
  b4.block_size = 4;
  EXPECT_EQ(ChainHex(Iota(10), SaltA(), b4),
            (std::vector<std::string>{
                "a92e9562e47f07150ecd1970498975e558164947b4c51a276b59c80f2cce79f0",
                "9bfbc3a11312700de1ddc87e74389e51e9692c8a40b01d6d9d208de2adf698b5",
                "b6bd5b7672373773443b4ca8625dfbd14a2e5d034d38f717f6bf9321ba87bb0c",
                "08e4b67ee1d9e7fde34e704b6d8efba2b1a6775fa20efa07e0a8a4ada46dc0b2"}));

  PrefixSalt b;
  b.model_id = "m";
  b.dtype = DType::kBF16;
  PrefixHashOptions b2;
  b2.block_size = 2;
  EXPECT_EQ(ChainHex({-1, 2147483647, -2147483647 - 1, 7}, b, b2),
            (std::vector<std::string>{
                "78b88d203e58d27ce5fa90ca79cdbce43342a45e7630466f091cc8af93b75526",
                "6e145751f1b54bcf7697fc69ebfe83cd3dd187be9ce3ebb7c15054fe0d41d94e",
                "50db194bbfa855ae6c7925d63f15ed35b4e4d7bc7eb5c8f33d5cfa9423cd79d7"}));

  const PrefixSalt c = PrefixSalt::ForLayout(
      "qwen3-4b", KvLayout{36, 8, 32, 128, DType::kBF16, 999}, 3, "tenant-42");
  std::vector<int32_t> tokens(300);
  for (int i = 0; i < 300; ++i) tokens[i] = (i * 7919) % 50000;
  EXPECT_EQ(ChainHex(tokens, c, {}),  // default: SHA-256, 256-token blocks
            (std::vector<std::string>{
                "070d90d03920e7aede8df9675e9f5b81d7ba5ad6eebf2cea19a9d9262d05242a",
                "671a1bbf2e7d23450a0fe65d0b7b2d2cf0a96d5eacbe3bcc3198f73ab905c5ee",
                "ef250c5f795d52fdd8280b396d388cb00fc5c411549d9cb49eebcb10d0da051a"}));
}

// The xxh3-128 values were recorded from this implementation (libxxhash XXH3_128bits, canonical
// byte order) after the SHA-256 vectors above confirmed the shared encoding; they pin the
// encoding and the digest byte order for this algorithm.
TEST(PrefixHashTest, FixedVectorsXxh3) {
  PrefixHashOptions b4;
  b4.algo = HashAlgo::kXxh3_128;
  b4.block_size = 4;
  EXPECT_EQ(ChainHex(Iota(10), SaltA(), b4),
            (std::vector<std::string>{
                "cb7481335aa9b7ac841f14aad4172785", "011b0e2c590645ad63e8710132f20ac3",
                "40bd145eabbc9502de7ef1fca9465012", "fc5105a709f38f08ef838c1ea3cb1273"}));
  PrefixSalt b;
  b.model_id = "m";
  b.dtype = DType::kBF16;
  PrefixHashOptions b2;
  b2.algo = HashAlgo::kXxh3_128;
  b2.block_size = 2;
  EXPECT_EQ(ChainHex({-1, 2147483647, -2147483647 - 1, 7}, b, b2),
            (std::vector<std::string>{"dfd5a61e1513047becb3a6f1ec54a6e4",
                                      "017d1d8f0d7e155aee111a0588f4a7a0",
                                      "852119f0bd8eef386c6b2ea23d29dad1"}));
}

TEST(PrefixHashTest, BlocksCountsAndPartialFlag) {
  PrefixHashOptions opt;
  opt.block_size = 4;
  for (HashAlgo algo : {HashAlgo::kSha256, HashAlgo::kXxh3_128}) {
    opt.algo = algo;
    Result<std::vector<BlockHash>> chain = HashPrefix(Iota(10), SaltA(), opt);
    ASSERT_TRUE(chain.ok());
    ASSERT_EQ(chain->size(), 3u);
    EXPECT_EQ((*chain)[0].n_tokens, 4);
    EXPECT_FALSE((*chain)[1].partial);
    EXPECT_EQ((*chain)[2].n_tokens, 2);
    EXPECT_TRUE((*chain)[2].partial);
    for (const BlockHash& b : *chain) {
      EXPECT_EQ(b.algo, algo);
      EXPECT_EQ(b.Hex().size(), 2 * HashDigestSize(algo));
    }
    if (algo == HashAlgo::kXxh3_128) {
      for (size_t i = 16; i < 32; ++i) EXPECT_EQ((*chain)[0].bytes[i], 0);
    }
    Result<std::vector<BlockHash>> exact = HashPrefix(Iota(8), SaltA(), opt);
    ASSERT_TRUE(exact.ok());
    ASSERT_EQ(exact->size(), 2u);
    EXPECT_FALSE(exact->back().partial);
    Result<std::vector<BlockHash>> none = HashPrefix({}, SaltA(), opt);
    ASSERT_TRUE(none.ok());
    EXPECT_TRUE(none->empty());
  }
}

// Recomputes the chain from the documented formula with Sha256 directly.
TEST(PrefixHashTest, ChainFollowsTheDocumentedEncoding) {
  PrefixHashOptions opt;
  opt.block_size = 3;
  const std::vector<int32_t> tokens = {5, -6, 70000, 1 << 30, 9};
  Result<std::vector<uint8_t>> salt = SerializePrefixSalt(SaltA(), opt);
  ASSERT_TRUE(salt.ok());
  Sha256::Digest prev = Sha256::Hash(*salt);
  auto block = [&](uint8_t kind, std::vector<int32_t> toks) {
    std::vector<uint8_t> m(prev.begin(), prev.end());
    m.push_back(kind);
    auto put = [&](uint32_t v) {
      for (int i = 0; i < 4; ++i) m.push_back(static_cast<uint8_t>(v >> (8 * i)));
    };
    put(static_cast<uint32_t>(toks.size()));
    for (int32_t t : toks) put(static_cast<uint32_t>(t));
    return Sha256::Hash(m);
  };
  const Sha256::Digest h1 = block(0x01, {5, -6, 70000});
  prev = h1;
  const Sha256::Digest h2 = block(0x02, {1 << 30, 9});
  const Sha256::Digest h2_as_full = block(0x01, {1 << 30, 9});
  Result<std::vector<BlockHash>> chain = HashPrefix(tokens, SaltA(), opt);
  ASSERT_TRUE(chain.ok());
  ASSERT_EQ(chain->size(), 2u);
  EXPECT_EQ(ToHex((*chain)[0].digest()), ToHex(h1));
  EXPECT_EQ(ToHex((*chain)[1].digest()), ToHex(h2));
  // The partial marker is part of the hashed bytes: the same tokens as a full block differ.
  EXPECT_NE(ToHex((*chain)[1].digest()), ToHex(h2_as_full));
}

TEST(PrefixHashTest, EverySaltFieldMatters) {
  const std::vector<std::function<void(PrefixSalt*)>> edits = {
      [](PrefixSalt* s) { s->model_id += "x"; }, [](PrefixSalt* s) { s->n_layers++; },
      [](PrefixSalt* s) { s->n_kv_heads++; },    [](PrefixSalt* s) { s->n_q_heads++; },
      [](PrefixSalt* s) { s->head_dim++; },      [](PrefixSalt* s) { s->dtype = DType::kBF16; },
      [](PrefixSalt* s) { s->spec_version++; },  [](PrefixSalt* s) { s->tenant = "other"; },
  };
  PrefixHashOptions opt;
  opt.block_size = 4;
  for (HashAlgo algo : {HashAlgo::kSha256, HashAlgo::kXxh3_128}) {
    opt.algo = algo;
    const std::vector<BlockHash> base = *HashPrefix(Iota(12), SaltA(), opt);
    for (size_t e = 0; e < edits.size(); ++e) {
      PrefixSalt s = SaltA();
      edits[e](&s);
      const std::vector<BlockHash> changed = *HashPrefix(Iota(12), s, opt);
      for (size_t i = 0; i < base.size(); ++i) EXPECT_NE(base[i], changed[i]) << e << "/" << i;
    }
    PrefixHashOptions other_block = opt;
    other_block.block_size = 5;
    EXPECT_NE(*HashPrefixSalt(SaltA(), opt), *HashPrefixSalt(SaltA(), other_block));
  }
}

TEST(PrefixHashTest, FieldBoundariesAreUnambiguous) {
  // Moving characters between adjacent strings must change the salt (length prefixes).
  PrefixSalt a = SaltA();
  a.model_id = "ab";
  a.tenant = "c";
  PrefixSalt b = a;
  b.model_id = "a";
  b.tenant = "bc";
  EXPECT_NE(*SerializePrefixSalt(a, {}), *SerializePrefixSalt(b, {}));
  EXPECT_NE(*HashPrefixSalt(a), *HashPrefixSalt(b));
}

TEST(PrefixHashTest, TokenChangeAffectsItsBlockAndAllLater) {
  PrefixHashOptions opt;
  opt.block_size = 4;
  const std::vector<int32_t> tokens = Iota(14);
  const std::vector<BlockHash> base = *HashPrefix(tokens, SaltA(), opt);
  for (size_t pos = 0; pos < tokens.size(); ++pos) {
    std::vector<int32_t> t = tokens;
    t[pos] ^= 1;
    const std::vector<BlockHash> changed = *HashPrefix(t, SaltA(), opt);
    for (size_t i = 0; i < base.size(); ++i) {
      if (i < pos / 4) {
        EXPECT_EQ(base[i], changed[i]) << pos << "/" << i;
      } else {
        EXPECT_NE(base[i], changed[i]) << pos << "/" << i;
      }
    }
  }
}

TEST(PrefixHashTest, PrefixChainIsPrefixOfLongerChain) {
  for (HashAlgo algo : {HashAlgo::kSha256, HashAlgo::kXxh3_128}) {
    PrefixHashOptions opt;
    opt.algo = algo;
    opt.block_size = 8;
    const std::vector<int32_t> longer = Iota(100, 1000);
    const std::vector<BlockHash> full = *HashPrefix(longer, SaltA(), opt);
    for (int n : {8, 16, 40, 41, 63, 99}) {
      const std::vector<int32_t> prefix(longer.begin(), longer.begin() + n);
      const std::vector<BlockHash> part = *HashPrefix(prefix, SaltA(), opt);
      const size_t full_blocks = n / 8;
      for (size_t i = 0; i < full_blocks; ++i) EXPECT_EQ(part[i], full[i]) << n << "/" << i;
      if (n % 8 != 0) {
        EXPECT_TRUE(part.back().partial);
        EXPECT_NE(part.back(), full[full_blocks]);
      }
    }
  }
}

TEST(PrefixHashTest, TenantsAreIsolated) {
  PrefixSalt alice = SaltA();
  alice.tenant = "alice";
  PrefixSalt bob = SaltA();
  bob.tenant = "bob";
  PrefixSalt nobody = SaltA();
  nobody.tenant = "";
  const std::vector<int32_t> tokens = Iota(1000);
  const std::vector<BlockHash> a = *HashPrefix(tokens, alice);
  const std::vector<BlockHash> b = *HashPrefix(tokens, bob);
  const std::vector<BlockHash> n = *HashPrefix(tokens, nobody);
  ASSERT_EQ(a.size(), 4u);
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < a.size(); ++j) {
      EXPECT_NE(a[i], b[j]);
      EXPECT_NE(a[i], n[j]);
    }
  }
}

TEST(PrefixHashTest, InvalidArguments) {
  PrefixHashOptions opt;
  for (int bs : {0, -1, kMaxPrefixBlockSize + 1}) {
    opt.block_size = bs;
    Status s = HashPrefix(Iota(3), SaltA(), opt).status();
    EXPECT_TRUE(s.IsInvalidArgument()) << bs;
    EXPECT_NE(s.message().find("block_size"), std::string::npos) << s.ToString();
  }
  PrefixSalt no_model = SaltA();
  no_model.model_id.clear();
  Status s = HashPrefix(Iota(3), no_model).status();
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("model id"), std::string::npos);
  EXPECT_TRUE(HashPrefixSalt(no_model).status().IsInvalidArgument());

  EXPECT_EQ(*ParseHashAlgo("sha256"), HashAlgo::kSha256);
  EXPECT_EQ(*ParseHashAlgo("xxh3_128"), HashAlgo::kXxh3_128);
  EXPECT_TRUE(ParseHashAlgo("md5").status().IsInvalidArgument());
  EXPECT_STREQ(HashAlgoName(HashAlgo::kXxh3_128), "xxh3_128");
}

}  // namespace
}  // namespace kvc
