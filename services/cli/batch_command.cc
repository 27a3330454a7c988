// The `batch` subcommand: flags -> BatchOptions, signal handling, RunBatch.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cctype>
#include <cmath>
#include <iostream>
#include <string>

#include "services/cli/batch.h"
#include "services/cli/batch_plan.h"
#include "services/cli/commands.h"

namespace kvc::cli {
namespace {

constexpr char kDescription[] =
    "compact every *.safetensors dump of a directory with bounded memory; resumable";

constexpr char kFooter[] = R"(
Outputs: OUT/<name>.safetensors, written to a hidden temporary, fsynced and renamed, so an
output is either complete or absent. A rerun skips documents whose output is finished (it
verifies and records the same spec and the same input), removes temporaries a killed run left,
and redoes the rest. A bad input is reported and skipped; the others go on.
Memory: layers are read from the memory-mapped dump one group at a time and released after
use; groups shrink (and, for method am, the context is cut into chunks) until the modelled
peak of a document fits --memory-budget / --jobs. The summary says, per document, how it was
grouped and chunked and what that means for cross-layer budget allocation (pyramid: exact
schedule over all layers; d2o, dynamickv, am allocator: within each group).
--store PATH: also put each result into the tiered store at PATH (warm tier), keyed by the
prefix hash chain of the dump's "tokens" metadata (when it lists the T token ids and "model" is
set) or else by the SHA-256 of the dump file, and by the SHA-256 of the spec. Needs a build
with the store library (KVC_BUILD_SERVICES=ON); otherwise it fails with not_supported.
--workers host:port,...: reserved for compaction on remote workers; it fails with "not yet
supported" until the client library (services/client) is built.
Exit codes: 0 all documents done or already done; 1 some failed, were interrupted or failed
their quality gate; 2 bad usage.)";

std::atomic<bool> g_cancel{false};

extern "C" void OnSignal(int) { g_cancel.store(true); }

// Installs SIGINT/SIGTERM handlers (one-shot: a second signal has the default effect) and
// restores the previous ones on destruction.
class ScopedSignals {
 public:
  ScopedSignals() {
    g_cancel.store(false);
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    ::sigaction(SIGINT, &sa, &old_int_);
    ::sigaction(SIGTERM, &sa, &old_term_);
  }
  ~ScopedSignals() {
    ::sigaction(SIGINT, &old_int_, nullptr);
    ::sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

void AddSpecFlags(CLI::App* c, CompactArgs& a) {
  c->add_option("--method", a.method, "am|okdmd|dynamickv|d2o|streamingllm|h2o|snapkv|pyramidkv")
      ->capture_default_str();
  c->add_option("--ratio", a.ratio, "T / keys kept per head")->capture_default_str();
  c->add_option("--budget", a.budget, "keys per head (overrides --ratio)");
  c->add_option("--allocator", a.allocator, "default|uniform|pyramid|dynamickv|d2o|am")
      ->capture_default_str();
  c->add_option("--am-selection", a.am_selection, "highest|omp|omp-fast|scores")
      ->capture_default_str();
  c->add_option("--selector", a.selector, "method whose scores pick keys (scores)")
      ->capture_default_str();
  c->add_option("--seed", a.seed, "seed of every random choice")->capture_default_str();
  c->add_option("--heldout-fraction", a.heldout_fraction, "share of q_ref held out")
      ->capture_default_str();
  c->add_option("--gate-min-cosine", a.gate_min_cosine, "quality floor (0 = off)");
  c->add_option("--gate-escalation", a.gate_escalation, "budget factor per retry")
      ->capture_default_str();
  c->add_option("--gate-max-rounds", a.gate_max_rounds, "retries")->capture_default_str();
  c->add_option("--ridge", a.ridge, "AM value ridge (x ||X||^2 / t)");
  c->add_option("--refine-rounds", a.refine_rounds, "AM refinement rounds (0-3)");
  c->add_option("--nnls-pg-steps", a.nnls_pg_steps, "AM projected-gradient steps")
      ->capture_default_str();
  c->add_flag("--no-fit-beta", a.no_fit_beta, "keep beta = 0");
  c->add_flag("--no-fit-values", a.no_fit_values, "keep the selected values");
  c->add_flag("--keys-as-queries", a.keys_as_queries, "AM without q_ref: select only");
  c->add_flag("--keys-as-queries-fit", a.keys_as_queries_fit, "... and fit anyway");
}

}  // namespace

struct BatchCommand::Flags {
  BatchOptions opt;
  CompactArgs spec;
  std::string memory = "4GiB";
  std::string progress = "auto";
};

bool ParseByteSize(const std::string& text, int64_t* bytes) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    return false;
  }
  std::string unit = text.substr(pos);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.ends_with("IB"))
    unit.erase(unit.size() - 2);
  else if (unit.size() > 1 && unit.ends_with("B"))
    unit.pop_back();
  double scale = 1;
  if (unit == "K")
    scale = 1024.0;
  else if (unit == "M")
    scale = 1024.0 * 1024;
  else if (unit == "G")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "T")
    scale = 1024.0 * 1024 * 1024 * 1024;
  else if (!unit.empty() && unit != "B")
    return false;
  const double b = v * scale;
  if (!std::isfinite(b) || b < 1 || b > 9.0e18) return false;
  *bytes = static_cast<int64_t>(b);
  return true;
}

