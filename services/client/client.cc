// Client: construction, keys and routing, the retry loop's helpers, lookup, delete, stats and
// health. Compact is in client_compact.cc, Fetch in client_fetch.cc.
#include "services/client/client.h"

#include <spdlog/spdlog.h>
#include <thrift/TOutput.h>

#include <algorithm>
#include <future>
#include <mutex>
#include <span>
#include <string_view>

#include "services/client/client_impl.h"
#include "services/client/rendezvous.h"
#include "services/client/wire.h"
#include "services/engine/spec_hash.h"
#include "services/rpc/convert.h"

namespace kvc::client {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

bool IsRecompute(const Status& status) {
  return status.code() == Code::kUnavailable && status.message().starts_with(kRecompute);
}

bool Retryable(Code code) {
  switch (code) {
    case Code::kUnavailable:
    case Code::kDeadlineExceeded:
    case Code::kResourceExhausted:
    case Code::kCancelled:
    case Code::kInternal:
    case Code::kIOError:
      return true;
    default:
      return false;
  }
}

int64_t PrefixChain::TokensIn(size_t n) const {
  int64_t tokens = 0;
  for (size_t i = 0; i < n && i < blocks.size(); ++i) tokens += blocks[i].n_tokens;
  return tokens;
}

// --- Impl ---------------------------------------------------------------------------------------

Client::Impl::Impl(ClientOptions options)
    : options_(std::move(options)), jitter_(options_.jitter_seed) {
  for (const WorkerAddress& w : options_.workers) {
    workers_.push_back(std::make_unique<WorkerChannel>(w, &options_));
    ids_.push_back(w.id());
  }
}

Client::Impl::~Impl() { workers_.clear(); }  // endpoints close before the UCX context goes

int Client::Impl::IndexOf(const std::string& id) const {
  const auto it = std::find(ids_.begin(), ids_.end(), id);
  return it == ids_.end() ? -1 : static_cast<int>(it - ids_.begin());
}

Clock::time_point Client::Impl::Deadline(const CallOptions& call,
                                         std::chrono::milliseconds fallback) {
  return Clock::now() + (call.timeout.count() > 0 ? call.timeout : fallback);
}

std::vector<size_t> Client::Impl::Order(const std::string& route_hash) const {
  std::vector<size_t> order = RendezvousOrder(ids_, Bytes(route_hash));
  const Clock::time_point now = Clock::now();
  std::stable_partition(order.begin(), order.end(),
                        [&](size_t i) { return !workers_[i]->suspect(now); });
  return order;
}

std::vector<size_t> Client::Impl::OrderWithFirst(int first, const std::string& route_hash) const {
  std::vector<size_t> order = Order(route_hash);
  if (first < 0) return order;
  order.erase(std::remove(order.begin(), order.end(), static_cast<size_t>(first)), order.end());
  order.insert(order.begin(), static_cast<size_t>(first));
  return order;
}

bool Client::Impl::WaitBeforeAttempt(const Attempt& a, Clock::time_point deadline,
                                     std::string* failures) {
  const BackoffPolicy policy{options_.backoff_base, options_.backoff_max};
  auto wait =
      std::chrono::duration_cast<Clock::duration>(BackoffDelay(policy, a.index, jitter_.Next()));
  const Clock::time_point now = Clock::now();
  wait = std::max(wait, a.worker->busy_until() - now);
  if (now + wait >= deadline) {
    if (!failures->empty()) *failures += "; ";
    *failures +=
        a.worker->id() + ": not retried, its wait (" +
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(wait).count()) +
        " ms) outlasts the budget";
    return false;
  }
  std::this_thread::sleep_for(wait);
  return true;
}

void Client::Impl::NoteFailure(WorkerChannel& w, const Status& status, int64_t retry_after_ms,
                               std::string* failures) {
  switch (status.code()) {
    case Code::kUnavailable:
    case Code::kDeadlineExceeded:
      w.MarkSuspect();
      break;
    case Code::kResourceExhausted:
      w.MarkBusy(std::chrono::milliseconds(retry_after_ms > 0 ? retry_after_ms
                                                              : options_.backoff_base.count()));
      break;
    default:
      break;
  }
  if (!failures->empty()) *failures += "; ";
  *failures += w.id() + ": " + status.ToString();
}

Status Client::Impl::Exhausted(const char* op, const std::string& failures) {
  return Status::Unavailable(std::string(kRecompute) + ": no worker could serve " + op + " (" +
                             failures + ")");
}

Result<std::shared_ptr<transport::UcxContext>> Client::Impl::Ucx() {
  std::lock_guard<std::mutex> lock(ucx_mu_);
  if (!ucx_tried_) {
    ucx_tried_ = true;
    transport::UcxContextOptions o;
    o.name = "kvcompact-client";
    Result<std::shared_ptr<transport::UcxContext>> ctx = transport::UcxContext::Create(o);
    if (ctx.ok()) {
      ucx_ = std::move(ctx).value();
    } else {
      ucx_error_ =
          Status::Unavailable("UCX cannot start in this process: " + ctx.status().ToString());
    }
  }
  if (ucx_ == nullptr) return ucx_error_;
  return ucx_;
}

