// The parsed flags of `kvcompact put | lookup | fetch | stats` and the function that runs the
// chosen command (internal to services/cli; usage is in remote.h). remote_run.cc implements
// RunRemote over the client library; builds without it use remote_unavailable.cc.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace kvc::cli {

enum class RemoteOp { kNone, kPut, kLookup, kFetch, kStats };

struct RemoteFlags {
  RemoteOp op = RemoteOp::kNone;
  std::string workers;
  std::string in;
  std::string out;
  std::string tokens;  // --tokens
  std::string layout;  // --layout L:KV:Q:D:DTYPE
  bool tokens_from_metadata = false;
  bool json = false;
  // Key flags.
  std::string tenant;
  std::string model;
  int block_size = 256;
  std::string hash = "sha256";
  std::string ucx = "auto";
  int64_t timeout_ms = 0;
  // Spec flags.
  std::string method = "am";
  double ratio = 10.0;
  int64_t budget = 0;
  std::string allocator = "default";
  std::string am_selection = "highest";
  std::string selector = "okdmd";
  uint64_t seed = 0;
  double heldout_fraction = 0.2;
  double gate_min_cosine = 0.0;
  std::vector<std::string> options;  // KEY=VALUE
};

// Runs flags.op; returns the exit code (remote.h).
int RunRemote(const RemoteFlags& flags, std::ostream& out, std::ostream& err);

}  // namespace kvc::cli
