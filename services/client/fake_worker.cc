#include "services/client/fake_worker.h"

#include <thread>
#include <utility>

#include "common/kv_io.h"
#include "services/rpc/errors.h"

namespace kvc::client::testing {
namespace {

rpc::Manifest CannedManifest(const std::string& block_hash, const std::string& spec_hash) {
  rpc::Manifest m;
  m.block_hash = block_hash;
  m.spec_hash = spec_hash;
  m.layout.n_layers = 3;
  m.layout.n_kv_heads = 2;
  m.layout.n_q_heads = 4;
  m.layout.head_dim = 16;
  m.layout.dtype = "F32";
  m.layout.tokens = 64;
  m.entries = 48;
  m.method = "am";
  m.payload_bytes = 4096;
  return m;
}

}  // namespace

class FakeWorker::Handler final : public rpc::KvCompactIf {
 public:
  void SetScript(const std::string& method, Script script) {
    std::lock_guard<std::mutex> lock(mu_);
    scripts_[method] = std::move(script);
  }
  void SetLookupMatch(int matched) {
    std::lock_guard<std::mutex> lock(mu_);
    lookup_matched_ = matched;
  }
  void SetEntry(std::string bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    entry_ = std::move(bytes);
  }
  int calls(const std::string& method) const {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = calls_.find(method);
    return it == calls_.end() ? 0 : it->second;
  }
  int total() const {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& [m, c] : calls_) n += c;
    return n;
  }
  std::vector<rpc::CompactRequest> compacts() const {
    std::lock_guard<std::mutex> lock(mu_);
    return compacts_;
  }

  void compact(rpc::CompactResult& out, const rpc::CompactRequest& request) override {
    Enter("compact");
    std::lock_guard<std::mutex> lock(mu_);
    compacts_.push_back(request);
    const std::string last = request.block_hashes.empty() ? "" : request.block_hashes.back();
    out.request_id = request.request_id;
    out.manifest = CannedManifest(last, "fake-spec");
    out.stored = true;
    out.achieved_ratio = 8.0;
  }
  int64_t compact_async(const rpc::CompactRequest&) override {
    Enter("compact_async");
    return 1;
  }
  void job_status(rpc::JobStatus&, int64_t) override { Enter("job_status"); }
  bool cancel_job(int64_t) override {
    Enter("cancel_job");
    return false;
  }
  void lookup(rpc::LookupResult& out, const std::vector<std::string>& hashes,
              const std::string& spec_hash) override {
    Enter("lookup");
    std::lock_guard<std::mutex> lock(mu_);
    const int matched = std::min<int>(lookup_matched_, static_cast<int>(hashes.size()));
    out.matched_blocks = matched;
    if (matched > 0) out.__set_manifest(CannedManifest(hashes[matched - 1], spec_hash));
  }
  void fetch(rpc::FetchResult& out, const rpc::FetchRequest& request) override {
    Enter("fetch");
    std::lock_guard<std::mutex> lock(mu_);
    if (request.mode == rpc::FetchMode::UCX) {
      rpc::ThrowAsThrift(Status::Unavailable("this worker runs without UCX; fetch inline"), {});
    }
    if (!entry_) rpc::ThrowAsThrift(Status::NotFound("no such entry"), {});
    out.manifest = CannedManifest(request.block_hash, request.spec_hash);
    out.__set_inline_payload(*entry_);
  }
  void delete_entry(const std::string&, const std::string&) override { Enter("delete_entry"); }
  void stats(rpc::Stats& out) override {
    Enter("stats");
    std::lock_guard<std::mutex> lock(mu_);
    out.executor = "fake";
    out.store_puts = static_cast<int64_t>(compacts_.size());
  }
  void health(rpc::Health& out) override {
    Enter("health");
    out.serving = true;
    out.version = "fake";
    out.executor = "fake";
  }

 private:
  // Counts the call, then plays the method's script: sleep, then maybe throw.
  void Enter(const char* method) {
    Script s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++calls_[method];
      auto it = scripts_.find(method);
      if (it != scripts_.end() && it->second.times != 0) {
        s = it->second;
        if (it->second.times > 0) --it->second.times;
      }
    }
    if (s.delay.count() > 0) std::this_thread::sleep_for(s.delay);
    if (!s.error.ok()) rpc::ThrowAsThrift(s.error, s.retry_after);
  }

  mutable std::mutex mu_;
  std::map<std::string, Script> scripts_;
  std::map<std::string, int> calls_;
  int lookup_matched_ = 0;
  std::optional<std::string> entry_;
  std::vector<rpc::CompactRequest> compacts_;
};

std::unique_ptr<FakeWorker> FakeWorker::Start(uint16_t port) {
  std::unique_ptr<FakeWorker> w(new FakeWorker());
  w->handler_ = std::make_shared<Handler>();
  w->port_ = port;
  if (!w->Restart()) return nullptr;
  return w;
}

FakeWorker::~FakeWorker() { Stop(); }

void FakeWorker::Stop() {
  if (server_) server_->Stop();
  server_.reset();
}

bool FakeWorker::Restart() {
  Stop();
  rpc::ThriftServerOptions o;
  o.address = "127.0.0.1";
  o.port = port_;
  Result<std::unique_ptr<rpc::ThriftServer>> s = rpc::ThriftServer::Start(handler_, o);
  if (!s.ok()) return false;
  server_ = std::move(s).value();
  port_ = server_->port();
  return true;
}

void FakeWorker::SetScript(const std::string& method, Script script) {
  handler_->SetScript(method, std::move(script));
}
void FakeWorker::SetLookupMatch(int matched) { handler_->SetLookupMatch(matched); }
void FakeWorker::SetEntry(CompactedCache cache) {
  Result<std::vector<uint8_t>> bytes = EncodeCompactedCache(cache);
  handler_->SetEntry(bytes.ok() ? std::string(bytes->begin(), bytes->end()) : std::string());
}
int FakeWorker::calls(const std::string& method) const { return handler_->calls(method); }
int FakeWorker::total_calls() const { return handler_->total(); }
std::vector<rpc::CompactRequest> FakeWorker::compact_requests() const {
  return handler_->compacts();
}

}  // namespace kvc::client::testing
