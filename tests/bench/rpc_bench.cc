// RPC benchmark of the client library against one local kvcompactd process.
//
//   lookup     round-trip latency of Client::LookupChain (one Thrift call: the chain is hashed
//              beforehand), p50/p99/mean, for a hit and for a miss, one caller at a time.
//   compact    compaction requests per second with N concurrent clients (N = 1, 4, 16; each a
//              Client of its own on its own thread) on a small layout (2 layers, 2 KV heads,
//              4 query heads, head_dim 16, 256 tokens, F32; AM at ratio 8), inline and over
//              UCX, with per-request latency p50/p99. Every request has fresh tokens, so every
//              one is compacted and stored.
//
// Usage: rpc_bench [--quick] [--seconds S (per compact row, default 5)] [--lookups N (2000)]
//                  [--clients 1,4,16] [--worker-arg FLAG]... [--workers host:port[:ucx]]
// Without --workers it starts kvcompactd (the build's, KVC_KVCOMPACTD) on free loopback ports
// with a temporary data directory, --executor-threads 2 --compaction-threads 1 --no-sync, and
// stops it at the end.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "services/client/client.h"
#include "services/engine/engine_testing.h"

namespace kvc::bench {
namespace {

using Clock = std::chrono::steady_clock;
using Ms = std::chrono::duration<double, std::milli>;

struct Args {
  bool quick = false;
  double seconds = 5;
  int lookups = 2000;
  std::vector<int> clients = {1, 4, 16};
  std::vector<std::string> worker_args = {"--executor-threads", "2", "--compaction-threads", "1",
                                          "--no-sync"};
  std::string workers;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "rpc_bench: %s\n", what.c_str());
  std::exit(1);
}

std::vector<int> ParseInts(const std::string& text) {
  std::vector<int> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    out.push_back(std::atoi(text.substr(pos, comma - pos).c_str()));
    if (out.back() <= 0) Die("--clients: '" + text + "' is not a list of positive counts");
    pos = comma + 1;
  }
  return out;
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(f + " needs a value");
      return argv[++i];
    };
    if (f == "--quick") {
      a.quick = true;
      a.seconds = 1;
      a.lookups = 200;
      a.clients = {1, 4};
    } else if (f == "--seconds") {
      a.seconds = std::atof(value().c_str());
    } else if (f == "--lookups") {
      a.lookups = std::atoi(value().c_str());
    } else if (f == "--clients") {
      a.clients = ParseInts(value());
    } else if (f == "--worker-arg") {
      a.worker_args.push_back(value());
    } else if (f == "--workers") {
      a.workers = value();
    } else {
      Die("unknown flag " + f + " (see the top of tests/bench/rpc_bench.cc)");
    }
  }
  if (a.seconds <= 0 || a.lookups <= 0) Die("--seconds and --lookups must be positive");
  return a;
}

// kvcompactd as a child process on free loopback ports.
class LocalWorker {
 public:
  explicit LocalWorker(const std::vector<std::string>& extra) {
    dir_ = std::filesystem::temp_directory_path() / ("kvc-rpc-bench-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    std::vector<std::string> args = {KVC_KVCOMPACTD,
                                     "--data-dir",
                                     (dir_ / "data").string(),
                                     "--listen",
                                     "127.0.0.1",
                                     "--thrift-port",
                                     "0",
                                     "--ucx-port",
                                     "0",
                                     "--http-port",
                                     "0",
                                     "--stats-ms",
                                     "0",
                                     "--log-level",
                                     "warn"};
    args.insert(args.end(), extra.begin(), extra.end());
    int fds[2];
    if (::pipe(fds) != 0) Die("pipe failed");
    pid_ = ::fork();
    if (pid_ == 0) {
      const int log = ::open((dir_ / "worker.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (log >= 0) ::dup2(log, STDERR_FILENO);
      ::dup2(fds[1], STDOUT_FILENO);
      std::vector<char*> argv;
      for (std::string& s : args) argv.push_back(s.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    address_ = ReadAddress(fds[0]);
    ::close(fds[0]);
    if (address_.empty())
      Die("kvcompactd did not get ready; see " + (dir_ / "worker.log").string());
  }
  ~LocalWorker() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    std::filesystem::remove_all(dir_);
  }
  const std::string& address() const { return address_; }

 private:
  // "127.0.0.1:thrift:ucx" from the ready line.
  static std::string ReadAddress(int fd) {
    std::string text;
    char chunk[256];
    const auto end = Clock::now() + std::chrono::seconds(60);
    while (text.find('\n') == std::string::npos && Clock::now() < end) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 1000) <= 0) continue;
      const ssize_t n = ::read(fd, chunk, sizeof(chunk));
      if (n <= 0) return "";
      text.append(chunk, static_cast<size_t>(n));
    }
    std::smatch thrift, ucx;
    if (!std::regex_search(text, thrift, std::regex("thrift=[^ ]*:([0-9]+)"))) return "";
    std::string out = "127.0.0.1:" + thrift[1].str();
    if (std::regex_search(text, ucx, std::regex("ucx=[^ ]*:([0-9]+)"))) out += ":" + ucx[1].str();
    return out;
  }

