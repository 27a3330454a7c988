// ClientCluster: several kvcompactd worker processes on loopback for the client's integration
// tests (tests/integration/client.cmake), each with its own data directory under one temporary
// directory, plus what a test needs to hurt them: SIGKILL, SIGSTOP/SIGCONT, and a restart on the
// same ports and data directory. Built on WorkerProcess (worker_process.h).
//
// Thread safety: one owner thread; the client options it hands out are plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "services/client/client.h"
#include "storage/testing.h"
#include "tests/integration/worker_process.h"

namespace kvc::testing {

struct ClusterOptions {
  int workers = 3;
  // Flags for every worker, after the defaults. Default: one compaction thread each (the
  // machine is shared), a short maintenance period.
  std::vector<std::string> extra_args = {"--compaction-threads", "1", "--maintenance-ms", "1000"};
  bool ucx = true;
};

class ClientCluster {
 public:
  // Starts every worker. Errors: the first WorkerProcess::Start error.
  static Result<std::unique_ptr<ClientCluster>> Start(const ClusterOptions& options);
  ~ClientCluster();

  int size() const { return static_cast<int>(workers_.size()); }
  WorkerProcess& process(int i) { return *workers_[i]; }
  // "127.0.0.1:thrift:ucx" of worker i (the ports of its first start).
  std::string address(int i) const;
  // WorkerAddress::id() of worker i, and the index of an id (-1 if none).
  std::string id(int i) const;
  int IndexOf(const std::string& id) const;
  // Client options naming every worker (or only `only`, when >= 0), with short test budgets.
  client::ClientOptions Options(int only = -1) const;

  // SIGKILL and reap.
  void Kill(int i);
  // SIGSTOP / SIGCONT.
  void Pause(int i);
  void Resume(int i);
  // Kills worker i and starts it again on its data directory, on its first ports when it can
  // (else on free ones: address(i) and id(i) then change). Errors as Start.
  Status Restart(int i);
  // The tail of worker i's log (for failure messages).
  std::string LogTail(int i) const;

 private:
  ClientCluster() = default;
  Result<std::unique_ptr<WorkerProcess>> Launch(int i, bool same_ports);

  ClusterOptions options_;
  storage::testing::TempDir dir_{"kvc-it-client"};
  std::vector<std::unique_ptr<WorkerProcess>> workers_;
  std::vector<uint16_t> thrift_ports_, ucx_ports_, http_ports_;
};

// Token ids first, first + 1, ... (n of them).
std::vector<int32_t> TokenRange(int64_t n, int32_t first);

}  // namespace kvc::testing
