// `kvcompact batch`: offline compaction of a directory of KV dumps with bounded memory, progress,
// and resumption.
//
//   kvcompact batch --in DIR --out DIR [--store PATH | --workers host:port,...]
//                   [--memory-budget 4GiB] [--jobs 0] [--threads 0] [--group-layers 0]
//                   [--chunk-tokens 0] [--json] [--json-out FILE] [--progress auto]
//                   [--progress-interval 10] [--tenant T]
//                   [every spec flag of `compact`: --method, --ratio, --budget, ...]
//
// Every DIR/*.safetensors (not hidden, not recursive) is compacted into OUT/<same name>. See
// batch_plan.h for memory, layer groups, chunking and what grouping means for cross-layer budget
// allocation; batch_document.h for the output's metadata; batch_writer.h for temporaries;
// batch_store.h for --store; batch_report.h for the JSON summary.
//
// A run, in order:
//   1. checks the flags (--workers is reserved: it fails until the client library exists;
//      --store fails with NotSupported in builds without the store library);
//   2. locks OUT (OUT/.kvcompact-batch.lock, flock: a second run on the same OUT fails at once)
//      and removes temporaries an interrupted run left there;
//   3. skips every document whose output is finished (it verifies, and records this spec and
//      the input's size and modification time); reports and skips inputs it cannot open;
//   4. compacts the rest, up to --jobs at a time while their modelled memory fits the budget
//      (each is planned to fit budget / jobs; one that cannot is planned for the whole budget
//      and starts once its modelled peak fits beside the running ones, or nothing runs);
//   5. prints the summary (text on stdout, or JSON with --json; --json-out also writes the JSON
//      to a file).
// SIGINT/SIGTERM (or `cancel`): documents in flight stop at the next layer group or chunk and
// remove their temporaries; nothing new starts; a second signal ends the process at once.
// Outputs appear only complete (written, fsynced, renamed); after SIGKILL the next run removes
// the temporaries and redoes the unfinished documents.
//
// Exit codes: 0 every document done or already done (and its gate met); 1 any document failed,
// was interrupted or failed its quality gate; 2 bad usage (flags, directories, --workers,
// --store without the store library).
//
// Thread safety: one RunBatch per process at a time (a run with several jobs pins the
// process-wide BLAS thread count, see batch_runner.cc; BatchCommand installs signal handlers).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>

#include "kernels/spec.h"
#include "services/cli/batch_progress.h"

namespace CLI {
class App;
}

namespace kvc::cli {

struct BatchOptions {
  std::string in_dir;      // required
  std::string out_dir;     // required; created when missing; must differ from in_dir
  std::string store_path;  // --store; empty: no store
  std::string workers;     // --workers; reserved (non-empty fails)
  std::string tenant;      // salt of the store key's prefix chain. Default: "".
  CompactionSpec spec;     // spec.threads is overridden by `threads`
  int64_t memory_bytes = int64_t{4} << 30;  // Default: 4 GiB.
  int jobs = 0;              // documents at a time; 0 = min(documents, max(1, cores / 4))
  int threads = 0;           // Compact threads per document; 0 = max(1, cores / jobs)
  int group_layers = 0;      // see PlanOptions. Default: 0 (auto).
  int64_t chunk_tokens = 0;  // see PlanOptions. Default: 0 (auto).
  bool json = false;         // summary as JSON on `out` instead of text
  std::string json_out;      // also write the JSON summary here (atomically)
  ProgressMode progress = ProgressMode::kAuto;  // kAuto: bar if `err_is_terminal`, else lines
  bool err_is_terminal = false;
  int progress_interval_s = 10;  // lines mode period. Default: 10 s.
  // Set by a signal handler or a test to stop the run gracefully. May be null.
  const std::atomic<bool>* cancel = nullptr;
};

// Runs the batch; returns the exit code. Usage errors and the summary as described above.
int RunBatch(const BatchOptions& options, std::ostream& out, std::ostream& err);

// Parses a byte size: "4294967296", "4G", "4GiB", "512M", "1.5GB" (K/M/G/T are powers of 1024,
// with or without "B"/"iB"). False for anything else or a value <= 0.
bool ParseByteSize(const std::string& text, int64_t* bytes);

// The `batch` subcommand of the kvcompact CLI. Construct it on the app before parsing; after
// parsing, Run() it if parsed(). Run installs SIGINT/SIGTERM handlers for its duration.
class BatchCommand {
 public:
  explicit BatchCommand(CLI::App& app);
  bool parsed() const;
  int Run(std::ostream& out, std::ostream& err);

 private:
  struct Flags;
  CLI::App* sub_ = nullptr;
  std::shared_ptr<Flags> flags_;
};

}  // namespace kvc::cli
