// kvcompactd: the compaction worker. See services/worker/worker.h for what it runs and
// worker_options.h for its flags, config file and defaults.
//
// Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM), 1 when it cannot start or the event
// loop fails, 2 for a bad command line or config file.
#include <spdlog/spdlog.h>

#include <csignal>
#include <iostream>

#include "common/logging.h"
#include "services/worker/worker.h"

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);  // a vanished peer is an error code, not a signal
  kvc::Result<kvc::worker::CommandLine> cmd = kvc::worker::ParseCommandLine(argc, argv, std::cout);
  if (!cmd.ok()) {
    std::cerr << "kvcompactd: " << cmd.status().ToString() << "\n";
    return 2;
  }
  if (cmd->exit_now) return cmd->exit_code;
  kvc::LoggingOptions logging;
  logging.level = cmd->options.log_level;
  logging.file = cmd->options.log_file;
  if (kvc::Status st = kvc::InitLogging(logging); !st.ok()) {
    std::cerr << "kvcompactd: " << st.ToString() << "\n";
    return 2;
  }
  kvc::worker::Worker worker(cmd->options);
  if (kvc::Status st = worker.Start(); !st.ok()) {
    spdlog::critical("kvcompactd: cannot start: {}", st.ToString());
    std::cerr << "kvcompactd: cannot start: " << st.ToString() << "\n";
    return 1;
  }
  std::cout << worker.ReadyLine() << std::endl;
  spdlog::info("{}", worker.ReadyLine());
  const kvc::Status run = worker.Run();
  return run.ok() ? 0 : 1;
}
