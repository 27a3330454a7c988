// Registration of `kvcompact put | lookup | fetch | stats` (remote.h) on the CLI11 app.
#include <CLI/CLI.hpp>

#include "services/cli/remote.h"
#include "services/cli/remote_flags.h"

namespace kvc::cli {

struct RemoteCommands::Flags {
  RemoteFlags values;
  CLI::App* put = nullptr;
  CLI::App* lookup = nullptr;
  CLI::App* fetch = nullptr;
  CLI::App* stats = nullptr;
};

namespace {

void AddWorkers(CLI::App* c, RemoteFlags& f) {
  c->add_option("--workers", f.workers, "kvcompactd workers: host:thrift_port[:ucx_port],...")
      ->required();
  c->add_option("--timeout-ms", f.timeout_ms, "time budget of the operation (0: client default)")
      ->capture_default_str();
  c->add_flag("--json", f.json, "print the result as one JSON object");
}

void AddKeyFlags(CLI::App* c, RemoteFlags& f) {
  c->add_option("--tokens", f.tokens, "token ids \"1,2,3\" (default: the dump's)");
  c->add_option("--tenant", f.tenant, "tenant (salts the prefix hash)");
  c->add_option("--model", f.model, "model id (default: the dump's \"model\", else \"default\")");
  c->add_option("--block-size", f.block_size, "tokens per prefix hash block")
      ->capture_default_str();
  c->add_option("--hash", f.hash, "prefix hash: sha256|xxh3_128")->capture_default_str();
  c->add_option("--ucx", f.ucx, "tensor transport: auto|off|required")->capture_default_str();
}

void AddSpecFlags(CLI::App* c, RemoteFlags& f) {
  c->add_option("--method", f.method, "am|okdmd|dynamickv|d2o|streamingllm|h2o|snapkv|pyramidkv")
      ->capture_default_str();
  c->add_option("--ratio", f.ratio, "compaction ratio")->capture_default_str();
  c->add_option("--budget", f.budget, "keys per (layer, head); overrides --ratio")
      ->capture_default_str();
  c->add_option("--allocator", f.allocator, "default|uniform|pyramid|dynamickv|d2o|am")
      ->capture_default_str();
  c->add_option("--am-selection", f.am_selection, "highest|omp|omp-fast|scores")
      ->capture_default_str();
  c->add_option("--selector", f.selector, "selector method for --am-selection scores")
      ->capture_default_str();
  c->add_option("--seed", f.seed, "seed of every random choice")->capture_default_str();
  c->add_option("--heldout-fraction", f.heldout_fraction, "share of q_ref held out")
      ->capture_default_str();
  c->add_option("--gate-min-cosine", f.gate_min_cosine, "quality gate floor (0: off)")
      ->capture_default_str();
  c->add_option("--option", f.options, "any spec field: KEY=VALUE (e.g. am.ridge=0.01)");
}

void AddSource(CLI::App* c, RemoteFlags& f, bool dump_required) {
  CLI::Option* in = c->add_option("--in", f.in, "KV dump (safetensors)");
  if (dump_required) {
    in->required();
    c->add_flag("--tokens-from-metadata", f.tokens_from_metadata,
                "take token ids from the dump's \"tokens\" metadata, never derive them");
  } else {
    c->add_option("--layout", f.layout, "L:KV:Q:D:DTYPE, with --tokens instead of --in");
  }
}

}  // namespace

RemoteCommands::RemoteCommands(CLI::App& app) : flags_(std::make_unique<Flags>()) {
  RemoteFlags& f = flags_->values;
  flags_->put = app.add_subcommand("put", "compact a KV dump on the workers and store it");
  AddWorkers(flags_->put, f);
  AddSource(flags_->put, f, /*dump_required=*/true);
  AddKeyFlags(flags_->put, f);
  AddSpecFlags(flags_->put, f);

  flags_->lookup = app.add_subcommand("lookup", "longest stored prefix of a request");
  AddWorkers(flags_->lookup, f);
  AddSource(flags_->lookup, f, /*dump_required=*/false);
  AddKeyFlags(flags_->lookup, f);
  AddSpecFlags(flags_->lookup, f);

  flags_->fetch = app.add_subcommand("fetch", "write the compacted cache of the longest prefix");
  AddWorkers(flags_->fetch, f);
  AddSource(flags_->fetch, f, /*dump_required=*/false);
  flags_->fetch->add_option("--out", f.out, "output file (safetensors)")->required();
  AddKeyFlags(flags_->fetch, f);
  AddSpecFlags(flags_->fetch, f);

  flags_->stats = app.add_subcommand("stats", "health and counters of every worker");
  AddWorkers(flags_->stats, f);
}

RemoteCommands::~RemoteCommands() = default;

bool RemoteCommands::parsed() const {
  return flags_->put->parsed() || flags_->lookup->parsed() || flags_->fetch->parsed() ||
         flags_->stats->parsed();
}

int RemoteCommands::Run(std::ostream& out, std::ostream& err) {
  RemoteFlags f = flags_->values;
  f.op = flags_->put->parsed()      ? RemoteOp::kPut
         : flags_->lookup->parsed() ? RemoteOp::kLookup
         : flags_->fetch->parsed()  ? RemoteOp::kFetch
                                    : RemoteOp::kStats;
  return RunRemote(f, out, err);
}

}  // namespace kvc::cli
