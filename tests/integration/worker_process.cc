#include "tests/integration/worker_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

namespace kvc::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::string DefaultBinary() {
#ifdef KVC_KVCOMPACTD
  return KVC_KVCOMPACTD;
#else
  return "kvcompactd";
#endif
}

// Forks; the child redirects stdout to `stdout_fd` (or the log), stderr to the log and execs.
pid_t Spawn(const std::string& binary, const std::vector<std::string>& args,
            const std::string& log_path, int stdout_fd) {
  std::vector<std::string> all{binary};
  all.insert(all.end(), args.begin(), args.end());
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (log >= 0) ::dup2(log, STDERR_FILENO);
  ::dup2(stdout_fd >= 0 ? stdout_fd : log, STDOUT_FILENO);
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(argv[0], argv.data());
  ::_exit(127);
}

// Exit code of a wait status: the code, or 128 + signal.
int Decode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

int WaitPid(pid_t pid, std::chrono::milliseconds timeout, bool* reaped) {
  const auto end = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      *reaped = true;
      return Decode(status);
    }
    if (r < 0 || Clock::now() >= end) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// Reads lines from `fd` until one starts with "kvcompactd ready", the deadline, or EOF.
std::string ReadReadyLine(int fd, Clock::time_point deadline) {
  std::string buffer;
  char chunk[512];
  for (;;) {
    const size_t nl = buffer.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      if (line.rfind("kvcompactd ready", 0) == 0) return line;
      continue;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return "";
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return "";
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n <= 0) return "";
    buffer.append(chunk, static_cast<size_t>(n));
  }
}

uint16_t PortOf(const std::string& line, const std::string& name) {
  const std::regex re(name + "=[^ ]*:([0-9]+)");
  std::smatch m;
  return std::regex_search(line, m, re) ? static_cast<uint16_t>(std::stoi(m[1])) : 0;
}

}  // namespace

Result<std::unique_ptr<WorkerProcess>> WorkerProcess::Start(const WorkerProcessOptions& o) {
  if (o.data_dir.empty()) return Status::InvalidArgument("WorkerProcess: no data_dir");
  std::unique_ptr<WorkerProcess> w(new WorkerProcess());
  w->log_path_ = o.log_path.empty() ? o.data_dir + ".log" : o.log_path;
  std::vector<std::string> args{"--data-dir",    o.data_dir, "--listen",    "127.0.0.1",
                                "--thrift-port", "0",        "--http-port", "0",
                                "--ucx-port",    "0",        "--stats-ms",  "0"};
  if (!o.ucx) args.push_back("--no-ucx");
  args.insert(args.end(), o.extra_args.begin(), o.extra_args.end());
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return Status::IOError("WorkerProcess: pipe failed");
  w->pid_ = Spawn(o.binary.empty() ? DefaultBinary() : o.binary, args, w->log_path_, pipe_fds[1]);
  ::close(pipe_fds[1]);
  w->ready_line_ = ReadReadyLine(pipe_fds[0], Clock::now() + o.ready_timeout);
  ::close(pipe_fds[0]);
  if (w->ready_line_.empty()) {
    const int code = w->Wait(std::chrono::milliseconds(100));
    if (code >= 0) {
      return Status::Unavailable("kvcompactd exited with " + std::to_string(code) +
                                 " before it was ready; log tail:\n" + w->LogTail());
    }
    return Status::DeadlineExceeded("kvcompactd printed no ready line; log tail:\n" + w->LogTail());
  }
  w->thrift_port_ = PortOf(w->ready_line_, "thrift");
  w->http_port_ = PortOf(w->ready_line_, "http");
  w->ucx_port_ = PortOf(w->ready_line_, "ucx");
  return w;
}

WorkerProcess::~WorkerProcess() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    Wait(std::chrono::seconds(10));
  }
}

void WorkerProcess::Signal(int signo) {
  if (pid_ > 0 && !reaped_) ::kill(pid_, signo);
}

int WorkerProcess::Wait(std::chrono::milliseconds timeout) {
  if (reaped_) return exit_code_;
  const int code = WaitPid(pid_, timeout, &reaped_);
  if (reaped_) exit_code_ = code;
  return code;
}

std::string WorkerProcess::LogTail(size_t bytes) const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string all = ss.str();
  return all.size() > bytes ? all.substr(all.size() - bytes) : all;
}

int RunWorkerToExit(const std::vector<std::string>& args, const std::string& log_path,
                    std::chrono::milliseconds timeout) {
  const pid_t pid = Spawn(DefaultBinary(), args, log_path, -1);
  bool reaped = false;
  const int code = WaitPid(pid, timeout, &reaped);
  if (!reaped) {
    ::kill(pid, SIGKILL);
    WaitPid(pid, std::chrono::seconds(10), &reaped);
  }
  return code;
}

}  // namespace kvc::testing
