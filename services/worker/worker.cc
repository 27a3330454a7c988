// Worker startup, the UCX and HTTP wiring, and shutdown. The event loop's timers and signals
// are in worker_loop.cc.
#include "services/worker/worker.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <filesystem>

#include "services/engine/executor.h"
#include "services/engine/spec_hash.h"
#include "services/rpc/handler.h"

namespace kvc::worker {

Worker::Worker(WorkerOptions options) : options_(std::move(options)) {}

Worker::~Worker() {
  if (shutdown_thread_.joinable()) shutdown_thread_.join();
  StopServices();
  background_.join();
}

Status Worker::Start() {
  KVC_RETURN_IF_ERROR(options_.Validate());
  Status st = OpenStoreAndEngine();
  if (st.ok() && options_.ucx_enabled) st = StartUcx();
  if (st.ok()) st = StartThrift();
  if (st.ok()) st = StartHttp();
  if (!st.ok()) {
    StopServices();
    return st;
  }
  ArmSignals();
  ArmMaintenance();
  ArmStats();
  started_ = true;
  return Status::OK();
}

Status Worker::OpenStoreAndEngine() {
  std::error_code ec;
  std::filesystem::create_directories(options_.data_dir, ec);
  if (ec) {
    return Status::IOError("cannot create data directory '" + options_.data_dir +
                           "': " + ec.message());
  }
  KVC_ASSIGN_OR_RETURN(std::shared_ptr<engine::CompactionExecutor> executor,
                       engine::MakeExecutor(options_.executor));
  Result<std::unique_ptr<storage::TieredStore>> store =
      storage::TieredStore::Open(options_.StoreOptions());
  if (!store.ok()) return store.status().WithContext("opening the store in " + options_.data_dir);
  store_ = std::move(store).value();
  engine_ =
      std::make_unique<engine::Engine>(options_.engine, store_, std::move(executor), &metrics_);
  return engine_->Start();
}

Status Worker::StartUcx() {
  Result<std::shared_ptr<transport::UcxContext>> ctx =
      transport::UcxContext::Create(transport::UcxContextOptions{});
  if (!ctx.ok()) {
    return ctx.status().WithContext("UCX cannot start (run with --no-ucx to serve inline only)");
  }
  ucx_ = std::move(ctx).value();
  transport::ListenerOptions lo;
  lo.address = options_.listen_address;
  lo.port = options_.ucx_port;
  lo.staging_bytes = options_.ucx_staging_bytes;
  lo.handler_threads = options_.ucx_handler_threads;
  Result<std::unique_ptr<transport::Listener>> listener = transport::Listener::Start(
      ucx_, lo,
      [this](const transport::UploadInfo& info, KvCache cache) {
        return OnUpload(info, std::move(cache));
      },
      [this](const transport::FetchRequest& request) { return OnFetch(request); });
  if (!listener.ok()) return listener.status().WithContext("UCX listener");
  listener_ = std::move(listener).value();
  return Status::OK();
}

Status Worker::OnUpload(const transport::UploadInfo& info, KvCache cache) {
  return recorder_.Record("ucx_upload", [&](rpc::CallContext& ctx) {
    ctx.bytes_in = info.bytes;
    ctx.detail = "session=" + std::to_string(info.session) + " peer=" + info.peer;
    return engine_->StageUpload(info.session, std::move(cache));
  });
}

Result<CompactedCache> Worker::OnFetch(const transport::FetchRequest& request) {
  Result<CompactedCache> out = Status::Internal("fetch not run");
  const Status st = recorder_.Record("ucx_fetch", [&](rpc::CallContext& ctx) -> Status {
    ctx.detail = "peer=" + request.peer;
    KVC_ASSIGN_OR_RETURN(engine::EntryKeyParts key, engine::ParseEntryFetchKey(request.key));
    Result<engine::FetchOutcome> found = engine_->Fetch(key.block_hash, key.spec_hash);
    recorder_.StoreFetch(found.status());
    if (!found.ok()) return found.status();
    ctx.bytes_out = found->entry.payload_bytes;
    out = std::move(found->cache);
    return Status::OK();
  });
  if (!st.ok()) return st;
  return out;
}

std::string Worker::UcxAddress() const {
  if (listener_ == nullptr) return "";
  std::string host = options_.advertise_host;
  if (host.empty()) host = options_.listen_address;
  if (host == "0.0.0.0") {
    char name[256] = {};
    host = ::gethostname(name, sizeof(name) - 1) == 0 ? name : "localhost";
  }
  return host + ":" + std::to_string(listener_->port());
}

Status Worker::StartThrift() {
  rpc::HandlerOptions ho;
  ho.version = kWorkerVersion;
  ho.ucx_address = UcxAddress();
  ho.max_inline_fetch_bytes = options_.max_inline_fetch_bytes;
  rpc::ThriftServerOptions so;
  so.address = options_.listen_address;
  so.port = options_.thrift_port;
  so.max_connections = options_.max_connections;
  so.max_frame_bytes = options_.max_frame_bytes;
  so.idle_timeout = std::chrono::milliseconds(options_.idle_timeout_ms);
  KVC_ASSIGN_OR_RETURN(
      thrift_, rpc::ThriftServer::Start(
                   std::make_shared<rpc::KvCompactHandler>(engine_.get(), &recorder_, ho), so));
  return Status::OK();
}

Status Worker::StartHttp() {
  HttpServerOptions ho;
  ho.address = options_.listen_address;
  ho.port = options_.http_port;
  KVC_ASSIGN_OR_RETURN(
      http_,
      HttpServer::Start(io_, ho, [this](const std::string& method, const std::string& target) {
        return Route(method, target);
      }));
  return Status::OK();
}

HttpResponse Worker::Route(const std::string& method, const std::string& target) {
  const std::string path = target.substr(0, target.find('?'));
  if (path != "/metrics" && path != "/healthz") return {404, "text/plain", "not found\n"};
  if (method != "GET") return {405, "text/plain", "method not allowed\n"};
  const bool serving = engine_->Health().serving && !shutting_down_;
  if (path == "/healthz") {
    return serving ? HttpResponse{200, "text/plain", "serving\n"}
                   : HttpResponse{503, "text/plain", "not serving\n"};
  }
  const transport::ListenerStats ucx = listener_ ? listener_->stats() : transport::ListenerStats{};
  worker_metrics_.Refresh(engine_->Stats(), listener_ ? &ucx : nullptr, serving);
  return {200, "text/plain; version=0.0.4; charset=utf-8", metrics_.ExposePrometheus()};
}

std::string Worker::ReadyLine() const {
  const std::string host = options_.listen_address;
  std::string line = "kvcompactd ready thrift=" + host + ":" + std::to_string(thrift_port());
  line += listener_ ? " ucx=" + UcxAddress() : std::string(" ucx=off");
  line += " http=" + host + ":" + std::to_string(http_port());
  return line;
}

uint16_t Worker::thrift_port() const { return thrift_ ? thrift_->port() : 0; }
uint16_t Worker::http_port() const { return http_ ? http_->port() : 0; }
uint16_t Worker::ucx_port() const { return listener_ ? listener_->port() : 0; }

// Stops, but does not destroy: the event loop may still read stats from these objects until it
// ends; the destructor frees them.
void Worker::StopServices() {
  if (engine_) engine_->Stop();  // drains jobs and flushes the store; reads still answer
  if (thrift_) thrift_->Stop();
  if (listener_) listener_->Stop();
}

}  // namespace kvc::worker