// --- Client -------------------------------------------------------------------------------------

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  KVC_RETURN_IF_ERROR(options.Validate());
  // Thrift prints every failed connect to stderr; the client reports each failure in its
  // Status already, so those lines go to the debug log (process-wide, once).
  static std::once_flag quiet_thrift;
  std::call_once(quiet_thrift, [] {
    apache::thrift::GlobalOutput.setOutputFunction(
        [](const char* msg) { spdlog::debug("thrift: {}", msg); });
  });
  return std::unique_ptr<Client>(new Client(std::make_unique<Impl>(std::move(options))));
}

const ClientOptions& Client::options() const { return impl_->options(); }

Result<PrefixChain> Client::Chain(std::span<const int32_t> tokens, const KvLayout& layout,
                                  const CompactionSpec& spec) const {
  if (tokens.empty()) return Status::InvalidArgument("no tokens: a request needs at least one");
  KvLayout shape = layout;
  shape.tokens = static_cast<int64_t>(tokens.size());
  KVC_RETURN_IF_ERROR(shape.Validate().WithContext("layout of the request"));
  const ClientOptions& o = impl_->options();
  const PrefixSalt salt =
      PrefixSalt::ForLayout(o.model_id, layout, engine::kSpecHashVersion, o.tenant);
  PrefixHashOptions ho;
  ho.algo = o.hash_algo;
  ho.block_size = o.block_size;
  PrefixChain chain;
  KVC_ASSIGN_OR_RETURN(chain.blocks, HashPrefix(tokens, salt, ho));
  for (const BlockHash& b : chain.blocks) {
    const std::span<const uint8_t> d = b.digest();
    chain.block_hashes.emplace_back(d.begin(), d.end());
  }
  chain.spec_hash = engine::SpecHash(spec);
  return chain;
}

std::vector<std::string> Client::RouteOf(const PrefixChain& chain) const {
  std::vector<std::string> out;
  for (size_t i : RendezvousOrder(impl_->ids(), Bytes(chain.route_hash()))) {
    out.push_back(impl_->ids()[i]);
  }
  return out;
}

Result<LookupReply> Client::Lookup(std::span<const int32_t> tokens, const KvLayout& layout,
                                   const CompactionSpec& spec, const CallOptions& call) {
  KVC_ASSIGN_OR_RETURN(PrefixChain chain, Chain(tokens, layout, spec));
  return LookupChain(chain, call);
}

namespace {

// Keeps the longer of two lookup answers.
void KeepLonger(const rpc::LookupResult& got, WorkerChannel& w, rpc::LookupResult* best,
                std::string* best_worker) {
  if (got.matched_blocks > best->matched_blocks && got.__isset.manifest) {
    *best = got;
    *best_worker = w.id();
  }
}

}  // namespace

Result<LookupReply> Client::LookupChain(const PrefixChain& chain, const CallOptions& call) {
  if (chain.block_hashes.empty()) return Status::InvalidArgument("lookup of an empty chain");
  const ClientOptions& o = impl_->options();
  const Clock::time_point deadline = Impl::Deadline(call, o.timeouts.lookup);
  const std::vector<size_t> order = impl_->Order(chain.route_hash());
  const int fanout = std::min<int>(o.lookup_fanout, static_cast<int>(order.size()));
  const int n = std::max(o.max_attempts, fanout);
  rpc::LookupResult best;
  best.matched_blocks = 0;
  std::string best_worker, failures;
  std::vector<bool> answered(order.size(), false);
  int answers = 0;
  bool failed_last = false;
  for (int i = 0; i < n && answers < fanout; ++i) {
    const size_t slot = static_cast<size_t>(i) % order.size();
    if (answered[slot]) continue;
    Attempt a{&impl_->worker(order[slot]), {}, i, 0};
    if (failed_last && !impl_->WaitBeforeAttempt(a, deadline, &failures)) continue;
    const auto left = Remaining(deadline);
    if (left.count() <= 0) break;
    a.deadline = Clock::now() + left / (n - i);
    rpc::LookupResult got;
    const Status st = a.worker->Call(
        a.deadline,
        [&](rpc::KvCompactClient& c) { c.lookup(got, chain.block_hashes, chain.spec_hash); },
        &a.retry_after_ms);
    failed_last = !st.ok();
    if (!st.ok()) {
      if (!Retryable(st.code())) return st.WithContext("worker " + a.worker->id());
      impl_->NoteFailure(*a.worker, st, a.retry_after_ms, &failures);
      continue;
    }
    a.worker->MarkHealthy();
    answered[slot] = true;
    ++answers;
    KeepLonger(got, *a.worker, &best, &best_worker);
    if (static_cast<size_t>(best.matched_blocks) == chain.block_hashes.size()) break;
  }
  if (answers == 0) return Impl::Exhausted("lookup", failures);
  LookupReply reply;
  reply.chain_blocks = chain.block_hashes.size();
  reply.workers_answered = answers;
  if (best.matched_blocks <= 0) return reply;
  if (static_cast<size_t>(best.matched_blocks) > chain.block_hashes.size()) {
    return Status::Corruption("worker " + best_worker + " matched " +
                              std::to_string(best.matched_blocks) + " blocks of a chain of " +
                              std::to_string(chain.block_hashes.size()));
  }
  KVC_ASSIGN_OR_RETURN(engine::EntryInfo entry, rpc::ManifestFromThrift(best.manifest));
  reply.matched_blocks = static_cast<size_t>(best.matched_blocks);
  reply.matched_tokens = chain.TokensIn(reply.matched_blocks);
  reply.ref = {chain.block_hashes[reply.matched_blocks - 1], chain.spec_hash, chain.route_hash(),
               best_worker, entry.payload_bytes};
  reply.entry = std::move(entry);
  return reply;
}

