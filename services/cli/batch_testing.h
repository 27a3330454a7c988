// Helpers of the batch tests: large synthetic dumps written without holding them in memory, and
// child processes of the real kvcompact binary with their peak resident set.
//
// Thread safety: the functions share no state.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "tests/synth/synth_kv.h"

namespace kvc::cli::testing {

// Writes a KV dump of opts.layout layer by layer: layer l is generated as a one-layer cache with
// seed opts.seed + l, so at most one layer is in memory. Tensors and metadata follow kv_io
// (layers.{l}.k/.v/.q_window/.q_ref, format, n_layers, n_q_heads, the generator's metadata)
// plus `extra` metadata. Writes `path` directly (not atomically).
Status WriteSyntheticDumpStreaming(const std::string& path, const SynthOptions& opts,
                                   const std::map<std::string, std::string>& extra = {});

struct ChildProcess {
  pid_t pid = -1;
  std::string out_path;  // captured stdout
  std::string err_path;  // captured stderr
};

struct ChildExit {
  bool exited = false;  // exited normally (exit_code valid)
  int exit_code = -1;
  int term_signal = 0;         // the signal that ended it, when !exited
  int64_t peak_rss_bytes = 0;  // ru_maxrss of the child
  std::string out, err;
};

// Starts `argv` (argv[0] is the program's path) with stdout and stderr redirected to files
// named after `capture_prefix`.
Result<ChildProcess> StartChild(const std::vector<std::string>& argv,
                                const std::string& capture_prefix);
// Waits for the child to end and reads its captured output.
ChildExit WaitChild(const ChildProcess& child);

// Path of the kvcompact binary under test.
std::string KvcompactBinary();

}  // namespace kvc::cli::testing
