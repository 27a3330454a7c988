// The client's routing, retries, deadlines and error mapping against fake workers that fail on
// purpose (fake_worker.h).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "services/client/client.h"
#include "services/client/fake_worker.h"
#include "services/engine/spec_hash.h"
#include "services/rpc/convert.h"
#include "services/transport/testing.h"

namespace kvc::client {
namespace {

using std::chrono::milliseconds;
using testing::FakeWorker;
using testing::Script;
using Ms = std::chrono::duration<double, std::milli>;

std::vector<int32_t> Tokens(int n, int32_t first = 1) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

class ClientFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 3; ++i) {
      fakes_.push_back(FakeWorker::Start());
      ASSERT_NE(fakes_.back(), nullptr);
    }
    layout_ = transport::testing::SmallLayout(64);
  }

  ClientOptions Options() const {
    ClientOptions o;
    for (const auto& f : fakes_) o.workers.push_back(*ParseWorkerAddress(f->address()));
    o.block_size = 16;
    o.ucx_mode = UcxMode::kOff;
    o.backoff_base = milliseconds(5);
    o.backoff_max = milliseconds(40);
    o.timeouts.lookup = milliseconds(900);
    o.timeouts.admin = milliseconds(900);
    o.jitter_seed = 1;
    return o;
  }

  std::unique_ptr<Client> MakeClient(const ClientOptions& o) {
    Result<std::unique_ptr<Client>> c = Client::Create(o);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c).value() : nullptr;
  }

  // The fake behind a worker id.
  FakeWorker* Fake(const std::string& id) {
    for (auto& f : fakes_) {
      if (id == f->address()) return f.get();
    }
    ADD_FAILURE() << "no fake for " << id;
    return nullptr;
  }

  // The fakes in the rendezvous order of `tokens`.
  std::vector<FakeWorker*> Route(Client& c, const std::vector<int32_t>& tokens) {
    Result<PrefixChain> chain = c.Chain(tokens, layout_, spec_);
    EXPECT_TRUE(chain.ok());
    std::vector<FakeWorker*> out;
    for (const std::string& id : c.RouteOf(*chain)) out.push_back(Fake(id));
    return out;
  }

  std::vector<std::unique_ptr<FakeWorker>> fakes_;
  KvLayout layout_;
  CompactionSpec spec_;
};

TEST_F(ClientFaultTest, LongerRequestWithTheSamePrefixRoutesToTheSameWorker) {
  auto client = MakeClient(Options());
  int differing_homes = 0;
  for (int32_t start = 0; start < 40; ++start) {
    const std::vector<int32_t> shorter = Tokens(20, start * 1000);
    std::vector<int32_t> longer = Tokens(64, start * 1000);
    EXPECT_EQ(Route(*client, shorter)[0], Route(*client, longer)[0]);
    if (Route(*client, shorter)[0] != Route(*client, Tokens(20, 7))[0]) ++differing_homes;
  }
  EXPECT_GT(differing_homes, 0) << "every key landed on one worker";
}

TEST_F(ClientFaultTest, RefusedWorkerFailsOverInRendezvousOrder) {
  auto client = MakeClient(Options());
  const std::vector<int32_t> tokens = Tokens(40);
  const std::vector<FakeWorker*> route = Route(*client, tokens);
  route[0]->Stop();
  route[1]->SetLookupMatch(2);
  Result<LookupReply> r = client->Lookup(tokens, layout_, spec_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->matched_blocks, 2u);
  EXPECT_EQ(r->matched_tokens, 32);
  EXPECT_EQ(r->ref.worker, route[1]->address());
  EXPECT_EQ(route[1]->calls("lookup"), 1);
}

