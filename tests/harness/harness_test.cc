// Tests of the real-model harness: the llama2.c loader (real checkpoint and crafted bad files),
// the compacted-prefix attention, data production and the end-to-end metrics.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "tests/harness/data.h"
#include "tests/harness/eval.h"
#include "tests/harness/llama2.h"

namespace kvc::harness {
namespace {

// ---- Helpers -----------------------------------------------------------------------------------

// The real checkpoint, loaded once; tests that need it skip when it is absent.
const Llama2Model* RealModel(std::string* why) {
  static const ModelLocation loc = FindTestModel();
  static const Result<Llama2Model> model =
      loc.path.empty() ? Result<Llama2Model>(Status::NotFound("stories260K.bin not found"))
                       : Llama2Model::Load(loc.path);
  if (loc.path.empty()) {
    *why = "test model stories260K.bin not found (tried: " + loc.tried +
           "); set KVC_TEST_MODEL to run the real-model tests";
    return nullptr;
  }
  if (!model.ok()) {
    *why = model.status().ToString();
    return nullptr;
  }
  return &*model;
}

#define REQUIRE_REAL_MODEL(var)                         \
  std::string var##_why;                                \
  const Llama2Model* var##_ptr = RealModel(&var##_why); \
  if (var##_ptr == nullptr) GTEST_SKIP() << var##_why;  \
  const Llama2Model& var = *var##_ptr

// The bytes of a llama2.c checkpoint with random weights for header `h` (vocab < 0 appends a
// separate classifier).
std::vector<uint8_t> SyntheticCheckpoint(const std::array<int32_t, 7>& h, uint64_t seed) {
  const int64_t dim = h[0], hidden = h[1], L = h[2], heads = h[3], kv = h[4];
  const int64_t vocab = std::abs(h[5]), seq = h[6];
  const int64_t kv_dim = kv * (dim / heads);
  int64_t floats = vocab * dim + L * dim * 2 + L * dim * dim * 2 + L * kv_dim * dim * 2 +
                   L * hidden * dim * 3 + dim + seq * (dim / heads);
  if (h[5] < 0) floats += vocab * dim;
  std::vector<uint8_t> bytes(28 + 4 * floats);
  std::memcpy(bytes.data(), h.data(), 28);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  for (int64_t i = 0; i < floats; ++i) {
    const float w = normal(rng);
    std::memcpy(bytes.data() + 28 + 4 * i, &w, 4);
  }
  return bytes;
}

constexpr std::array<int32_t, 7> kTinyHeader = {16, 24, 2, 4, 2, 32, 64};

std::string TempPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("kvc_harness_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

std::string WriteFile(const std::string& name, const std::vector<uint8_t>& bytes) {
  const std::string path = TempPath(name);
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  return path;
}

// Small data set for the real-model tests (context inside the 384-512 range).
DataOptions SmallOptions() {
  DataOptions o;
  o.context_tokens = 400;
  o.ref_continuations = 3;
  o.heldout_continuations = 3;
  o.continuation_tokens = 32;
  o.seed = 7;
  return o;
}

// The data set of the real-model tests, produced once; null (with a failure) if production failed.
const HarnessData* RealData(const Llama2Model& model) {
  static const Result<HarnessData> data = ProduceData(model, SmallOptions());
  if (!data.ok()) {
    ADD_FAILURE() << "ProduceData: " << data.status().ToString();
    return nullptr;
  }
  return &*data;
}

#define REQUIRE_REAL_DATA(model, var)             \
  REQUIRE_REAL_MODEL(model);                      \
  const HarnessData* var##_ptr = RealData(model); \
  ASSERT_NE(var##_ptr, nullptr);                  \
  const HarnessData& var = *var##_ptr

// Logits after feeding `tokens` behind `prefix`.
std::vector<std::vector<float>> DecodeAfter(const Llama2Model& model, const CompactedCache& prefix,
                                            const std::vector<int>& tokens) {
  auto dec = Decoder::WithPrefix(model, prefix);
  EXPECT_TRUE(dec.ok()) << dec.status().ToString();
  std::vector<std::vector<float>> out;
  for (int t : tokens) {
    out.emplace_back();
    EXPECT_TRUE(dec->Step(t, &out.back()).ok());
  }
  return out;
}

float MaxAbsDiff(const std::vector<std::vector<float>>& a,
                 const std::vector<std::vector<float>>& b) {
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) {
    for (size_t j = 0; j < a[i].size(); ++j) m = std::max(m, std::abs(a[i][j] - b[i][j]));
  }
  return m;
}

// ---- Loader ------------------------------------------------------------------------------------

TEST(Llama2Loader, Stories260KHeader) {
  REQUIRE_REAL_MODEL(model);
  const ModelConfig& c = model.config();
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.seq_len, 512);
  EXPECT_TRUE(c.shared_classifier);
  EXPECT_EQ(c.head_dim(), 8);
}

TEST(Llama2Loader, GreedyIdsFromBosMatchModelReadme) {
  REQUIRE_REAL_MODEL(model);
  // From shared/models/README.md: greedy decoding of stories260K.bin from [BOS].
  const std::vector<int> expected = {461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435,
                                     299, 362, 409, 283, 264, 283, 452, 288, 13,  431};
  auto got = GreedyFromBos(model, static_cast<int>(expected.size()));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, expected);
}

TEST(Llama2Loader, MissingFileIsNotFound) {
  auto m = Llama2Model::Load(TempPath("does_not_exist.bin"));
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsNotFound()) << m.status().ToString();
  EXPECT_NE(m.status().message().find("does_not_exist.bin"), std::string::npos);
}

TEST(Llama2Loader, DirectoryIsIOError) {
  auto m = Llama2Model::Load(std::filesystem::temp_directory_path().string());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), Code::kIOError) << m.status().ToString();
}

