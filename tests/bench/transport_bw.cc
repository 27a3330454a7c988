// transport_bw: upload bandwidth into a kvcompact Listener against ucx_perftest tag_bw.
//
// For each transport (UCX_TLS=shm, UCX_TLS=tcp) and whole-layer message size (1, 8, 64 MiB) it
// measures our upload path (a KvCache whose k and v tensors are one message each: header,
// per-layer rendezvous frames hashed on the fly, verified on arrival, end marker and the
// worker's verdict) between two processes on loopback, then runs ucx_perftest -t tag_bw (server
// and client processes, same size, same UCX_TLS) as the anchor, and prints both and their ratio
// (design §7 target: >= 90%). Bandwidths are in MB/s as ucx_perftest prints them (2^20 bytes).
//
//   transport_bw [--sizes 1,8,64] [--tls shm,tcp] [--seconds 1] [--rounds 3] [--streams 1]
//                [--quick]
// Rounds alternate ours and ucx_perftest so both see the same background load; the table shows
// the best round of each and lists every round.
// Internal modes (started by the above): --serve, --client --port P --size BYTES ...
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "services/transport/endpoint.h"
#include "services/transport/listener.h"

#ifndef KVC_UCX_PERFTEST
#define KVC_UCX_PERFTEST "ucx_perftest"
#endif

extern char** environ;

namespace kvc::transport::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr double kMiB = 1024.0 * 1024.0;

struct Config {
  std::vector<size_t> sizes_mib{1, 8, 64};
  std::vector<std::string> tls{"shm", "tcp"};
  double seconds = 1.0;
  int rounds = 3;
  int streams = 1;
  int busy_poll_us = 200;
  bool describe = false;
  std::string self;
};

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

// --- Child processes ----------------------------------------------------------------------------

struct Child {
  pid_t pid = -1;
  int out = -1;  // read end of its stdout
};

Child Spawn(const std::vector<std::string>& args, const std::string& tls) {
  std::vector<std::string> env_store{"UCX_TLS=" + tls};
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, "UCX_TLS=", 8) != 0) env_store.emplace_back(*e);
  }
  std::vector<char*> envp, argv;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> a = args;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  int fds[2];
  if (pipe(fds) != 0) return {};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  Child c;
  if (posix_spawnp(&c.pid, argv[0], &fa, nullptr, argv.data(), envp.data()) != 0) c.pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  c.out = fds[0];
  return c;
}

std::string ReadLine(int fd) {
  std::string line;
  char ch;
  while (read(fd, &ch, 1) == 1 && ch != '\n') line += ch;
  return line;
}

std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) out.append(buf, n);
  return out;
}

