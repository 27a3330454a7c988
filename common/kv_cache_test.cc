#include "common/kv_cache.h"

#include <gtest/gtest.h>

#include <limits>

namespace kvc {
namespace {

KvCache MakeCache(int L, int kv, int q, int d, int64_t T) {
  KvCache c;
  c.layout = {L, kv, q, d, DType::kF32, T};
  for (int l = 0; l < L; ++l) {
    LayerKv x;
    x.k = Tensor::Zeros(DType::kF32, {kv, T, d});
    x.v = Tensor::Zeros(DType::kF32, {kv, T, d});
    x.q_ref = Tensor::Zeros(DType::kF32, {q, 5, d});
    c.layers.push_back(x);
  }
  return c;
}

TEST(KvLayoutTest, Validation) {
  KvLayout ok{2, 2, 4, 8, DType::kF16, 16};
  EXPECT_TRUE(ok.Validate().ok());
  EXPECT_EQ(ok.group(), 2);
  KvLayout gqa = ok;
  gqa.n_q_heads = 3;
  Status s = gqa.Validate();
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("GQA"), std::string::npos);
  KvLayout dt = ok;
  dt.dtype = DType::kI32;
  EXPECT_FALSE(dt.Validate().ok());
  KvLayout t0 = ok;
  t0.tokens = 0;
  EXPECT_FALSE(t0.Validate().ok());
}

TEST(KvCacheTest, ShapesDtypesAndFiniteness) {
  KvCache c = MakeCache(2, 2, 4, 8, 16);
  EXPECT_TRUE(c.Validate().ok());
  EXPECT_TRUE(c.has_q_ref());
  EXPECT_FALSE(c.has_q_window());

  KvCache wrong_shape = MakeCache(2, 2, 4, 8, 16);
  wrong_shape.layers[1].v = Tensor::Zeros(DType::kF32, {2, 15, 8});
  Status s = wrong_shape.Validate();
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("layers.1.v"), std::string::npos) << s.ToString();

  KvCache wrong_dtype = MakeCache(2, 2, 4, 8, 16);
  wrong_dtype.layers[0].k = Tensor::Zeros(DType::kF16, {2, 16, 8});
  EXPECT_TRUE(wrong_dtype.Validate().IsInvalidArgument());

  KvCache nan = MakeCache(2, 2, 4, 8, 16);
  nan.layers[1].k.data<float>()[17] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(nan.Validate().IsInvalidArgument());
  EXPECT_TRUE(nan.Validate(/*check_finite=*/false).ok());

  KvCache partial_q = MakeCache(2, 2, 4, 8, 16);
  partial_q.layers[1].q_ref.reset();
  EXPECT_TRUE(partial_q.Validate().IsInvalidArgument());

  KvCache missing_layer = MakeCache(2, 2, 4, 8, 16);
  missing_layer.layers.pop_back();
  EXPECT_TRUE(missing_layer.Validate().IsInvalidArgument());
}

TEST(CompactedCacheTest, Validation) {
  CompactedCache c;
  c.layout = {1, 2, 2, 4, DType::kF32, 10};
  CompactedLayer l;
  l.offsets = {0, 3, 5};
  l.k = Tensor::Zeros(DType::kF32, {5, 4});
  l.v = Tensor::Zeros(DType::kF32, {5, 4});
  l.beta = Tensor::Zeros(DType::kF32, {5});
  l.beta.data<float>()[1] = -std::numeric_limits<float>::infinity();  // allowed: key switched off
  c.layers.push_back(l);
  EXPECT_TRUE(c.Validate().ok()) << c.Validate().ToString();
  EXPECT_EQ(c.total_entries(), 5);
  EXPECT_EQ(c.layers[0].budget(1), 2);

  CompactedCache bad = c;
  bad.layers[0].offsets = {0, 4, 3};
  EXPECT_FALSE(bad.Validate().ok());
  CompactedCache nan = c;
  nan.layers[0].beta = Tensor::Zeros(DType::kF32, {5});
  nan.layers[0].beta.data<float>()[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(nan.Validate().ok());
}

}  // namespace
}  // namespace kvc
