#include "services/cli/batch_testing.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/kv_io.h"

namespace kvc::cli::testing {
namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Status WriteAll(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Status::IOError(std::string("write: ") + std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

std::string Name(int l, const char* kind) { return "layers." + std::to_string(l) + "." + kind; }

// The tensors of one generated layer, in kv_io's order, named for layer `l`.
std::vector<std::pair<std::string, Tensor>> LayerTensors(const LayerKv& x, int l) {
  std::vector<std::pair<std::string, Tensor>> out = {{Name(l, "k"), x.k}, {Name(l, "v"), x.v}};
  if (x.q_window) out.emplace_back(Name(l, "q_window"), *x.q_window);
  if (x.q_ref) out.emplace_back(Name(l, "q_ref"), *x.q_ref);
  return out;
}

Result<KvCache> GenerateLayer(const SynthOptions& opts, int l) {
  SynthOptions one = opts;
  one.layout.n_layers = 1;
  one.seed = opts.seed + static_cast<uint64_t>(l);
  return GenerateSyntheticKv(one);
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

Status WriteSyntheticDumpStreaming(const std::string& path, const SynthOptions& opts,
                                   const std::map<std::string, std::string>& extra) {
  KVC_ASSIGN_OR_RETURN(KvCache first, GenerateLayer(opts, 0));
  const int L = opts.layout.n_layers;
  // Every layer has the same tensor shapes and dtypes as layer 0, so the header is known now.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  std::map<std::string, std::string> md = first.metadata;
  for (const auto& [k, v] : extra) md[k] = v;
  md["format"] = kKvCacheFormat;
  md["n_layers"] = std::to_string(L);
  md["n_q_heads"] = std::to_string(opts.layout.n_q_heads);
  nlohmann::ordered_json m = nlohmann::ordered_json::object();
  for (const auto& [k, v] : md) m[k] = v;
  h["__metadata__"] = m;
  uint64_t off = 0;
  for (int l = 0; l < L; ++l) {
    for (const auto& [name, t] : LayerTensors(first.layers[0], l)) {
      h[name] = {{"dtype", DTypeName(t.dtype())},
                 {"shape", t.shape()},
                 {"data_offsets", {off, off + t.nbytes()}}};
      off += t.nbytes();
    }
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  Fd f{::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
  if (f.fd < 0) return Status::IOError("create " + path + ": " + std::strerror(errno));
  const uint64_t len = header.size();
  KVC_RETURN_IF_ERROR(WriteAll(f.fd, &len, 8));
  KVC_RETURN_IF_ERROR(WriteAll(f.fd, header.data(), header.size()));
  for (int l = 0; l < L; ++l) {
    KvCache layer;
    if (l == 0) {
      layer = std::move(first);
    } else {
      KVC_ASSIGN_OR_RETURN(layer, GenerateLayer(opts, l));
    }
    for (const auto& [name, t] : LayerTensors(layer.layers[0], l)) {
      KVC_RETURN_IF_ERROR(WriteAll(f.fd, t.raw(), t.nbytes()));
    }
  }
  if (::fsync(f.fd) != 0) return Status::IOError("fsync " + path);
  return Status::OK();
}

Result<ChildProcess> StartChild(const std::vector<std::string>& argv,
                                const std::string& capture_prefix) {
  ChildProcess c;
  c.out_path = capture_prefix + ".stdout";
  c.err_path = capture_prefix + ".stderr";
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  c.pid = ::fork();
  if (c.pid < 0) return Status::IOError(std::string("fork: ") + std::strerror(errno));
  if (c.pid == 0) {
    const int out = ::open(c.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(c.err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) ::_exit(127);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return c;
}

ChildExit WaitChild(const ChildProcess& child) {
  ChildExit e;
  int status = 0;
  struct rusage ru {};
  while (::wait4(child.pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  e.exited = WIFEXITED(status);
  e.exit_code = e.exited ? WEXITSTATUS(status) : -1;
  e.term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  e.peak_rss_bytes = int64_t{ru.ru_maxrss} * 1024;  // Linux reports KiB
  e.out = ReadFile(child.out_path);
  e.err = ReadFile(child.err_path);
  return e;
}

std::string KvcompactBinary() {
#ifdef KVC_KVCOMPACT_BIN
  return KVC_KVCOMPACT_BIN;
#else
  return "kvcompact";
#endif
}

}  // namespace kvc::cli::testing