int Reap(Child& c, std::chrono::seconds limit) {
  const auto end = Clock::now() + limit;
  int status = 0;
  while (Clock::now() < end) {
    if (waitpid(c.pid, &status, WNOHANG) == c.pid) {
      close(c.out);
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(c.pid, SIGKILL);
  waitpid(c.pid, &status, 0);
  close(c.out);
  return -1;
}

// --- Our side: server and client modes ----------------------------------------------------------

int Serve(const Config& cfg) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before any thread starts
  UcxContextOptions co;
  co.busy_poll = std::chrono::microseconds(cfg.busy_poll_us);
  Result<std::shared_ptr<UcxContext>> ctx = UcxContext::Create(co);
  if (!ctx.ok()) return std::fprintf(stderr, "%s\n", ctx.status().ToString().c_str()), 1;
  ListenerOptions lo;
  lo.address = "127.0.0.1";
  lo.staging_bytes = size_t{6} << 30;
  lo.handler_threads = 2;
  auto on_upload = [](const UploadInfo&, KvCache) { return Status::OK(); };
  Result<std::unique_ptr<Listener>> l = Listener::Start(*ctx, lo, on_upload, nullptr);
  if (!l.ok()) return std::fprintf(stderr, "%s\n", l.status().ToString().c_str()), 1;
  std::printf("PORT %u\n", (*l)->port());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  const ListenerStats st = (*l)->stats();
  std::fprintf(stderr, "listener: %llu uploads, %zu MiB staged in use, %zu MiB cached\n",
               static_cast<unsigned long long>(st.uploads_completed), st.staging_in_use >> 20,
               st.staging_cached >> 20);
  return 0;
}

// A cache whose k and v tensors are `bytes` each (f16, 8 KV heads, head_dim 128), with enough
// layers for about 256 MiB per upload.
KvCache BenchCache(size_t bytes) {
  KvLayout L;
  L.n_kv_heads = 8;
  L.n_q_heads = 32;
  L.head_dim = 128;
  L.dtype = DType::kF16;
  L.tokens = static_cast<int64_t>(bytes / (8 * 128 * 2));
  L.n_layers = static_cast<int>(std::max<size_t>(2, (size_t{128} << 20) / bytes));
  KvCache c;
  c.layout = L;
  for (int l = 0; l < L.n_layers; ++l) {
    LayerKv x;
    x.k = Tensor::Empty(DType::kF16, {L.n_kv_heads, L.tokens, L.head_dim});
    x.v = Tensor::Empty(DType::kF16, {L.n_kv_heads, L.tokens, L.head_dim});
    std::memset(x.k.raw(), 0x31 + l, x.k.nbytes());
    std::memset(x.v.raw(), 0x57 + l, x.v.nbytes());
    c.layers.push_back(std::move(x));
  }
  return c;
}

int Client(const Config& cfg, uint16_t port, size_t bytes) {
  UcxContextOptions co;
  co.busy_poll = std::chrono::microseconds(cfg.busy_poll_us);
  Result<std::shared_ptr<UcxContext>> ctx = UcxContext::Create(co);
  if (!ctx.ok()) return std::fprintf(stderr, "%s\n", ctx.status().ToString().c_str()), 1;
  Result<std::unique_ptr<Endpoint>> ep = Connect(*ctx, "127.0.0.1", port);
  if (!ep.ok()) return std::fprintf(stderr, "%s\n", ep.status().ToString().c_str()), 1;
  if (cfg.describe) std::fprintf(stderr, "%s", (*ep)->Describe().c_str());
  const KvCache cache = BenchCache(bytes);
  std::atomic<uint64_t> sent{0};
  std::atomic<bool> failed{false};
  auto stream = [&](Clock::time_point until, bool count) {
    do {
      Result<UploadReceipt> r = (*ep)->Upload(cache, {});
      if (!r.ok()) {
        std::fprintf(stderr, "upload: %s\n", r.status().ToString().c_str());
        failed = true;
        return;
      }
      if (count) sent += r->bytes;
    } while (Clock::now() < until && !failed);
  };
  stream(Clock::now(), false);  // warm-up: registrations, staging buffers, page faults
  const auto t0 = Clock::now();
  const auto until =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(cfg.seconds));
  std::vector<std::thread> threads;
  for (int i = 0; i < cfg.streams; ++i) threads.emplace_back(stream, until, true);
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (failed) return 1;
  std::printf("RESULT %.2f %llu %.3f\n", sent / secs / kMiB,
              static_cast<unsigned long long>(sent.load()), secs);
  return 0;
}

// --- Parent: orchestration ----------------------------------------------------------------------

std::vector<std::string> OurArgs(const Config& cfg, const char* mode) {
  return {cfg.self,         mode,
          "--seconds",      std::to_string(cfg.seconds),
          "--streams",      std::to_string(cfg.streams),
          "--busy-poll-us", std::to_string(cfg.busy_poll_us)};
}

