#include "services/rpc/errors.h"

#include <gtest/gtest.h>
#include <thrift/transport/TTransportException.h>

#include "idl/kvcompact_types.h"

namespace kvc::rpc {
namespace {

// Throws for `status` and returns what StatusFromThrift makes of the exception.
Status RoundTrip(const Status& status, int64_t* retry = nullptr) {
  try {
    ThrowAsThrift(status, std::chrono::milliseconds(250));
  } catch (const std::exception& e) {
    return StatusFromThrift(e, retry);
  }
  return Status::OK();
}

template <typename E>
bool Throws(const Status& status) {
  try {
    ThrowAsThrift(status, std::chrono::milliseconds(0));
  } catch (const E&) {
    return true;
  } catch (...) {
  }
  return false;
}

TEST(ErrorsTest, EachCodeHasItsException) {
  EXPECT_TRUE(Throws<InvalidArgument>(Status::InvalidArgument("x")));
  EXPECT_TRUE(Throws<InvalidArgument>(Status::FailedPrecondition("x")));
  EXPECT_TRUE(Throws<NotFound>(Status::NotFound("x")));
  EXPECT_TRUE(Throws<Busy>(Status::ResourceExhausted("x")));
  EXPECT_TRUE(Throws<Corruption>(Status::Corruption("x")));
  EXPECT_TRUE(Throws<Unsupported>(Status::NotSupported("x")));
  EXPECT_TRUE(Throws<DeadlineExceeded>(Status::DeadlineExceeded("x")));
  EXPECT_TRUE(Throws<Unavailable>(Status::Unavailable("x")));
  EXPECT_TRUE(Throws<Unavailable>(Status::Cancelled("x")));
  EXPECT_TRUE(Throws<InternalError>(Status::IOError("x")));
  EXPECT_TRUE(Throws<InternalError>(Status::Internal("x")));
  EXPECT_TRUE(Throws<InternalError>(Status::OK()));
}

TEST(ErrorsTest, RoundTripKeepsCodeMessageAndRetryHint) {
  for (const Status& s : {Status::InvalidArgument("bad spec"), Status::NotFound("no entry"),
                          Status::Corruption("checksum"), Status::NotSupported("v9"),
                          Status::DeadlineExceeded("late"), Status::Unavailable("stopping"),
                          Status::Internal("bug")}) {
    const Status back = RoundTrip(s);
    EXPECT_EQ(back.code(), s.code()) << s.ToString();
    EXPECT_EQ(back.message(), s.message());
  }
  int64_t retry = -1;
  const Status busy = RoundTrip(Status::ResourceExhausted("queue full"), &retry);
  EXPECT_EQ(busy.code(), Code::kResourceExhausted);
  EXPECT_EQ(retry, 250);
  EXPECT_NE(RoundTrip(Status::IOError("disk")).message().find("disk"), std::string::npos);
}

TEST(ErrorsTest, TransportAndOtherExceptions) {
  using apache::thrift::transport::TTransportException;
  EXPECT_EQ(StatusFromThrift(TTransportException(TTransportException::NOT_OPEN, "refused")).code(),
            Code::kUnavailable);
  EXPECT_EQ(StatusFromThrift(std::runtime_error("boom")).code(), Code::kInternal);
}

}  // namespace
}  // namespace kvc::rpc