TEST_F(ClientFaultTest, NoWorkerMeansRecompute) {
  ClientOptions o = Options();
  auto client = MakeClient(o);
  for (auto& f : fakes_) f->Stop();
  const auto start = std::chrono::steady_clock::now();
  Result<LookupReply> r = client->Lookup(Tokens(40), layout_, spec_);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(IsRecompute(r.status())) << r.status().ToString();
  EXPECT_TRUE(r.status().ToString().starts_with("unavailable: recompute")) << r.status().ToString();
  EXPECT_LT(Ms(std::chrono::steady_clock::now() - start).count(), 900 + 200);
  // Every worker is named in the message, so an operator can tell what happened.
  for (auto& f : fakes_) {
    EXPECT_NE(r.status().message().find(f->address()), std::string::npos) << r.status().ToString();
  }
  Result<CompactReply> c =
      client->Compact(Tokens(64), transport::testing::MakeKvCache(layout_, 8, 8, 1), spec_);
  EXPECT_TRUE(IsRecompute(c.status())) << c.status().ToString();
}

TEST_F(ClientFaultTest, InvalidArgumentIsNotRetried) {
  auto client = MakeClient(Options());
  const std::vector<int32_t> tokens = Tokens(40);
  const std::vector<FakeWorker*> route = Route(*client, tokens);
  route[0]->SetScript("lookup", Script{.error = Status::InvalidArgument("bad chain")});
  Result<LookupReply> r = client->Lookup(tokens, layout_, spec_);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
  EXPECT_NE(r.status().message().find("bad chain"), std::string::npos);
  EXPECT_NE(r.status().message().find(route[0]->address()), std::string::npos);
  EXPECT_EQ(route[1]->total_calls() + route[2]->total_calls(), 0);
}

TEST_F(ClientFaultTest, TypedErrorsMapToTheirCodes) {
  auto client = MakeClient(Options());
  const std::vector<int32_t> tokens = Tokens(40);
  FakeWorker* home = Route(*client, tokens)[0];
  const std::pair<Status, Code> cases[] = {
      {Status::NotSupported("unknown method"), Code::kNotSupported},
      {Status::Corruption("checksum"), Code::kCorruption},
      {Status::NotFound("gone"), Code::kNotFound},
      {Status::FailedPrecondition("gate"), Code::kInvalidArgument},  // the IDL folds it in
  };
  for (const auto& [error, code] : cases) {
    home->SetScript("lookup", Script{.error = error});
    Result<LookupReply> r = client->Lookup(tokens, layout_, spec_);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), code) << r.status().ToString();
  }
}

