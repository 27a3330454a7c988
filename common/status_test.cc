#include "common/status.h"

#include <gtest/gtest.h>

namespace kvc {
namespace {

Result<int> Half(int x) {
  if (x % 2) return Status::InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  KVC_ASSIGN_OR_RETURN(int h, Half(x));
  KVC_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

TEST(StatusTest, OkAndErrors) {
  Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.ToString(), "OK");
  Status e = Status::Corruption("bad checksum");
  EXPECT_FALSE(e.ok());
  EXPECT_TRUE(e.IsCorruption());
  EXPECT_EQ(e.ToString(), "corruption: bad checksum");
  EXPECT_EQ(e.WithContext("blob 7").message(), "blob 7: bad checksum");
  EXPECT_EQ(Status(Code::kOk, "ignored").ok(), true);
}

TEST(StatusTest, ResultPropagates) {
  EXPECT_EQ(*Quarter(8), 2);
  auto r = Quarter(6);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  Result<int> from_ok{Status::OK()};
  EXPECT_EQ(from_ok.status().code(), Code::kInternal);
}

}  // namespace
}  // namespace kvc
