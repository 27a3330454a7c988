// A client process for the multi-process transport tests. It inherits UCX_TLS from its parent.
//   transport_test_peer --port N --mode roundtrip [--seed S]
//     uploads testing::MakeKvCache(SmallLayout(128, F16), 8, 16, S), then fetches key
//     "compacted-S" and compares it with testing::MakeCompactedCache(SmallLayout(128, F16), 7, S).
//   transport_test_peer --port N --mode stall
//     starts an upload, sends two of its tensors and then waits (to be killed mid-upload).
// Exit status: 0 success, 2 usage or connect failure, 3 upload failure, 4 fetch failure.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "services/transport/endpoint.h"
#include "services/transport/testing.h"

namespace kvc::transport {
namespace {

int Fail(int code, const std::string& what, const Status& st) {
  std::fprintf(stderr, "transport_test_peer: %s: %s\n", what.c_str(), st.ToString().c_str());
  return code;
}

int RoundTrip(Endpoint& ep, uint64_t seed) {
  const KvLayout layout = testing::SmallLayout(128, DType::kF16);
  Result<UploadReceipt> up = ep.Upload(testing::MakeKvCache(layout, 8, 16, seed), {});
  if (!up.ok()) return Fail(3, "upload", up.status());
  Result<CompactedCache> got = ep.Fetch("compacted-" + std::to_string(seed), {});
  if (!got.ok()) return Fail(4, "fetch", got.status());
  const std::string diff =
      testing::DiffCompacted(testing::MakeCompactedCache(layout, 7, seed), *got);
  if (!diff.empty()) return Fail(4, "fetched cache differs", Status::Corruption(diff));
  std::printf("roundtrip ok session=%llu\n", static_cast<unsigned long long>(up->session));
  return 0;
}

int Stall(Endpoint& ep) {
  KvLayout layout = testing::SmallLayout(4096, DType::kF32);  // 512 KiB per tensor
  UploadOptions o;
  o.faults.stop_after_frames = 2;
  o.faults.send_end = false;
  o.timeout = std::chrono::minutes(5);
  std::printf("stalling\n");
  std::fflush(stdout);
  Result<UploadReceipt> r = ep.Upload(testing::MakeKvCache(layout, 0, 0, 1), o);
  return Fail(3, "stalled upload ended", r.ok() ? Status::OK() : r.status());
}

int Main(int argc, char** argv) {
  int port = 0;
  uint64_t seed = 1;
  std::string mode;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--port")) port = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--seed")) seed = std::strtoull(argv[i + 1], nullptr, 10);
    if (!std::strcmp(argv[i], "--mode")) mode = argv[i + 1];
  }
  if (port <= 0 || (mode != "roundtrip" && mode != "stall")) {
    std::fprintf(stderr, "usage: %s --port N --mode roundtrip|stall [--seed S]\n", argv[0]);
    return 2;
  }
  Result<std::shared_ptr<UcxContext>> ctx = UcxContext::Create();
  if (!ctx.ok()) return Fail(2, "context", ctx.status());
  Result<std::unique_ptr<Endpoint>> ep = Connect(*ctx, "127.0.0.1", static_cast<uint16_t>(port));
  if (!ep.ok()) return Fail(2, "connect", ep.status());
  return mode == "roundtrip" ? RoundTrip(**ep, seed) : Stall(**ep);
}

}  // namespace
}  // namespace kvc::transport

int main(int argc, char** argv) { return kvc::transport::Main(argc, argv); }