TEST_F(ClientFaultTest, BusyMovesOnAndIsNotAskedAgainBeforeRetryAfter) {
  ClientOptions o = Options();
  o.workers = {*ParseWorkerAddress(fakes_[0]->address())};
  o.timeouts.lookup = milliseconds(3000);
  auto client = MakeClient(o);
  fakes_[0]->SetScript("lookup", Script{.error = Status::ResourceExhausted("queue full"),
                                        .retry_after = milliseconds(300),
                                        .times = 1});
  const auto start = std::chrono::steady_clock::now();
  Result<LookupReply> r = client->Lookup(Tokens(40), layout_, spec_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_GE(Ms(std::chrono::steady_clock::now() - start).count(), 295);
  EXPECT_EQ(fakes_[0]->calls("lookup"), 2);

  // With a retry-after longer than the budget the client gives up at once, saying why.
  fakes_[0]->SetScript("lookup", Script{.error = Status::ResourceExhausted("queue full"),
                                        .retry_after = milliseconds(10000)});
  const auto again = std::chrono::steady_clock::now();
  Result<LookupReply> busy = client->Lookup(Tokens(40), layout_, spec_);
  EXPECT_TRUE(IsRecompute(busy.status())) << busy.status().ToString();
  EXPECT_NE(busy.status().message().find("queue full"), std::string::npos);
  EXPECT_LT(Ms(std::chrono::steady_clock::now() - again).count(), 500);
}

TEST_F(ClientFaultTest, BusyWorkerIsSkippedForTheNext) {
  auto client = MakeClient(Options());
  const std::vector<int32_t> tokens = Tokens(40);
  const std::vector<FakeWorker*> route = Route(*client, tokens);
  route[0]->SetScript("compact", Script{.error = Status::ResourceExhausted("queue full"),
                                        .retry_after = milliseconds(5000)});
  const auto start = std::chrono::steady_clock::now();
  Result<CompactReply> r = client->Compact(
      tokens, transport::testing::MakeKvCache(transport::testing::SmallLayout(40), 8, 8, 3), spec_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->worker, route[1]->address());
  EXPECT_EQ(r->attempts, 2);
  EXPECT_LT(Ms(std::chrono::steady_clock::now() - start).count(), 1000);
}

TEST_F(ClientFaultTest, HungWorkerCostsOneShareAndIsThenAvoided) {
  auto client = MakeClient(Options());  // lookup budget 900 ms, 3 attempts: 300 ms a share
  const std::vector<int32_t> tokens = Tokens(40);
  const std::vector<FakeWorker*> route = Route(*client, tokens);
  route[0]->SetScript("lookup", Script{.delay = milliseconds(1200)});
  route[1]->SetLookupMatch(1);
  auto start = std::chrono::steady_clock::now();
  Result<LookupReply> r = client->Lookup(tokens, layout_, spec_);
  const double first_ms = Ms(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->ref.worker, route[1]->address());
  EXPECT_GE(first_ms, 250);
  EXPECT_LT(first_ms, 900);
  // Now suspect: the next lookup of the same key goes to the others first and is fast.
  start = std::chrono::steady_clock::now();
  r = client->Lookup(tokens, layout_, spec_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_LT(Ms(std::chrono::steady_clock::now() - start).count(), 200);
  EXPECT_EQ(route[0]->calls("lookup"), 1);
}

TEST_F(ClientFaultTest, DeadlineHoldsWhenEveryWorkerHangs) {
  auto client = MakeClient(Options());
  for (auto& f : fakes_) f->SetScript("lookup", Script{.delay = milliseconds(1500)});
  const auto start = std::chrono::steady_clock::now();
  Result<LookupReply> r = client->Lookup(Tokens(40), layout_, spec_);
  const double ms = Ms(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(IsRecompute(r.status())) << r.status().ToString();
  EXPECT_LT(ms, 900 + 150);
  EXPECT_GE(ms, 700);
}

TEST_F(ClientFaultTest, RestartedWorkerIsReachedOnAFreshConnection) {
  ClientOptions o = Options();
  o.workers = {*ParseWorkerAddress(fakes_[0]->address())};
  auto client = MakeClient(o);
  ASSERT_TRUE(client->Lookup(Tokens(40), layout_, spec_).ok());  // leaves a pooled connection
  ASSERT_TRUE(fakes_[0]->Restart());                             // closes it
  Result<LookupReply> r = client->Lookup(Tokens(40), layout_, spec_);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(fakes_[0]->calls("lookup"), 2);
}

// Client-side TCP sockets to `port` in /proc/net/tcp (any state: open ones and TIME_WAIT
// remnants of closed ones), so a client that reconnected per call would show many.
// TCP sockets to `port` on this host ("local remote" per /proc/net/tcp line), in any state: a
// connection the client closed stays listed (TIME_WAIT) for a minute.
std::set<std::string> SocketsTo(uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  char hex[8];
  std::snprintf(hex, sizeof(hex), ":%04X", port);
  std::set<std::string> out;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote;
    fields >> slot >> local >> remote;
    if (remote.ends_with(hex)) out.insert(local + " " + remote);
  }
  return out;
}

// Sockets to `port` opened since `before` was taken. /proc/net/tcp is host-wide: sockets that
// earlier tests left in TIME_WAIT towards a server that had the same ephemeral port are in
// `before` and do not count.
int NewSocketsTo(uint16_t port, const std::set<std::string>& before) {
  int n = 0;
  for (const std::string& s : SocketsTo(port)) n += before.count(s) == 0;
  return n;
}

TEST_F(ClientFaultTest, ConnectionsAreReused) {
  ClientOptions o = Options();
  o.workers = {*ParseWorkerAddress(fakes_[0]->address())};
  auto client = MakeClient(o);
  const std::set<std::string> before = SocketsTo(fakes_[0]->port());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(client->Lookup(Tokens(40, i), layout_, spec_).ok());
  EXPECT_EQ(NewSocketsTo(fakes_[0]->port(), before), 1);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) EXPECT_TRUE(client->Lookup(Tokens(40, t), layout_, spec_).ok());
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(fakes_[0]->calls("lookup"), 250);
  // At most one connection per concurrent caller, all kept (max_idle_connections is 4).
  EXPECT_GE(NewSocketsTo(fakes_[0]->port(), before), 1);
  EXPECT_LE(NewSocketsTo(fakes_[0]->port(), before), 4);
}

TEST_F(ClientFaultTest, CompactSendsTheChainSpecAndInlineCache) {
  ClientOptions o = Options();
  o.tenant = "tenant-a";
  o.model_id = "model-x";
  auto client = MakeClient(o);
  const KvLayout layout = transport::testing::SmallLayout(40);
  const KvCache cache = transport::testing::MakeKvCache(layout, 8, 8, 5);
  CompactionSpec spec;
  spec.method = Method::kSnapKv;
  spec.ratio = 4;
  spec.snapkv.kernel = 5;
  CallOptions call;
  call.request_id = "req-1";
  call.timeout = milliseconds(5000);
  const std::vector<int32_t> tokens = Tokens(40);
  Result<CompactReply> r = client->Compact(tokens, cache, spec, call);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  FakeWorker* home = Fake(r->worker);
  ASSERT_NE(home, nullptr);
  EXPECT_EQ(r->worker, Route(*client, tokens)[0]->address());
  ASSERT_EQ(home->compact_requests().size(), 1u);
  const rpc::CompactRequest req = home->compact_requests()[0];
  const PrefixChain chain = *client->Chain(tokens, layout, spec);
  EXPECT_EQ(req.block_hashes, chain.block_hashes);
  EXPECT_EQ(req.block_hashes.size(), 3u);  // 16 + 16 + a partial 8
  EXPECT_EQ(req.tenant, "tenant-a");
  EXPECT_EQ(req.model, "model-x");
  EXPECT_EQ(req.request_id, "req-1");
  EXPECT_GT(req.deadline_ms, 0);
  EXPECT_LE(req.deadline_ms, 5000);
  Result<CompactionSpec> sent = rpc::SpecFromThrift(req.spec);
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(engine::SpecHash(*sent), engine::SpecHash(spec));
  EXPECT_FALSE(req.__isset.upload_session);
  ASSERT_TRUE(req.__isset.inline_payload);
  EXPECT_FALSE(r->via_ucx);
  EXPECT_EQ(r->ref.block_hash, chain.block_hashes.back());
  EXPECT_EQ(r->ref.route_hash, chain.block_hashes.front());

  // Another tenant's chain for the same tokens shares nothing.
  ClientOptions other = o;
  other.tenant = "tenant-b";
  auto client_b = MakeClient(other);
  const PrefixChain chain_b = *client_b->Chain(tokens, layout, spec);
  for (size_t i = 0; i < chain.block_hashes.size(); ++i) {
    EXPECT_NE(chain.block_hashes[i], chain_b.block_hashes[i]);
  }
}

TEST_F(ClientFaultTest, CompactRejectsTokenCountMismatchLocally) {
  auto client = MakeClient(Options());
  Result<CompactReply> r = client->Compact(
      Tokens(39), transport::testing::MakeKvCache(transport::testing::SmallLayout(40), 8, 8, 5),
      spec_);
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
  for (auto& f : fakes_) EXPECT_EQ(f->total_calls(), 0);
}

TEST_F(ClientFaultTest, LookupFansOutAndFetchFollowsTheHit) {
  auto client = MakeClient(Options());
  const std::vector<int32_t> tokens = Tokens(64);
  const std::vector<FakeWorker*> route = Route(*client, tokens);
  route[0]->SetLookupMatch(0);  // a miss at home ...
  route[1]->SetLookupMatch(3);  // ... the entry was written to the fallback while home was down
  const CompactedCache entry = transport::testing::MakeCompactedCache(layout_, 4, 9);
  route[1]->SetEntry(entry);
  Result<PrefixHit> hit = client->FetchPrefix(tokens, layout_, spec_);
  ASSERT_TRUE(hit.ok()) << hit.status().ToString();
  EXPECT_EQ(hit->lookup.matched_blocks, 3u);
  EXPECT_EQ(hit->lookup.workers_answered, 2);
  EXPECT_EQ(hit->fetch.worker, route[1]->address());
  EXPECT_EQ(transport::testing::DiffCompacted(hit->fetch.cache, entry), "");
  EXPECT_EQ(route[2]->total_calls(), 0);

  // A full match at home needs no second opinion.
  route[0]->SetLookupMatch(4);
  Result<LookupReply> full = client->Lookup(tokens, layout_, spec_);
  ASSERT_TRUE(full.ok());
  EXPECT_EQ(full->matched_blocks, 4u);
  EXPECT_EQ(full->workers_answered, 1);
}

TEST_F(ClientFaultTest, FetchNotFoundAndHolderDown) {
  auto client = MakeClient(Options());
  const std::vector<int32_t> tokens = Tokens(64);
  const std::vector<FakeWorker*> route = Route(*client, tokens);
  const PrefixChain chain = *client->Chain(tokens, layout_, spec_);
  EntryRef ref{chain.block_hashes.back(), chain.spec_hash, chain.route_hash(), route[0]->address(),
               0};
  Result<FetchReply> missing = client->Fetch(ref);
  EXPECT_TRUE(missing.status().IsNotFound()) << missing.status().ToString();
  EXPECT_EQ(route[1]->total_calls(), 0);
  // The holder is down and the others lack the entry: the caller recomputes.
  route[0]->Stop();
  Result<FetchReply> down = client->Fetch(ref);
  EXPECT_TRUE(IsRecompute(down.status())) << down.status().ToString();
}

TEST_F(ClientFaultTest, StatsAndHealthReportEveryWorker) {
  auto client = MakeClient(Options());
  fakes_[1]->Stop();
  fakes_[2]->SetScript("stats", Script{.delay = milliseconds(1500)});
  const auto start = std::chrono::steady_clock::now();
  std::vector<WorkerReport<engine::EngineStats>> stats = client->Stats();
  EXPECT_LT(Ms(std::chrono::steady_clock::now() - start).count(), 900 + 200);
  ASSERT_EQ(stats.size(), 3u);
  EXPECT_TRUE(stats[0].status.ok());
  EXPECT_EQ(stats[0].value->executor, "fake");
  EXPECT_EQ(stats[0].worker, fakes_[0]->address());
  EXPECT_EQ(stats[1].status.code(), Code::kUnavailable);
  EXPECT_EQ(stats[2].status.code(), Code::kDeadlineExceeded);
  std::vector<WorkerReport<WorkerHealth>> health = client->Health();
  ASSERT_EQ(health.size(), 3u);
  EXPECT_TRUE(health[0].value->serving);
  EXPECT_FALSE(health[1].status.ok());
}

TEST_F(ClientFaultTest, ConcurrentCallersWithFlakyWorkers) {
  ClientOptions o = Options();
  o.timeouts.lookup = milliseconds(3000);
  auto client = MakeClient(o);
  fakes_[0]->SetScript("lookup", Script{.error = Status::Unavailable("shutting down")});
  fakes_[1]->SetScript("lookup", Script{.error = Status::ResourceExhausted("full"),
                                        .retry_after = milliseconds(20),
                                        .times = 30});
  fakes_[2]->SetLookupMatch(1);
  fakes_[1]->SetLookupMatch(1);
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        Result<LookupReply> r = client->Lookup(Tokens(40, t * 100 + i), layout_, spec_);
        (r.ok() && r->matched_blocks == 1 ? ok : failed)++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 200);
  EXPECT_EQ(failed.load(), 0);
}

}  // namespace
}  // namespace kvc::client