TEST(Llama2Loader, SyntheticCheckpointLoads) {
  const std::string path = WriteFile("ok.bin", SyntheticCheckpoint(kTinyHeader, 1));
  auto m = Llama2Model::Load(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->config().head_dim(), 4);
  EXPECT_EQ(m->config().group(), 2);
}

TEST(Llama2Loader, TruncatedFileIsCorruptionWithBothSizes) {
  std::vector<uint8_t> bytes = SyntheticCheckpoint(kTinyHeader, 1);
  const size_t full = bytes.size();
  bytes.erase(bytes.end() - 4, bytes.end());
  auto m = Llama2Model::FromBytes(bytes, "cut.bin");
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsCorruption()) << m.status().ToString();
  const std::string& msg = m.status().message();
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(full)), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(full - 4)), std::string::npos) << msg;
}

TEST(Llama2Loader, TrailingBytesAreCorruption) {
  std::vector<uint8_t> bytes = SyntheticCheckpoint(kTinyHeader, 1);
  bytes.push_back(0);
  auto m = Llama2Model::FromBytes(bytes, "long.bin");
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsCorruption());
  EXPECT_NE(m.status().message().find("trailing data"), std::string::npos);
}

TEST(Llama2Loader, ShorterThanHeaderIsCorruption) {
  std::vector<uint8_t> bytes(20, 0);
  auto m = Llama2Model::FromBytes(bytes, "tiny.bin");
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsCorruption());
  EXPECT_NE(m.status().message().find("28-byte"), std::string::npos);
}

TEST(Llama2Loader, InconsistentHeadersAreRejected) {
  struct Case {
    std::array<int32_t, 7> header;
    const char* expect;
  };
  const Case cases[] = {
      {{0, 24, 2, 4, 2, 32, 64}, "positive"},
      {{16, 24, -1, 4, 2, 32, 64}, "positive"},
      {{16, 24, 2, 4, 2, 0, 64}, "positive"},
      {{16, 24, 2, 3, 1, 32, 64}, "multiple of n_heads"},
      {{16, 24, 2, 4, 3, 32, 64}, "multiple of n_kv_heads"},
      {{12, 24, 2, 4, 2, 32, 64}, "even"},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t> bytes(28 + 4096, 0);
    std::memcpy(bytes.data(), c.header.data(), 28);
    auto m = Llama2Model::FromBytes(bytes, "bad.bin");
    ASSERT_FALSE(m.ok());
    EXPECT_TRUE(m.status().IsCorruption()) << m.status().ToString();
    EXPECT_NE(m.status().message().find(c.expect), std::string::npos) << m.status().ToString();
  }
  std::vector<uint8_t> huge(28, 0);
  const std::array<int32_t, 7> big = {1 << 20, 24, 2, 4, 2, 32, 64};
  std::memcpy(huge.data(), big.data(), 28);
  auto m = Llama2Model::FromBytes(huge, "huge.bin");
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsNotSupported()) << m.status().ToString();
}

