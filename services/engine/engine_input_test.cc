// Bad input gets a typed error and changes nothing: no entry, no job, no staged bytes.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "services/engine/engine.h"
#include "services/engine/engine_testing.h"
#include "services/engine/spec_hash.h"
#include "storage/testing.h"

namespace kvc::engine {
namespace {

class EngineInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = storage::TieredStore::Open(testing::StoreOptions(dir_.path().string()));
    ASSERT_TRUE(store.ok());
    EngineOptions options;
    options.max_request_bytes = 1 << 20;
    options.max_tokens = 512;
    options.max_blocks = 16;
    engine_ = std::make_unique<Engine>(
        options, std::shared_ptr<storage::TieredStore>(std::move(store).value()));
    ASSERT_TRUE(engine_->Start().ok());
  }

  // Runs `request` and checks the error code and that nothing changed.
  void ExpectRefused(CompactRequest request, Code code, const std::string& what) {
    const std::vector<std::string> chain = request.block_hashes;
    Result<CompactOutcome> out = engine_->Compact(std::move(request));
    ASSERT_FALSE(out.ok()) << what;
    EXPECT_EQ(out.status().code(), code) << what << ": " << out.status().ToString();
    EXPECT_FALSE(out.status().message().empty()) << what;
    const EngineStats s = engine_->Stats();
    EXPECT_EQ(s.store.puts, 0u) << what;
    EXPECT_EQ(s.staged_bytes, 0u) << what;
    EXPECT_EQ(s.queue_depth, 0u) << what;
    EXPECT_EQ(s.jobs_succeeded, 0u) << what;
    if (!chain.empty() && (chain.back().size() == 32)) {
      EXPECT_TRUE(engine_->Fetch(chain.back(), SpecHash(testing::FastSpec())).status().IsNotFound())
          << what;
    }
  }

  CompactRequest Good() { return testing::InlineRequest(cache_, testing::Chain(1, 2)); }

  storage::testing::TempDir dir_{"kvc-engine-input"};
  std::unique_ptr<Engine> engine_;
  KvCache cache_ = testing::TinyCache(3);
};

TEST_F(EngineInputTest, BadBlockHashLists) {
  CompactRequest r = Good();
  r.block_hashes.clear();
  ExpectRefused(r, Code::kInvalidArgument, "empty chain");
  r = Good();
  r.block_hashes = testing::Chain(1, 17);
  ExpectRefused(r, Code::kInvalidArgument, "too many blocks");
  r = Good();
  r.block_hashes.back() = engine::HexOf(r.block_hashes.back());  // 64 hex chars
  ExpectRefused(r, Code::kInvalidArgument, "hex instead of raw digest");
  r = Good();
  r.block_hashes[0].resize(16);
  ExpectRefused(r, Code::kInvalidArgument, "mixed digest sizes");
  r = Good();
  r.block_hashes.back() = "";
  ExpectRefused(r, Code::kInvalidArgument, "empty hash");
}

TEST_F(EngineInputTest, BadSpecsAndSources) {
  CompactRequest r = Good();
  r.spec.ratio = 0.5;
  ExpectRefused(r, Code::kInvalidArgument, "ratio below 1");
  r = Good();
  r.spec.heldout_fraction = 2;
  ExpectRefused(r, Code::kInvalidArgument, "heldout fraction");
  r = Good();
  r.spec.budget = 1000;  // more than T = 256
  ExpectRefused(r, Code::kInvalidArgument, "budget above T");
  r = Good();
  r.upload_session = 5;
  ExpectRefused(r, Code::kInvalidArgument, "two sources");
  r = Good();
  r.inline_payload.reset();
  ExpectRefused(r, Code::kInvalidArgument, "no source");
  r = Good();
  r.inline_payload.reset();
  r.upload_session = 99;
  ExpectRefused(r, Code::kNotFound, "unknown upload session");
  r = Good();
  r.deadline = std::chrono::milliseconds(-1);
  ExpectRefused(r, Code::kInvalidArgument, "negative deadline");
}

