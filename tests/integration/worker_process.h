// WorkerProcess: a real kvcompactd child process for integration tests. Starts the binary with
// every port set to 0 (or as given), a data directory and extra flags; waits for its ready line
// and parses the bound ports from it; sends signals; waits for the exit code. The child's stderr
// (its log) goes to a file for post-mortems.
//
// Thread safety: one owner thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace kvc::testing {

struct WorkerProcessOptions {
  // The kvcompactd binary. Default: the one this build made (KVC_KVCOMPACTD).
  std::string binary;
  // --data-dir. REQUIRES: non-empty.
  std::string data_dir;
  // Where the child's stderr goes. Default: <data_dir>.log.
  std::string log_path;
  // Run the UCX data plane (else --no-ucx). Default: true.
  bool ucx = true;
  // More flags, appended after the defaults (so they win).
  std::vector<std::string> extra_args;
  // How long to wait for the ready line. Default: 60 s.
  std::chrono::milliseconds ready_timeout{60'000};
};

class WorkerProcess {
 public:
  // Forks and execs the worker and waits for "kvcompactd ready ...". Errors: the child exited
  // before it was ready (Unavailable, with its exit code and the log's tail), or it did not
  // print the ready line in time (DeadlineExceeded; the child is killed).
  static Result<std::unique_ptr<WorkerProcess>> Start(const WorkerProcessOptions& options);
  // Kills (SIGKILL) and reaps a child still running.
  ~WorkerProcess();
  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& ready_line() const { return ready_line_; }
  uint16_t thrift_port() const { return thrift_port_; }
  uint16_t http_port() const { return http_port_; }
  uint16_t ucx_port() const { return ucx_port_; }  // 0 without UCX
  const std::string& log_path() const { return log_path_; }

  // Sends `signo` to the child.
  void Signal(int signo);
  // Waits for the child to exit: its exit code, 128 + signal if a signal ended it, or -1 if it
  // is still running after `timeout`.
  int Wait(std::chrono::milliseconds timeout);
  // The last `bytes` of the child's log.
  std::string LogTail(size_t bytes = 4000) const;

 private:
  WorkerProcess() = default;

  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_code_ = -1;
  std::string ready_line_;
  std::string log_path_;
  uint16_t thrift_port_ = 0;
  uint16_t http_port_ = 0;
  uint16_t ucx_port_ = 0;
};

// Runs the binary with `args` to completion (no ready line expected) and returns its exit code
// (-1 if it ran longer than `timeout`; it is then killed). Output goes to `log_path`.
int RunWorkerToExit(const std::vector<std::string>& args, const std::string& log_path,
                    std::chrono::milliseconds timeout);

}  // namespace kvc::testing