TEST(Llama2Loader, NegativeVocabMeansSeparateClassifier) {
  std::array<int32_t, 7> h = kTinyHeader;
  h[5] = -h[5];
  auto sep = Llama2Model::FromBytes(SyntheticCheckpoint(h, 2), "sep.bin");
  ASSERT_TRUE(sep.ok()) << sep.status().ToString();
  EXPECT_FALSE(sep->config().shared_classifier);
  EXPECT_NE(sep->wcls(), sep->embedding());
  // The same header on a file without the classifier is short by vocab * dim floats.
  std::vector<uint8_t> bytes = SyntheticCheckpoint(kTinyHeader, 2);
  std::memcpy(bytes.data(), h.data(), 28);
  auto cut = Llama2Model::FromBytes(bytes, "nocls.bin");
  ASSERT_FALSE(cut.ok());
  EXPECT_TRUE(cut.status().IsCorruption());
}

TEST(Llama2Loader, NonFiniteWeightIsCorruption) {
  std::vector<uint8_t> bytes = SyntheticCheckpoint(kTinyHeader, 3);
  const float nan = std::nanf("");
  std::memcpy(bytes.data() + 28 + 4 * 10, &nan, 4);
  auto m = Llama2Model::FromBytes(bytes, "nan.bin");
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsCorruption());
  EXPECT_NE(m.status().message().find("non-finite"), std::string::npos);
}

// ---- Decoder -----------------------------------------------------------------------------------

TEST(Decoder, RejectsBadTokensAndMismatchedPrefix) {
  auto tiny = Llama2Model::FromBytes(SyntheticCheckpoint(kTinyHeader, 4), "tiny");
  ASSERT_TRUE(tiny.ok());
  Decoder dec(*tiny);
  std::vector<float> logits;
  EXPECT_TRUE(dec.Step(32, &logits).IsInvalidArgument());
  EXPECT_TRUE(dec.Step(-1, &logits).IsInvalidArgument());
  EXPECT_EQ(dec.position(), 0);

  std::array<int32_t, 7> other_header = kTinyHeader;
  other_header[4] = 4;  // 4 kv heads instead of 2
  auto other = Llama2Model::FromBytes(SyntheticCheckpoint(other_header, 4), "other");
  ASSERT_TRUE(other.ok());
  DataOptions o;
  o.context_tokens = 12;
  o.window = 4;
  o.continuation_tokens = 3;
  auto data = ProduceData(*other, o);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  auto all = KeepAllCompaction(data->cache);
  ASSERT_TRUE(all.ok());
  auto wrong = Decoder::WithPrefix(*tiny, *all);
  ASSERT_FALSE(wrong.ok());
  EXPECT_TRUE(wrong.status().IsInvalidArgument());
  EXPECT_NE(wrong.status().message().find("does not match"), std::string::npos);
  all->layers[0].offsets[1] = -1;  // broken offsets are caught by Validate
  auto broken = Decoder::WithPrefix(*other, *all);
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("compacted prefix"), std::string::npos);
}

// On the synthetic model (always runs): prefill plus decode equals a keep-all prefix plus decode.
TEST(Decoder, KeepAllPrefixEqualsFullCacheOnSyntheticModel) {
  auto tiny = Llama2Model::FromBytes(SyntheticCheckpoint(kTinyHeader, 5), "tiny");
  ASSERT_TRUE(tiny.ok());
  DataOptions o;
  o.context_tokens = 40;
  o.window = 8;
  o.ref_continuations = 2;
  o.heldout_continuations = 2;
  o.continuation_tokens = 10;
  auto data = ProduceData(*tiny, o);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  auto all = KeepAllCompaction(data->cache);
  ASSERT_TRUE(all.ok());
  auto m = EvaluateEndToEnd(*tiny, data->context, *all, data->heldout);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_LT(m->mean_kl, 1e-9);
  EXPECT_EQ(m->top1_agreement, 1.0);
  EXPECT_EQ(m->positions, 20);
  EXPECT_EQ(m->targets, 18);
}

