// The client's data plane against kvcompactd with UCX restricted to one transport (UCX_TLS=tcp,
// UCX_TLS=shm), and a worker that refuses requests over its size limit whichever way they come.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "services/client/client.h"
#include "services/engine/engine_testing.h"
#include "services/transport/testing.h"
#include "tests/integration/client_cluster.h"

namespace kvc {
namespace {

namespace et = engine::testing;
using client::Client;
using client::UcxMode;
using testing::TokenRange;

// Sets an environment variable for the life of the object (workers and UCX contexts created
// meanwhile inherit it).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* old = ::getenv(name);
    if (old != nullptr) old_ = old;
    had_ = old != nullptr;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) {
      ::setenv(name_.c_str(), old_.c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

std::unique_ptr<Client> MakeClient(client::ClientOptions o, UcxMode mode) {
  o.ucx_mode = mode;
  o.inline_threshold_bytes = 0;
  auto c = Client::Create(std::move(o));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

class ClientTransportTest : public ::testing::TestWithParam<const char*> {};

TEST_P(ClientTransportTest, RoundTripWithOneUcxTransport) {
  ScopedEnv tls("UCX_TLS", GetParam());
  testing::ClusterOptions co;
  co.workers = 1;
  auto cluster = testing::ClientCluster::Start(co);
  if (!cluster.ok()) GTEST_SKIP() << "kvcompactd cannot start with UCX_TLS=" << GetParam();
  auto ucx = MakeClient((*cluster)->Options(), UcxMode::kRequired);
  const CompactionSpec spec = et::FastSpec();
  const std::vector<int32_t> tokens = TokenRange(256, 300'000);
  auto put = ucx->Compact(tokens, et::TinyCache(61, 256), spec);
  if (!put.ok() && put.status().message().find("UCX cannot start") != std::string::npos) {
    GTEST_SKIP() << put.status().ToString();
  }
  ASSERT_TRUE(put.ok()) << put.status().ToString() << "\n" << (*cluster)->LogTail(0);
  EXPECT_TRUE(put->via_ucx);
  auto fetched = ucx->Fetch(put->ref);
  ASSERT_TRUE(fetched.ok()) << fetched.status().ToString();
  EXPECT_TRUE(fetched->via_ucx);
  auto inline_copy = MakeClient((*cluster)->Options(), UcxMode::kOff)->Fetch(put->ref);
  ASSERT_TRUE(inline_copy.ok()) << inline_copy.status().ToString();
  EXPECT_EQ(transport::testing::DiffCompacted(fetched->cache, inline_copy->cache), "");
}

INSTANTIATE_TEST_SUITE_P(UcxTls, ClientTransportTest, ::testing::Values("tcp", "shm"),
                         [](const auto& info) { return std::string(info.param); });

TEST(ClientLimits, OversizedRequestIsRefusedEitherWayAndTheWorkerCarriesOn) {
  testing::ClusterOptions co;
  co.workers = 1;
  co.extra_args.insert(co.extra_args.end(), {"--max-request-bytes", "150000"});
  auto cluster = testing::ClientCluster::Start(co);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  const CompactionSpec spec = et::FastSpec();
  const KvCache big = et::TinyCache(71, 256);  // about 176 KiB of tensors
  for (UcxMode mode : {UcxMode::kOff, UcxMode::kRequired}) {
    auto c = MakeClient((*cluster)->Options(), mode);
    auto r = c->Compact(TokenRange(256, 400'000), big, spec);
    ASSERT_FALSE(r.ok()) << client::UcxModeName(mode);
    EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
    auto small =
        c->Compact(TokenRange(64, 400'000 + static_cast<int>(mode)), et::TinyCache(72, 64), spec);
    EXPECT_TRUE(small.ok()) << small.status().ToString();
  }
  auto stats = MakeClient((*cluster)->Options(), UcxMode::kOff)->Stats();
  ASSERT_TRUE(stats[0].status.ok());
  EXPECT_EQ(stats[0].value->store.puts, 2u);
  EXPECT_EQ(stats[0].value->staged_uploads, 0u);
}

}  // namespace
}  // namespace kvc