double MeasureOurs(const Config& cfg, const std::string& tls, uint16_t port, size_t bytes,
                   bool describe) {
  std::vector<std::string> args = OurArgs(cfg, "--client");
  args.insert(args.end(), {"--port", std::to_string(port), "--size", std::to_string(bytes)});
  if (describe) args.push_back("--describe");  // prints the endpoint's lanes to stderr
  Child c = Spawn(args, tls);
  const std::string out = ReadAll(c.out);
  const int rc = Reap(c, std::chrono::seconds(120));
  double mbps = 0;
  if (rc != 0 || std::sscanf(out.c_str(), "RESULT %lf", &mbps) != 1) {
    std::fprintf(stderr, "our client failed (rc %d): %s\n", rc, out.c_str());
    return -1;
  }
  return mbps;
}

// The "overall" bandwidth column of ucx_perftest -f's final line.
double ParsePerftest(const std::string& out) {
  double bw = -1;
  std::stringstream in(out);
  for (std::string line; std::getline(in, line);) {
    std::stringstream ls(line);
    std::vector<double> v;
    for (std::string tok; ls >> tok;) {
      char* end = nullptr;
      const double x = std::strtod(tok.c_str(), &end);
      if (end == tok.c_str() || *end != '\0') break;
      v.push_back(x);
    }
    if (v.size() == 8) bw = v[5];
  }
  return bw;
}

double MeasurePerftest(const Config& cfg, const std::string& tls, size_t bytes, double est_mbps) {
  const double total = std::max(est_mbps, 100.0) * kMiB * cfg.seconds;
  const size_t iters = std::clamp<size_t>(static_cast<size_t>(total / bytes), 8, 20000);
  const std::string port = std::to_string(20000 + std::random_device{}() % 20000);
  const std::vector<std::string> common{"-t", "tag_bw",
                                        "-s", std::to_string(bytes),
                                        "-n", std::to_string(iters),
                                        "-w", std::to_string(std::max<size_t>(2, iters / 10)),
                                        "-p", port,
                                        "-f"};
  std::vector<std::string> server_args{KVC_UCX_PERFTEST};
  server_args.insert(server_args.end(), common.begin(), common.end());
  Child server = Spawn(server_args, tls);
  double bw = -1;
  for (int attempt = 0; attempt < 25 && bw < 0; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::vector<std::string> client_args{KVC_UCX_PERFTEST, "127.0.0.1"};
    client_args.insert(client_args.end(), common.begin(), common.end());
    Child client = Spawn(client_args, tls);
    const std::string out = ReadAll(client.out);
    if (Reap(client, std::chrono::seconds(120)) == 0) bw = ParsePerftest(out);
  }
  Reap(server, std::chrono::seconds(10));
  return bw;
}

struct Row {
  std::string tls;
  size_t mib = 0;
  std::vector<double> ours, perftest;  // one per round
};

double Best(const std::vector<double>& v) {
  return v.empty() ? -1 : *std::max_element(v.begin(), v.end());
}

std::string Join(const std::vector<double>& v) {
  std::string out;
  for (double x : v) out += (out.empty() ? "" : " ") + std::to_string(static_cast<int>(x));
  return out;
}

// Rounds alternate ours and ucx_perftest for every size, so both see the same background load;
// the table reports the best round of each.
bool MeasureTransport(const Config& cfg, const std::string& tls, std::vector<Row>* rows) {
  Child server = Spawn(OurArgs(cfg, "--serve"), tls);
  unsigned port = 0;
  if (std::sscanf(ReadLine(server.out).c_str(), "PORT %u", &port) != 1) {
    std::fprintf(stderr, "listener did not start for UCX_TLS=%s\n", tls.c_str());
    Reap(server, std::chrono::seconds(10));
    return false;
  }
  const size_t first = rows->size();
  for (size_t mib : cfg.sizes_mib) rows->push_back(Row{tls, mib, {}, {}});
  for (int round = 0; round < cfg.rounds; ++round) {
    for (size_t i = first; i < rows->size(); ++i) {
      Row& r = (*rows)[i];
      const size_t bytes = r.mib << 20;
      r.ours.push_back(MeasureOurs(cfg, tls, static_cast<uint16_t>(port), bytes, round == 0));
      r.perftest.push_back(MeasurePerftest(cfg, tls, bytes, r.ours.back()));
      std::fprintf(stderr,
                   "  round %d UCX_TLS=%s %4zu MiB: ours %6.0f MB/s, ucx_perftest %6.0f MB/s\n",
                   round, tls.c_str(), r.mib, r.ours.back(), r.perftest.back());
    }
  }
  kill(server.pid, SIGTERM);
  Reap(server, std::chrono::seconds(10));
  return true;
}

