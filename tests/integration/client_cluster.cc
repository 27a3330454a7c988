#include "tests/integration/client_cluster.h"

#include <signal.h>

#include <numeric>

namespace kvc::testing {

Result<std::unique_ptr<ClientCluster>> ClientCluster::Start(const ClusterOptions& options) {
  std::unique_ptr<ClientCluster> c(new ClientCluster());
  c->options_ = options;
  for (int i = 0; i < options.workers; ++i) {
    KVC_ASSIGN_OR_RETURN(std::unique_ptr<WorkerProcess> w, c->Launch(i, /*same_ports=*/false));
    c->thrift_ports_.push_back(w->thrift_port());
    c->ucx_ports_.push_back(w->ucx_port());
    c->http_ports_.push_back(w->http_port());
    c->workers_.push_back(std::move(w));
  }
  return c;
}

ClientCluster::~ClientCluster() {
  for (auto& w : workers_) {
    if (w == nullptr) continue;
    w->Signal(SIGCONT);  // a paused worker cannot die gracefully
    w->Signal(SIGTERM);
    if (w->Wait(std::chrono::seconds(10)) < 0) w->Signal(SIGKILL);
  }
}

Result<std::unique_ptr<WorkerProcess>> ClientCluster::Launch(int i, bool same_ports) {
  WorkerProcessOptions o;
  o.data_dir = dir_.Sub("worker" + std::to_string(i));
  o.log_path = dir_.Sub("worker" + std::to_string(i) + ".log");
  o.ucx = options_.ucx;
  o.extra_args = options_.extra_args;
  if (same_ports) {
    for (const auto& [flag, port] :
         {std::pair{"--thrift-port", thrift_ports_[i]}, std::pair{"--ucx-port", ucx_ports_[i]},
          std::pair{"--http-port", http_ports_[i]}}) {
      if (port == 0) continue;
      o.extra_args.push_back(flag);
      o.extra_args.push_back(std::to_string(port));
    }
  }
  return WorkerProcess::Start(o);
}

std::string ClientCluster::address(int i) const {
  std::string a = id(i);
  if (ucx_ports_[i] != 0) a += ":" + std::to_string(ucx_ports_[i]);
  return a;
}

std::string ClientCluster::id(int i) const {
  return "127.0.0.1:" + std::to_string(thrift_ports_[i]);
}

int ClientCluster::IndexOf(const std::string& worker_id) const {
  for (int i = 0; i < size(); ++i) {
    if (id(i) == worker_id) return i;
  }
  return -1;
}

client::ClientOptions ClientCluster::Options(int only) const {
  client::ClientOptions o;
  for (int i = 0; i < size(); ++i) {
    if (only >= 0 && i != only) continue;
    o.workers.push_back(*client::ParseWorkerAddress(address(i)));
  }
  o.model_id = "synthetic";
  o.tenant = "it";
  o.block_size = 64;
  o.timeouts.lookup = std::chrono::milliseconds(3000);
  o.timeouts.fetch = std::chrono::milliseconds(10000);
  o.timeouts.compact = std::chrono::milliseconds(30000);
  o.timeouts.admin = std::chrono::milliseconds(3000);
  o.jitter_seed = 7;
  return o;
}

void ClientCluster::Kill(int i) {
  workers_[i]->Signal(SIGKILL);
  workers_[i]->Wait(std::chrono::seconds(10));
}

void ClientCluster::Pause(int i) { workers_[i]->Signal(SIGSTOP); }
void ClientCluster::Resume(int i) { workers_[i]->Signal(SIGCONT); }

Status ClientCluster::Restart(int i) {
  Kill(i);
  Result<std::unique_ptr<WorkerProcess>> w = Launch(i, /*same_ports=*/true);
  if (!w.ok()) {
    w = Launch(i, /*same_ports=*/false);
    if (!w.ok()) return w.status();
    thrift_ports_[i] = (*w)->thrift_port();
    ucx_ports_[i] = (*w)->ucx_port();
    http_ports_[i] = (*w)->http_port();
  }
  workers_[i] = std::move(w).value();
  return Status::OK();
}

std::string ClientCluster::LogTail(int i) const { return workers_[i]->LogTail(); }

std::vector<int32_t> TokenRange(int64_t n, int32_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  std::iota(t.begin(), t.end(), first);
  return t;
}

}  // namespace kvc::testing