  std::filesystem::path dir_;
  pid_t pid_ = -1;
  std::string address_;
};

std::unique_ptr<client::Client> MakeClient(const std::string& workers, bool ucx) {
  client::ClientOptions o;
  auto list = client::ParseWorkerList(workers);
  if (!list.ok()) Die(list.status().ToString());
  o.workers = *list;
  o.model_id = "bench";
  o.block_size = 64;
  o.ucx_mode = ucx ? client::UcxMode::kRequired : client::UcxMode::kOff;
  o.timeouts.compact = std::chrono::milliseconds(120000);
  auto c = client::Client::Create(o);
  if (!c.ok()) Die(c.status().ToString());
  return std::move(c).value();
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

std::vector<int32_t> Tokens(int64_t n, int64_t first) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>(first + i);
  return t;
}

void LookupRow(client::Client& c, const client::PrefixChain& chain, int n, const char* what) {
  std::vector<double> ms;
  for (int i = 0; i < n + n / 10; ++i) {
    const auto start = Clock::now();
    auto r = c.LookupChain(chain);
    const double took = Ms(Clock::now() - start).count();
    if (!r.ok()) Die("lookup: " + r.status().ToString());
    if (i >= n / 10) ms.push_back(took);  // the first tenth warms up
  }
  std::printf("| lookup %-4s | %6d | %8.3f | %8.3f | %8.3f |\n", what, n, Percentile(ms, 0.5),
              Percentile(ms, 0.99), Mean(ms));
}

void RunLookups(const Args& a, const std::string& workers) {
  auto c = MakeClient(workers, false);
  const CompactionSpec spec = engine::testing::FastSpec();
  const KvCache cache = engine::testing::TinyCache(1, 256);
  const std::vector<int32_t> tokens = Tokens(256, 1);
  auto put = c->Compact(tokens, cache, spec);
  if (!put.ok()) Die("compact: " + put.status().ToString());
  auto hit = c->Chain(tokens, cache.layout, spec);
  auto miss = c->Chain(Tokens(256, 5'000'000), cache.layout, spec);
  std::printf("\nThrift lookup round trip (one caller, chain of 4 blocks)\n");
  std::printf("| operation   | calls  | p50 ms   | p99 ms   | mean ms  |\n");
  std::printf("|-------------|--------|----------|----------|----------|\n");
  LookupRow(*c, *hit, a.lookups, "hit");
  LookupRow(*c, *miss, a.lookups, "miss");
}

// False when a row failed a request or finished none (the smoke test fails then).
bool CompactRow(const Args& a, const std::string& workers, int n, bool ucx) {
  const CompactionSpec spec = engine::testing::FastSpec();
  static std::atomic<int64_t> next_request{0};
  std::vector<std::unique_ptr<client::Client>> clients;
  for (int i = 0; i < n; ++i) clients.push_back(MakeClient(workers, ucx));
  std::mutex mu;
  std::vector<double> ms;
  std::atomic<int> errors{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      const KvCache cache = engine::testing::TinyCache(100 + i, 256);
      while (!stop.load()) {
        const int64_t r = next_request++;
        const auto t0 = Clock::now();
        auto put = clients[i]->Compact(Tokens(256, 10'000'000 + r * 1000), cache, spec);
        const double took = Ms(Clock::now() - t0).count();
        if (!put.ok()) {
          if (errors++ == 0) std::fprintf(stderr, "compact: %s\n", put.status().ToString().c_str());
          continue;
        }
        std::lock_guard<std::mutex> lock(mu);
        ms.push_back(took);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("| %7d | %-9s | %8zu | %6d | %8.1f | %8.2f | %8.2f |\n", n, ucx ? "ucx" : "inline",
              ms.size(), errors.load(), static_cast<double>(ms.size()) / secs, Percentile(ms, 0.5),
              Percentile(ms, 0.99));
  return errors.load() == 0 && !ms.empty();
}

int Main(int argc, char** argv) {
  const Args a = ParseArgs(argc, argv);
  std::unique_ptr<LocalWorker> local;
  std::string workers = a.workers;
  if (workers.empty()) {
    local = std::make_unique<LocalWorker>(a.worker_args);
    workers = local->address();
  }
  std::printf("rpc_bench: worker %s, %u hardware threads here\n", workers.c_str(),
              std::thread::hardware_concurrency());
  RunLookups(a, workers);
  const bool has_ucx = std::count(workers.begin(), workers.end(), ':') >= 2;
  std::printf(
      "\nCompaction requests per second (2 layers x 2 KV heads, 256 tokens, AM ratio 8; "
      "%.0f s per row)\n",
      a.seconds);
  std::printf("| clients | transport | requests | errors | req/s    | p50 ms   | p99 ms   |\n");
  std::printf("|---------|-----------|----------|--------|----------|----------|----------|\n");
  bool ok = true;
  for (bool ucx : {false, true}) {
    if (ucx && !has_ucx) continue;
    for (int n : a.clients) ok = CompactRow(a, workers, n, ucx) && ok;
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace kvc::bench

int main(int argc, char** argv) { return kvc::bench::Main(argc, argv); }
