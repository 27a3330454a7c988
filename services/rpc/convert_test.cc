#include "services/rpc/convert.h"

#include <gtest/gtest.h>

#include <limits>

#include "services/engine/spec_hash.h"

namespace kvc::rpc {
namespace {

TEST(ConvertTest, DefaultSpecTravelsWithoutOptions) {
  const Spec wire = SpecToThrift(CompactionSpec{});
  EXPECT_EQ(wire.method, "am");
  EXPECT_TRUE(wire.options.empty());
  // The IDL's defaults are the spec's defaults.
  const Spec idl_default;
  EXPECT_EQ(SpecFromThrift(idl_default)->ToJson(), CompactionSpec{}.ToJson());
}

TEST(ConvertTest, EverySpecFieldRoundTrips) {
  CompactionSpec s;
  s.method = Method::kD2o;
  s.ratio = 12.5;
  s.budget = 77;
  s.allocator = Allocator::kPyramid;
  s.heldout_fraction = 0.3;
  s.seed = std::numeric_limits<uint64_t>::max() - 5;  // needs all 64 bits
  s.threads = 3;
  s.am.selection = AmSelection::kScores;
  s.am.selector = Method::kH2o;
  s.am.fit_beta = false;
  s.am.ridge = 1e-3;
  s.am.refine_rounds = 2;
  s.am.omp_fast_schedule = {{100, 1, 1}, {std::numeric_limits<int64_t>::max(), 8, 3}};
  s.am.keys_as_queries = true;
  s.okdmd.lambda = 0.9;
  s.okdmd.k_modes = 4;
  s.snapkv.pooling = Pooling::kMax;
  s.dynamickv.progressive = true;
  s.dynamickv.radio_max = 2.25;
  s.d2o.merge = false;
  s.d2o.uncompressed_layers = {};
  s.pyramid.beta = 7;
  s.h2o.recent_fraction = 0.125;
  s.streaming.sinks = 2;
  s.gate.min_cosine = 0.97;
  s.gate.escalation = 2;
  s.gate.max_rounds = 1;
  const Spec wire = SpecToThrift(s);
  Result<CompactionSpec> back = SpecFromThrift(wire);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ToJson(), s.ToJson());
  EXPECT_EQ(back->threads, 3);
  EXPECT_EQ(engine::SpecHash(*back), engine::SpecHash(s));
  EXPECT_EQ(wire.options.at("d2o.uncompressed_layers"), "");
  EXPECT_EQ(wire.options.at("am.omp_fast_schedule"), "100:1:1,max:8:3");
}

TEST(ConvertTest, EveryOptionKeyRejectsBadValuesWithoutChanges) {
  const std::vector<std::string> keys = SpecOptionKeys();
  EXPECT_GE(keys.size(), 30u);
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  EXPECT_TRUE(NonDefaultSpecOptions(CompactionSpec{}).empty());
  for (const std::string& key : keys) {
    CompactionSpec s;
    EXPECT_TRUE(ApplySpecOption(&s, key, "\x01not a value").IsInvalidArgument()) << key;
    EXPECT_EQ(s.ToJson(), CompactionSpec{}.ToJson()) << key << " changed on a bad value";
  }
}

TEST(ConvertTest, BadOptionsAndNames) {
  Spec wire;
  wire.options["am.ridgee"] = "1";
  EXPECT_TRUE(SpecFromThrift(wire).status().IsInvalidArgument());
  wire.options.clear();
  wire.options["okdmd.k_modes"] = "12x";
  EXPECT_TRUE(SpecFromThrift(wire).status().IsInvalidArgument());
  wire.options.clear();
  wire.options["d2o.merge"] = "yes";
  EXPECT_TRUE(SpecFromThrift(wire).status().IsInvalidArgument());
  wire.options.clear();
  wire.options["am.omp_fast_schedule"] = "10:1";
  EXPECT_TRUE(SpecFromThrift(wire).status().IsInvalidArgument());
  wire.options.clear();
  wire.method = "magic";
  EXPECT_TRUE(SpecFromThrift(wire).status().IsNotSupported());
  wire.method = "AM";  // names are case-insensitive
  EXPECT_TRUE(SpecFromThrift(wire).ok());
  wire.allocator = "nope";
  EXPECT_TRUE(SpecFromThrift(wire).status().IsNotSupported());
}

TEST(ConvertTest, RequestSourcesAndDeadline) {
  CompactRequest wire;
  wire.block_hashes = {std::string(32, 'a')};
  wire.__set_inline_payload("bytes");
  wire.deadline_ms = 250;
  Result<engine::CompactRequest> r = RequestFromThrift(wire);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r->inline_payload, "bytes");
  EXPECT_FALSE(r->upload_session.has_value());
  EXPECT_EQ(r->deadline.count(), 250);
  wire.__set_upload_session(-2);  // the u64 session's bits
  r = RequestFromThrift(wire);
  EXPECT_EQ(*r->upload_session, std::numeric_limits<uint64_t>::max() - 1);
  wire.deadline_ms = -1;
  EXPECT_TRUE(RequestFromThrift(wire).status().IsInvalidArgument());
}

TEST(ConvertTest, ManifestRoundTrips) {
  engine::EntryInfo e;
  e.block_hash = std::string(32, '\x07');
  e.spec_hash = std::string(32, '\x09');
  e.layout = KvLayout{4, 2, 8, 64, DType::kBF16, 4096};
  e.entries = 512;
  e.method = "snapkv";
  e.created_ms = 1700000000123;
  e.fidelity.measured = true;
  e.fidelity.mean_cosine = 0.995;
  e.fidelity.gate_requested = true;
  e.fidelity.gate_passed = false;
  e.fidelity.gate_rounds = 3;
  e.payload_bytes = 123456;
  e.attributes = {{"tenant", "t"}};
  const Manifest wire = ManifestToThrift(e);
  EXPECT_EQ(wire.layout.dtype, "BF16");
  Result<engine::EntryInfo> back = ManifestFromThrift(wire);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->layout, e.layout);
  EXPECT_EQ(back->entries, e.entries);
  EXPECT_EQ(back->created_ms, e.created_ms);
  EXPECT_FALSE(back->fidelity.gate_passed);
  EXPECT_EQ(back->fidelity.gate_rounds, 3);
  EXPECT_EQ(back->attributes, e.attributes);
  Manifest bad = wire;
  bad.layout.dtype = "F64";
  EXPECT_TRUE(ManifestFromThrift(bad).status().IsNotSupported());
}

TEST(ConvertTest, JobStates) {
  engine::JobInfo job;
  job.id = 9;
  job.state = engine::JobState::kFailed;
  job.error = Status::DeadlineExceeded("too slow");
  JobStatus wire = JobToThrift(job);
  EXPECT_EQ(wire.state, JobState::FAILED);
  EXPECT_EQ(wire.error_code, "deadline_exceeded");
  EXPECT_EQ(wire.error_message, "too slow");
  EXPECT_FALSE(wire.__isset.result);
  job.state = engine::JobState::kSucceeded;
  job.error = Status::OK();
  job.outcome = engine::CompactOutcome{};
  job.outcome->stored = true;
  wire = JobToThrift(job);
  EXPECT_EQ(wire.state, JobState::SUCCEEDED);
  EXPECT_TRUE(wire.__isset.result);
  EXPECT_TRUE(wire.result.stored);
  EXPECT_TRUE(wire.error_code.empty());
}

}  // namespace
}  // namespace kvc::rpc