int Compare(const Config& cfg) {
  std::vector<Row> rows;
  for (const std::string& tls : cfg.tls) {
    if (!MeasureTransport(cfg, tls, &rows)) return 1;
  }
  std::printf("\n%-8s %9s %12s %18s %7s   %s\n", "UCX_TLS", "size", "ours MB/s",
              "ucx_perftest MB/s", "ratio", "rounds: ours | perftest");
  bool ok = true;
  for (const Row& r : rows) {
    const double ours = Best(r.ours), anchor = Best(r.perftest);
    const double ratio = ours > 0 && anchor > 0 ? ours / anchor : 0;
    ok &= ours > 0 && anchor > 0;
    std::printf("%-8s %5zu MiB %12.0f %18.0f %6.0f%%   %s | %s%s\n", r.tls.c_str(), r.mib, ours,
                anchor, 100 * ratio, Join(r.ours).c_str(), Join(r.perftest).c_str(),
                ratio >= 0.9 ? "" : "  (below the 90% target)");
  }
  std::printf("best of %d rounds, %.1f s per measurement, %d upload stream(s), %u CPUs\n",
              cfg.rounds, cfg.seconds, cfg.streams, std::thread::hardware_concurrency());
  return ok ? 0 : 1;
}

void Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--sizes 1,8,64] [--tls shm,tcp] [--seconds S] [--rounds N] "
               "[--streams N] [--busy-poll-us U] [--quick]\n",
               argv0);
}

// Returns false on a usage error.
bool ParseArgs(int argc, char** argv, Config* cfg, std::string* mode, uint16_t* port,
               size_t* size) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    const std::string v = has_value ? argv[i + 1] : "";
    if (a == "--serve" || a == "--client") {
      *mode = a.substr(2);
      continue;
    }
    if (a == "--quick") {
      cfg->sizes_mib = {1, 8};
      cfg->seconds = 0.3;
      cfg->rounds = 1;
      continue;
    }
    if (a == "--describe") {
      cfg->describe = true;
      continue;
    }
    if (!has_value) return false;
    ++i;
    if (a == "--sizes") {
      cfg->sizes_mib.clear();
      for (auto& s : Split(v)) cfg->sizes_mib.push_back(std::stoul(s));
    } else if (a == "--tls") {
      cfg->tls = Split(v);
    } else if (a == "--seconds") {
      cfg->seconds = std::stod(v);
    } else if (a == "--rounds") {
      cfg->rounds = std::max(1, std::stoi(v));
    } else if (a == "--streams") {
      cfg->streams = std::max(1, std::stoi(v));
    } else if (a == "--busy-poll-us") {
      cfg->busy_poll_us = std::stoi(v);
    } else if (a == "--port") {
      *port = static_cast<uint16_t>(std::stoi(v));
    } else if (a == "--size") {
      *size = std::stoul(v);
    } else {
      return false;
    }
  }
  return true;
}

int Main(int argc, char** argv) {
  Config cfg;
  cfg.self = argv[0];
  std::string mode = "compare";
  uint16_t port = 0;
  size_t size = 0;
  if (!ParseArgs(argc, argv, &cfg, &mode, &port, &size)) {
    Usage(argv[0]);
    return std::string(argc > 1 ? argv[1] : "") == "--help" ? 0 : 2;
  }
  if (mode == "serve") return Serve(cfg);
  if (mode == "client") return Client(cfg, port, size);
  return Compare(cfg);
}

}  // namespace
}  // namespace kvc::transport::bench

int main(int argc, char** argv) { return kvc::transport::bench::Main(argc, argv); }