TEST(Decoder, KeepAllPrefixReproducesFullCache) {
  REQUIRE_REAL_DATA(model, data);
  auto all = KeepAllCompaction(data.cache);
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  auto m = EvaluateEndToEnd(model, data.context, *all, data.heldout);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_LT(m->mean_kl, 1e-6);
  EXPECT_LT(m->max_kl, 1e-6);
  EXPECT_EQ(m->top1_agreement, 1.0);
  EXPECT_NEAR(m->ppl_compacted, m->ppl_full, 1e-6 * m->ppl_full);
  EXPECT_GT(m->ppl_full, 1.0);
}

TEST(Decoder, SubsetPrefixChangesTheDistribution) {
  REQUIRE_REAL_DATA(model, data);
  const int64_t T = data.cache.layout.tokens;
  std::vector<int64_t> keep = {0, 1, 2, 3};  // sinks + recent, as StreamingLLM at about 12x
  for (int64_t p = T - 28; p < T; ++p) keep.push_back(p);
  auto sub = KeepPositionsCompaction(data.cache, keep);
  ASSERT_TRUE(sub.ok()) << sub.status().ToString();
  EXPECT_EQ(sub->total_entries(), 5 * 4 * 32);
  auto m = EvaluateEndToEnd(model, data.context, *sub, data.heldout);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_GT(m->mean_kl, 1e-3);
  EXPECT_LE(m->top1_agreement, 1.0);
  EXPECT_GT(m->ppl_compacted, 0.0);
}

// beta is a log-multiplicity: one copy with beta = log 2 attends exactly like two copies.
TEST(Decoder, BetaLogTwoEqualsDuplicatedKey) {
  REQUIRE_REAL_DATA(model, data);
  const int64_t T = data.cache.layout.tokens;
  const int64_t dup = 0;  // the BOS key, which draws much attention
  std::vector<int64_t> once;
  for (int64_t p = 0; p < T - 1; ++p) once.push_back(p);
  std::vector<int64_t> twice = once;
  twice.push_back(dup);
  auto a = KeepPositionsCompaction(data.cache, twice);
  auto b = KeepPositionsCompaction(data.cache, once);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::vector<int>& cont = data.heldout[0];
  const auto plain = DecodeAfter(model, *b, cont);
  for (CompactedLayer& l : b->layers) {
    for (int h = 0; h < data.cache.layout.n_kv_heads; ++h) {
      l.beta.data<float>()[l.offsets[h] + dup] = std::log(2.0f);
    }
  }
  const auto duplicated = DecodeAfter(model, *a, cont);
  const auto biased = DecodeAfter(model, *b, cont);
  EXPECT_LT(MaxAbsDiff(duplicated, biased), 1e-4f);
  // The duplication matters: without the bias the logits move far more than the tolerance.
  EXPECT_GT(MaxAbsDiff(duplicated, plain), 1e-2f);
}

TEST(Decoder, LiveTokensContinueAtSourceLength) {
  REQUIRE_REAL_DATA(model, data);
  const int64_t T = data.cache.layout.tokens;
  auto all = KeepAllCompaction(data.cache);
  ASSERT_TRUE(all.ok());
  auto dec = Decoder::WithPrefix(model, *all);
  ASSERT_TRUE(dec.ok());
  EXPECT_EQ(dec->position(), T);
  EXPECT_EQ(dec->prefix_tokens(), T);
  const int token = data.heldout[0][0];
  std::vector<float> logits;
  StepCapture live, fresh;
  ASSERT_TRUE(dec->Step(token, &logits, &live).ok());
  EXPECT_EQ(dec->position(), T + 1);
  // Layer 0 sees only the embedding, so its key at position T is the position-0 key rotated by
  // T; the rotation is not the identity at T.
  Decoder at_zero(model);
  ASSERT_TRUE(at_zero.Step(token, &logits, &fresh).ok());
  std::vector<float> rotated = fresh.k[0];
  ApplyRope(rotated.data(), model.config().n_kv_heads, model.config().head_dim(), T);
  float diff_rotated = 0.0f, diff_plain = 0.0f;
  for (size_t i = 0; i < rotated.size(); ++i) {
    diff_rotated = std::max(diff_rotated, std::abs(rotated[i] - live.k[0][i]));
    diff_plain = std::max(diff_plain, std::abs(fresh.k[0][i] - live.k[0][i]));
  }
  EXPECT_LT(diff_rotated, 1e-5f);
  EXPECT_GT(diff_plain, 1e-2f);
}