BatchCommand::BatchCommand(CLI::App& app) : flags_(std::make_shared<Flags>()) {
  Flags& f = *flags_;
  sub_ = app.add_subcommand("batch", kDescription);
  sub_->footer(kFooter);
  sub_->add_option("--in", f.opt.in_dir, "directory of dumps (*.safetensors)")->required();
  sub_->add_option("--out", f.opt.out_dir, "directory of compacted caches")->required();
  sub_->add_option("--store", f.opt.store_path, "also put results into the tiered store here");
  sub_->add_option("--workers", f.opt.workers, "host:port,... (reserved: not yet supported)");
  sub_->add_option("--tenant", f.opt.tenant, "tenant in the store key's salt");
  sub_->add_option("--memory-budget", f.memory, "peak memory of the run, e.g. 4GiB, 512M")
      ->capture_default_str();
  sub_->add_option("--jobs", f.opt.jobs, "documents at a time (0 = auto)")->capture_default_str();
  sub_->add_option("--threads", f.opt.threads, "threads per document (0 = cores / jobs)")
      ->capture_default_str();
  sub_->add_option("--group-layers", f.opt.group_layers, "layers per group (0 = fit the budget)")
      ->capture_default_str();
  sub_->add_option("--chunk-tokens", f.opt.chunk_tokens,
                   "tokens per chunk, method am only (0 = only when a layer does not fit)")
      ->capture_default_str();
  sub_->add_flag("--json", f.opt.json, "print the summary as JSON");
  sub_->add_option("--json-out", f.opt.json_out, "also write the JSON summary to this file");
  sub_->add_option("--progress", f.progress, "auto|bar|lines|none")->capture_default_str();
  sub_->add_option("--progress-interval", f.opt.progress_interval_s,
                   "seconds between progress lines when stderr is not a terminal")
      ->capture_default_str();
  AddSpecFlags(sub_, f.spec);
}

bool BatchCommand::parsed() const { return sub_->parsed(); }

int BatchCommand::Run(std::ostream& out, std::ostream& err) {
  Flags& f = *flags_;
  BatchOptions opt = f.opt;
  if (!ParseByteSize(f.memory, &opt.memory_bytes)) {
    err << "error: --memory-budget '" << f.memory << "' is not a size (e.g. 4GiB, 512M)\n";
    return kExitUsage;
  }
  if (!ParseProgressMode(f.progress, &opt.progress)) {
    err << "error: --progress must be auto, bar, lines or none\n";
    return kExitUsage;
  }
  Result<CompactionSpec> spec = BuildSpec(f.spec);
  if (!spec.ok()) {
    err << "error: " << spec.status().ToString() << "\n";
    return kExitUsage;
  }
  opt.spec = *spec;
  opt.err_is_terminal = &err == &std::cerr && ::isatty(STDERR_FILENO) == 1;
  ScopedSignals signals;
  opt.cancel = &g_cancel;
  return RunBatch(opt, out, err);
}

}  // namespace kvc::cli