TEST_F(EngineInputTest, MethodsMissingTheirQueries) {
  KvCache no_ref = cache_;
  for (LayerKv& l : no_ref.layers) l.q_ref.reset();
  ExpectRefused(testing::InlineRequest(no_ref, testing::Chain(1, 2)), Code::kInvalidArgument,
                "AM without q_ref");
  KvCache no_window = cache_;
  for (LayerKv& l : no_window.layers) l.q_window.reset();
  CompactionSpec snap = testing::FastSpec();
  snap.method = Method::kSnapKv;
  ExpectRefused(testing::InlineRequest(no_window, testing::Chain(1, 2), snap),
                Code::kInvalidArgument, "SnapKV without q_window");
}

TEST_F(EngineInputTest, BadPayloads) {
  CompactRequest r = Good();
  r.inline_payload = "certainly not safetensors";
  ExpectRefused(r, Code::kCorruption, "garbage bytes");
  r = Good();
  r.inline_payload->resize(r.inline_payload->size() - 100);
  ExpectRefused(r, Code::kCorruption, "truncated payload");
  r = Good();
  r.inline_payload = std::string(2 << 20, 'x');
  ExpectRefused(r, Code::kInvalidArgument, "oversized payload");

  KvCache nan = cache_;
  nan.layers[1].k = nan.layers[1].k.Clone();
  nan.layers[1].k.data<float>()[17] = std::numeric_limits<float>::quiet_NaN();
  r = Good();
  r.inline_payload = testing::RawPayloadOf(nan);
  ExpectRefused(r, Code::kInvalidArgument, "NaN in keys");

  KvCache inf = cache_;
  inf.layers[0].q_ref = inf.layers[0].q_ref->Clone();
  inf.layers[0].q_ref->data<float>()[3] = std::numeric_limits<float>::infinity();
  r = Good();
  r.inline_payload = testing::RawPayloadOf(inf);
  ExpectRefused(r, Code::kInvalidArgument, "Inf in queries");

  KvCache ints = cache_;
  ints.layers[0].v = Tensor::Zeros(DType::kI32, ints.layers[0].v.shape());
  r = Good();
  r.inline_payload = testing::RawPayloadOf(ints);
  ExpectRefused(r, Code::kInvalidArgument, "integer values");

  KvCache shapes = cache_;
  shapes.layers[1].v = *shapes.layers[1].v.Reshape({2, 128, 32});
  r = Good();
  r.inline_payload = testing::RawPayloadOf(shapes);
  ExpectRefused(r, Code::kInvalidArgument, "k and v shapes disagree");

  ExpectRefused(testing::InlineRequest(testing::TinyCache(4, 1024), testing::Chain(1, 2)),
                Code::kInvalidArgument, "more tokens than max_tokens");
}

TEST_F(EngineInputTest, BadUploadsAreNotStaged) {
  KvCache nan = cache_;
  nan.layers[0].v = nan.layers[0].v.Clone();
  nan.layers[0].v.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(engine_->StageUpload(1, nan).IsInvalidArgument());
  EXPECT_TRUE(engine_->StageUpload(2, testing::TinyCache(4, 1024)).IsInvalidArgument());
  EXPECT_EQ(engine_->Stats().staged_uploads, 0u);
  EXPECT_EQ(engine_->Stats().staged_bytes, 0u);
}

TEST_F(EngineInputTest, BadKeysForLookupFetchDelete) {
  const std::string spec_hash = SpecHash(testing::FastSpec());
  const auto chain = testing::Chain(1, 2);
  EXPECT_TRUE(engine_->Lookup({}, spec_hash).status().IsInvalidArgument());
  EXPECT_TRUE(engine_->Lookup(chain, "short").status().IsInvalidArgument());
  EXPECT_TRUE(engine_->Lookup(testing::Chain(1, 17), spec_hash).status().IsInvalidArgument());
  EXPECT_TRUE(engine_->Fetch("abc", spec_hash).status().IsInvalidArgument());
  EXPECT_TRUE(engine_->Fetch(chain[0], engine::HexOf(spec_hash)).status().IsInvalidArgument());
  EXPECT_TRUE(engine_->Delete(chain[0], "").IsInvalidArgument());
  EXPECT_EQ(engine_->Stats().store.deletes, 0u);
}

}  // namespace
}  // namespace kvc::engine
