// The kvcompact command-line tool: compact a KV dump, evaluate a compacted cache, generate a
// synthetic dump. main.cc is a thin wrapper around Main(); the commands are plain functions so
// tests can run them in-process.
//
//   kvcompact compact  --in DUMP.safetensors --out OUT.safetensors [--method am] [--ratio 10]
//                      [--budget N] [--allocator default] [--am-selection highest]
//                      [--selector okdmd] [--seed 0] [--threads 0] [--heldout-fraction 0.2]
//                      [--gate-min-cosine 0] [--gate-escalation 1.5] [--gate-max-rounds 4]
//                      [--ridge 1e-5] [--refine-rounds 0] [--nnls-pg-steps 30] [--no-fit-beta]
//                      [--no-fit-values] [--keys-as-queries] [--keys-as-queries-fit] [--json]
//   kvcompact eval     --in DUMP --compacted OUT [--heldout FILE] [--threads 0] [--json]
//   kvcompact generate --out DUMP --preset tiny|small|llama8b [--tokens T] [--dtype f16|f32|bf16]
//                      [--seed 1] [--layers L] [--n-ref N] [--window W]
//
// Exit codes: 0 ok; 1 runtime error (I/O, compaction, a failed quality gate: the output is still
// written and records passed=false); 2 bad usage (unknown flag or value, out-of-range spec
// field). Errors are printed to `err` as "error: <status>".
//
// Thread safety: the functions share no state.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>

#include "kernels/spec.h"

namespace kvc::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRuntime = 1;
inline constexpr int kExitUsage = 2;

struct CompactArgs {
  std::string in;
  std::string out;
  std::string method = "am";
  double ratio = 10.0;
  int64_t budget = 0;
  std::string allocator = "default";
  std::string am_selection = "highest";
  std::string selector = "okdmd";
  uint64_t seed = 0;
  int threads = 0;
  double heldout_fraction = 0.2;
  double gate_min_cosine = 0.0;
  double gate_escalation = 1.5;
  int gate_max_rounds = 4;
  double ridge = CompactionSpec{}.am.ridge;
  int refine_rounds = 0;
  int nnls_pg_steps = 30;
  bool no_fit_beta = false;
  bool no_fit_values = false;
  bool keys_as_queries = false;
  bool keys_as_queries_fit = false;
  bool json = false;  // print the fidelity report and the gate as JSON lines
};

struct EvalArgs {
  std::string in;
  std::string compacted;
  std::string heldout;  // optional file with layers.{l}.q_ref held-out queries
  int threads = 0;
  bool json = false;
};

struct GenerateArgs {
  std::string out;
  std::string preset = "tiny";  // tiny | small | llama8b
  int64_t tokens = 0;           // 0: the preset's (llama8b: 8192)
  std::string dtype;            // f32 | f16 | bf16; empty: the preset's
  uint64_t seed = 1;
  int layers = 0;       // 0: the preset's
  int64_t n_ref = -1;   // -1: the preset's
  int64_t window = -1;  // -1: the preset's
};

// The CompactionSpec the compact flags describe (shared by `compact` and `batch`), validated.
// InvalidArgument / NotSupported name the bad flag value; callers treat them as bad usage.
Result<CompactionSpec> BuildSpec(const CompactArgs& args);

int RunCompact(const CompactArgs& args, std::ostream& out, std::ostream& err);
int RunEval(const EvalArgs& args, std::ostream& out, std::ostream& err);
int RunGenerate(const GenerateArgs& args, std::ostream& out, std::ostream& err);

// Parses argv (CLI11) and runs the chosen command.
int Main(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace kvc::cli