// ---- Data production ---------------------------------------------------------------------------

TEST(HarnessData, ShapesQueriesAndMetadata) {
  REQUIRE_REAL_DATA(model, data);
  const DataOptions o = SmallOptions();
  const KvCache& c = data.cache;
  ASSERT_TRUE(c.Validate().ok());
  EXPECT_EQ(c.layout.tokens, o.context_tokens);
  ASSERT_EQ(data.context.size(), size_t(o.context_tokens));
  EXPECT_EQ(data.context[0], kBosToken);
  ASSERT_TRUE(c.has_q_window() && c.has_q_ref());
  EXPECT_EQ(c.layers[0].q_window->shape(), (Shape{8, o.window, 8}));
  const int64_t n_ref = o.ref_continuations * o.continuation_tokens + o.context_tokens;
  EXPECT_EQ(c.layers[0].q_ref->shape(), (Shape{8, n_ref, 8}));
  ASSERT_EQ(data.heldout.size(), size_t(o.heldout_continuations));
  for (const auto& h : data.heldout) EXPECT_EQ(h.size(), size_t(o.continuation_tokens));
  EXPECT_NE(data.heldout[0], data.heldout[1]);
  ASSERT_EQ(data.heldout_queries.size(), size_t(5));
  EXPECT_EQ(data.heldout_queries[0].shape(),
            (Shape{8, o.heldout_continuations * o.continuation_tokens, 8}));
  EXPECT_EQ(c.metadata.at("model"), "stories260K");
  EXPECT_EQ(c.metadata.at("tokens"), std::to_string(o.context_tokens));
  EXPECT_EQ(c.metadata.at("rope_theta"), "10000");
  EXPECT_EQ(c.metadata.at("tokens_fnv1a64").size(), 16u);
}

// q_window and the K cache hold what a direct decode of the context computes, in head-major order.
TEST(HarnessData, WindowQueriesAndKeysMatchDirectDecode) {
  REQUIRE_REAL_DATA(model, data);
  const int64_t T = data.cache.layout.tokens, W = SmallOptions().window;
  const int d = 8, layer = 3, q_head = 5, kv_head = 2;
  Decoder dec(model);
  std::vector<float> logits;
  StepCapture cap;
  for (int64_t p = 0; p < T; ++p) {
    ASSERT_TRUE(dec.Step(data.context[p], &logits, &cap).ok());
    if (p == T - 3) {
      const float* qw = data.cache.layers[layer].q_window->data<float>();
      for (int j = 0; j < d; ++j) {
        EXPECT_EQ(qw[(q_head * W + (W - 3)) * d + j], cap.q[layer][q_head * d + j]);
      }
      const float* k = data.cache.layers[layer].k.data<float>();
      for (int j = 0; j < d; ++j)
        EXPECT_EQ(k[(kv_head * T + p) * d + j], cap.k[layer][kv_head * d + j]);
    }
  }
}

TEST(HarnessData, DeterministicPerSeedAndValidated) {
  auto tiny = Llama2Model::FromBytes(SyntheticCheckpoint(kTinyHeader, 6), "tiny");
  ASSERT_TRUE(tiny.ok());
  DataOptions o;
  o.context_tokens = 30;
  o.window = 4;
  o.continuation_tokens = 5;
  auto a = ProduceData(*tiny, o);
  auto b = ProduceData(*tiny, o);
  o.seed = 99;
  auto c = ProduceData(*tiny, o);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->context, b->context);
  EXPECT_EQ(a->heldout, b->heldout);
  EXPECT_NE(a->context, c->context);
  EXPECT_EQ(0, std::memcmp(a->cache.layers[1].q_ref->raw(), b->cache.layers[1].q_ref->raw(),
                           a->cache.layers[1].q_ref->nbytes()));
  o.window = 31;
  auto bad = ProduceData(*tiny, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("window"), std::string::npos);
}

