#include "services/transport/wire.h"

#include <gtest/gtest.h>

#include <cstring>

#include "services/transport/payload.h"
#include "services/transport/staging_pool.h"
#include "services/transport/testing.h"

namespace kvc::transport {
namespace {

PayloadDescriptor KvDescriptor() {
  KvCache c = testing::MakeKvCache(testing::SmallLayout(32, DType::kF16), 4, 6, 7);
  Result<OutgoingPayload> p = MakeUploadPayload(c);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p->descriptor;
}

TEST(WireTest, DescriptorRoundTripsKvCache) {
  const PayloadDescriptor d = KvDescriptor();
  ASSERT_EQ(d.tensors.size(), 12u);  // 3 layers x (k, v, q_window, q_ref)
  Result<PayloadDescriptor> back = DecodeDescriptor(EncodeDescriptor(d));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, d);
  EXPECT_EQ(back->metadata.at("seed"), "7");
  EXPECT_EQ(back->total_bytes(), d.total_bytes());
}

TEST(WireTest, DescriptorRoundTripsCompacted) {
  CompactedCache c = testing::MakeCompactedCache(testing::SmallLayout(), 5, 3);
  Result<OutgoingPayload> p = MakeFetchPayload(c);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  Result<PayloadDescriptor> back = DecodeDescriptor(EncodeDescriptor(p->descriptor));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, p->descriptor);
  EXPECT_EQ(back->tensors[3].role, TensorRole::kOffsets);
  EXPECT_EQ(back->tensors[3].dtype, DType::kI64);
}

TEST(WireTest, EveryTruncationIsCorruption) {
  const std::string bytes = EncodeDescriptor(KvDescriptor());
  for (size_t n = 0; n < bytes.size(); ++n) {
    Result<PayloadDescriptor> r = DecodeDescriptor(std::string_view(bytes.data(), n));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes decoded";
    EXPECT_TRUE(r.status().IsCorruption()) << n << ": " << r.status().ToString();
  }
  EXPECT_TRUE(DecodeDescriptor(bytes + "x").status().IsCorruption());
}

TEST(WireTest, UnknownVersionIsNotSupported) {
  std::string bytes = EncodeDescriptor(KvDescriptor());
  const uint16_t v = kWireVersion + 1;
  std::memcpy(bytes.data() + 4, &v, 2);
  EXPECT_TRUE(DecodeDescriptor(bytes).status().IsNotSupported());
}

TEST(WireTest, AnnouncedSizeMustMatchShape) {
  PayloadDescriptor d = KvDescriptor();
  d.tensors[1].nbytes += 2;
  EXPECT_TRUE(DecodeDescriptor(EncodeDescriptor(d)).status().IsCorruption());
}

TEST(WireTest, ShapeMustFitLayout) {
  PayloadDescriptor d = KvDescriptor();
  d.tensors[4].shape[1] -= 1;  // layers.1.k with one token fewer
  d.tensors[4].nbytes = ShapeNumel(d.tensors[4].shape) * DTypeSize(d.tensors[4].dtype);
  Status st = DecodeDescriptor(EncodeDescriptor(d)).status();
  EXPECT_TRUE(st.IsInvalidArgument()) << st.ToString();
  EXPECT_NE(st.message().find("layers.1.k"), std::string::npos) << st.message();
}

TEST(WireTest, TensorsMustComeInLayerOrder) {
  PayloadDescriptor d = KvDescriptor();
  std::swap(d.tensors[0], d.tensors[4]);
  EXPECT_TRUE(DecodeDescriptor(EncodeDescriptor(d)).status().IsInvalidArgument());
}

TEST(WireTest, HugeDimensionsDoNotOverflow) {
  PayloadDescriptor d = KvDescriptor();
  d.tensors[0].shape = {int64_t{1} << 40, int64_t{1} << 40, 2};
  d.tensors[0].nbytes = 0;
  EXPECT_TRUE(DecodeDescriptor(EncodeDescriptor(d)).status().IsCorruption());
}

TEST(WireTest, FrameHeaderChecks) {
  FrameHeader h;
  h.type = FrameType::kTensor;
  h.session = 9;
  Result<FrameHeader> ok = ParseFrameHeader(&h, sizeof(h));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->session, 9u);
  EXPECT_TRUE(ParseFrameHeader(&h, sizeof(h) - 1).status().IsCorruption());
  FrameHeader bad = h;
  bad.magic = 0;
  EXPECT_TRUE(ParseFrameHeader(&bad, sizeof(bad)).status().IsCorruption());
  bad = h;
  bad.version = 99;
  EXPECT_TRUE(ParseFrameHeader(&bad, sizeof(bad)).status().IsNotSupported());
  bad = h;
  bad.type = static_cast<FrameType>(77);
  EXPECT_TRUE(ParseFrameHeader(&bad, sizeof(bad)).status().IsNotSupported());
}

// The payload conversions without UCX: copy each outgoing tensor into a staging buffer.
template <typename Build>
auto Stage(const OutgoingPayload& p, Build build) {
  auto pool = StagingPool::Create(nullptr);
  std::vector<StagingRef> bufs;
  for (const Tensor& t : p.tensors) {
    Result<StagingRef> b = pool->Acquire(t.nbytes());
    EXPECT_TRUE(b.ok());
    if (t.nbytes()) std::memcpy((*b)->data(), t.raw(), t.nbytes());
    bufs.push_back(*b);
  }
  return build(p.descriptor, bufs);
}

TEST(PayloadTest, KvCacheSurvivesStaging) {
  KvCache c = testing::MakeKvCache(testing::SmallLayout(40, DType::kBF16), 3, 0, 11);
  Result<OutgoingPayload> p = MakeUploadPayload(c);
  ASSERT_TRUE(p.ok());
  Result<KvCache> back = Stage(*p, BuildKvCache);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(testing::DiffKvCache(c, *back), "");
  EXPECT_FALSE(back->has_q_ref());
}

TEST(PayloadTest, CompactedSurvivesStaging) {
  CompactedCache c = testing::MakeCompactedCache(testing::SmallLayout(), 9, 4);
  Result<OutgoingPayload> p = MakeFetchPayload(c);
  ASSERT_TRUE(p.ok());
  Result<CompactedCache> back = Stage(*p, BuildCompactedCache);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(testing::DiffCompacted(c, *back), "");
}

TEST(PayloadTest, InvalidCacheIsRefusedBeforeSending) {
  KvCache c = testing::MakeKvCache(testing::SmallLayout(), 0, 0, 1);
  c.layers.pop_back();
  EXPECT_TRUE(MakeUploadPayload(c).status().IsInvalidArgument());
}

TEST(ChecksumTest, IsXxh3AndSensitive) {
  std::string a(1000, 'a');
  const uint64_t h = Checksum(a.data(), a.size());
  EXPECT_EQ(h, Checksum(a.data(), a.size()));
  a[500] = 'b';
  EXPECT_NE(h, Checksum(a.data(), a.size()));
  EXPECT_EQ(Checksum(nullptr, 0), 0x2d06800538d394c2ull);  // XXH3_64bits of the empty input
}

}  // namespace
}  // namespace kvc::transport
