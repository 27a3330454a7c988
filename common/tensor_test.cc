#include "common/tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace kvc {
namespace {

TEST(TensorTest, ShapesAndSharing) {
  Tensor t = Tensor::Zeros(DType::kF32, {2, 3, 4});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  Tensor alias = t;
  alias.data<float>()[5] = 7.f;
  EXPECT_EQ(t.data<float>()[5], 7.f);
  Tensor deep = t.Clone();
  deep.data<float>()[5] = 1.f;
  EXPECT_EQ(t.data<float>()[5], 7.f);
  Tensor s = t.Slice0(1);
  EXPECT_EQ(s.shape(), (Shape{3, 4}));
  s.data<float>()[0] = 3.f;
  EXPECT_EQ(t.data<float>()[12], 3.f);
  EXPECT_FALSE(t.Reshape({5, 5}).ok());
  EXPECT_EQ(t.Reshape({6, 4})->dim(0), 6);
}

TEST(TensorTest, ConversionsAndFiniteness) {
  Tensor t = Tensor::FromVector({1.f, 0.1f, -3.f, 65504.f}, {4});
  auto h = t.To(DType::kF16);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->dtype(), DType::kF16);
  auto back = h->To(DType::kF32);
  EXPECT_EQ(back->data<float>()[0], 1.f);
  EXPECT_NEAR(back->data<float>()[1], 0.1f, 1e-4);
  EXPECT_TRUE(h->AllFinite());
  t.data<float>()[2] = std::numeric_limits<float>::quiet_NaN();
  int64_t bad = -1;
  EXPECT_FALSE(t.AllFinite(&bad));
  EXPECT_EQ(bad, 2);
  EXPECT_FALSE(t.To(DType::kBF16)->AllFinite());
  t.data<float>()[2] = 1e6f;  // finite in f32, Inf in f16
  EXPECT_FALSE(t.To(DType::kF16)->AllFinite());
  EXPECT_EQ(Tensor::Zeros(DType::kI64, {3}).To(DType::kF32).status().code(), Code::kNotSupported);
}

}  // namespace
}  // namespace kvc