TEST(Sampler, LowTemperatureIsGreedyAndSeedsRepeat) {
  std::vector<float> logits = {0.1f, 2.0f, 1.9f, -1.0f};
  Sampler cold(3, 1e-3f);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(cold.Sample(logits), 1);
  Sampler s1(11, 1.0f), s2(11, 1.0f);
  std::vector<int> counts(4, 0);
  for (int i = 0; i < 2000; ++i) {
    const int t = s1.Sample(logits);
    EXPECT_EQ(t, s2.Sample(logits));
    ++counts[t];
  }
  // softmax(logits) = {0.07, 0.48, 0.43, 0.02}: every token is drawn, the top two most often.
  EXPECT_GT(counts[0], 60);
  EXPECT_GT(counts[1], 850);
  EXPECT_GT(counts[2], 750);
  EXPECT_GT(counts[3], 10);
}

// ---- Metrics -----------------------------------------------------------------------------------

TEST(Metrics, AttentionFidelityExactForKeepAllLowerForSubset) {
  REQUIRE_REAL_DATA(model, data);
  auto all = KeepAllCompaction(data.cache);
  ASSERT_TRUE(all.ok());
  auto f = MeasureAttentionFidelity(data.cache, data.heldout_queries, *all);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->heads, 5 * 4);
  EXPECT_GT(f->min_cosine, 1.0 - 1e-9);
  EXPECT_LT(f->mean_rel_l2, 1e-9);
  EXPECT_LT(f->mean_mass_error, 1e-9);
  auto sub = KeepPositionsCompaction(data.cache, {0, 1, 2, 3, 390, 391, 392, 393});
  ASSERT_TRUE(sub.ok());
  auto g = MeasureAttentionFidelity(data.cache, data.heldout_queries, *sub);
  ASSERT_TRUE(g.ok());
  EXPECT_LT(g->mean_cosine, 0.999);
  EXPECT_LE(g->min_cosine, g->p10_cosine);
  EXPECT_LE(g->p10_cosine, g->mean_cosine);
  EXPECT_GT(g->mean_mass_error, 0.1);
}

TEST(Metrics, RejectsMismatchedInputs) {
  REQUIRE_REAL_DATA(model, data);
  auto all = KeepAllCompaction(data.cache);
  ASSERT_TRUE(all.ok());
  std::vector<int> shorter(data.context.begin(), data.context.end() - 1);
  auto m = EvaluateEndToEnd(model, shorter, *all, data.heldout);
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(m.status().IsInvalidArgument());
  EXPECT_NE(m.status().message().find("source tokens"), std::string::npos);
  auto none = EvaluateEndToEnd(model, data.context, *all, {});
  EXPECT_TRUE(none.status().IsInvalidArgument());
  FullReference empty;
  empty.context_tokens = data.cache.layout.tokens;
  EXPECT_TRUE(EvaluateAgainst(model, empty, *all).status().IsInvalidArgument());
  std::vector<Tensor> few(data.heldout_queries.begin(), data.heldout_queries.end() - 1);
  EXPECT_TRUE(MeasureAttentionFidelity(data.cache, few, *all).status().IsInvalidArgument());
}

TEST(Metrics, GatherRejectsBadPositions) {
  auto tiny = Llama2Model::FromBytes(SyntheticCheckpoint(kTinyHeader, 8), "tiny");
  ASSERT_TRUE(tiny.ok());
  DataOptions o;
  o.context_tokens = 12;
  o.window = 4;
  o.continuation_tokens = 3;
  auto data = ProduceData(*tiny, o);
  ASSERT_TRUE(data.ok());
  auto bad = KeepPositionsCompaction(data->cache, {0, 12});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("outside [0, 12)"), std::string::npos);
  std::vector<int64_t> too_many(13, 0);
  EXPECT_TRUE(KeepPositionsCompaction(data->cache, too_many).status().IsInvalidArgument());
}

}  // namespace
}  // namespace kvc::harness