Result<PrefixHit> Client::FetchPrefix(std::span<const int32_t> tokens, const KvLayout& layout,
                                      const CompactionSpec& spec, const CallOptions& call) {
  const Clock::time_point deadline = Impl::Deadline(call, impl_->options().timeouts.fetch);
  PrefixHit hit;
  KVC_ASSIGN_OR_RETURN(hit.lookup, Lookup(tokens, layout, spec, call));
  if (hit.lookup.matched_blocks == 0) {
    return Status::NotFound("no prefix of the " + std::to_string(tokens.size()) +
                            " tokens is stored");
  }
  CallOptions rest = call;
  rest.timeout = Remaining(deadline);
  if (rest.timeout.count() <= 0) return Impl::Exhausted("fetch", "the time budget ran out");
  KVC_ASSIGN_OR_RETURN(hit.fetch, Fetch(hit.lookup.ref, rest));
  return hit;
}

Status Client::Delete(const EntryRef& ref, const CallOptions& call) {
  const Clock::time_point deadline = Impl::Deadline(call, impl_->options().timeouts.admin);
  const std::vector<size_t> order =
      impl_->OrderWithFirst(impl_->IndexOf(ref.worker), ref.route_hash);
  Result<bool> r = impl_->Run<bool>("delete", order, deadline, [&](Attempt& a) -> Result<bool> {
    const Status st = a.worker->Call(
        a.deadline, [&](rpc::KvCompactClient& c) { c.delete_entry(ref.block_hash, ref.spec_hash); },
        &a.retry_after_ms);
    if (st.IsNotFound() && a.index > 0) {  // as in Fetch: the holder failed first
      return Status::Unavailable("not found here after the first worker failed");
    }
    KVC_RETURN_IF_ERROR(st);
    return true;
  });
  return r.ok() ? Status::OK() : r.status();
}

namespace {

// Calls `fn(worker, deadline)` on every worker at once and gathers the reports.
template <typename T, typename Fn>
std::vector<WorkerReport<T>> FanOut(Client::Impl& impl, Clock::time_point deadline, Fn fn) {
  std::vector<std::future<WorkerReport<T>>> pending;
  for (size_t i = 0; i < impl.size(); ++i) {
    WorkerChannel* w = &impl.worker(i);
    pending.push_back(std::async(std::launch::async, [w, deadline, &fn] {
      WorkerReport<T> report;
      report.worker = w->id();
      Result<T> r = fn(*w, deadline);
      report.status = r.ok() ? Status::OK() : r.status();
      if (r.ok()) report.value = std::move(r).value();
      return report;
    }));
  }
  std::vector<WorkerReport<T>> out;
  for (auto& f : pending) out.push_back(f.get());
  return out;
}

}  // namespace

std::vector<WorkerReport<engine::EngineStats>> Client::Stats(const CallOptions& call) {
  const Clock::time_point deadline = Impl::Deadline(call, impl_->options().timeouts.admin);
  return FanOut<engine::EngineStats>(
      *impl_, deadline, [](WorkerChannel& w, Clock::time_point d) -> Result<engine::EngineStats> {
        rpc::Stats s;
        KVC_RETURN_IF_ERROR(w.Call(d, [&](rpc::KvCompactClient& c) { c.stats(s); }));
        return StatsFromThrift(s);
      });
}

std::vector<WorkerReport<WorkerHealth>> Client::Health(const CallOptions& call) {
  const Clock::time_point deadline = Impl::Deadline(call, impl_->options().timeouts.admin);
  return FanOut<WorkerHealth>(
      *impl_, deadline, [](WorkerChannel& w, Clock::time_point d) -> Result<WorkerHealth> {
        rpc::Health h;
        KVC_RETURN_IF_ERROR(w.Call(d, [&](rpc::KvCompactClient& c) { c.health(h); }));
        return HealthFromThrift(h);
      });
}

}  // namespace kvc::client
