#include "services/cli/commands.h"

#include <CLI/CLI.hpp>
#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

#include "common/kv_io.h"
#include "common/safetensors.h"
#include "kernels/compactor.h"
#include "kernels/fidelity.h"
#include "services/cli/batch.h"
#include "services/cli/remote.h"
#include "tests/synth/synth_kv.h"

namespace kvc::cli {
namespace {

int Fail(std::ostream& err, const Status& st, int code) {
  err << "error: " << st.ToString() << "\n";
  return code;
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string Ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f ms", ms);
  return buf;
}

void PrintGate(const GateOutcome& g, std::ostream& out) {
  out << "gate: " << (g.requested ? (g.passed ? "passed" : "FAILED") : "not requested");
  if (g.requested) out << " (floor " << g.min_cosine << ")";
  out << ", rounds " << g.rounds << ", budgets";
  for (int64_t b : g.budgets_tried) out << " " << b;
  out << "\n";
}

void PrintTimings(const StageTimings& t, std::ostream& out) {
  out << "timings: score " << Ms(t.score_ms) << ", allocate " << Ms(t.allocate_ms) << ", select "
      << Ms(t.select_ms) << ", post " << Ms(t.post_ms) << ", fidelity " << Ms(t.fidelity_ms)
      << ", total " << Ms(t.total_ms) << "\n";
}

// Held-out queries from a file holding layers.{l}.q_ref for every layer.
Result<std::vector<Tensor>> QueriesFromFile(const std::string& path, int n_layers) {
  KVC_ASSIGN_OR_RETURN(SafetensorsReader file, SafetensorsReader::Open(path));
  std::vector<Tensor> out;
  for (int l = 0; l < n_layers; ++l) {
    const std::string name = "layers." + std::to_string(l) + ".q_ref";
    Result<Tensor> t = file.Get(name);
    if (!t.ok()) return t.status().WithContext(path + ": " + name);
    out.push_back(std::move(t).value());
  }
  return out;
}

Result<SynthOptions> BuildSynth(const GenerateArgs& a) {
  SynthOptions o;
  if (a.preset == "tiny") {
    o = SynthTiny();
  } else if (a.preset == "small") {
    o = SynthSmall();
  } else if (a.preset == "llama8b") {
    o = SynthLlama31_8B(a.tokens > 0 ? a.tokens : 8192);
  } else {
    return Status::InvalidArgument("unknown preset '" + a.preset +
                                   "' (valid: tiny, small, llama8b)");
  }
  if (a.tokens > 0) o.layout.tokens = a.tokens;
  if (!a.dtype.empty()) {
    KVC_ASSIGN_OR_RETURN(o.layout.dtype, ParseDType(Upper(a.dtype)));
  }
  if (!IsFloating(o.layout.dtype))
    return Status::InvalidArgument("--dtype must be f32, f16 or bf16");
  if (a.layers > 0) o.layout.n_layers = a.layers;
  if (a.n_ref >= 0) o.n_ref = a.n_ref;
  if (a.window >= 0) o.window = a.window;
  o.seed = a.seed;
  KVC_RETURN_IF_ERROR(ValidateSynthOptions(o));
  return o;
}

}  // namespace

int RunCompact(const CompactArgs& args, std::ostream& out, std::ostream& err) {
  Result<CompactionSpec> spec = BuildSpec(args);
  if (!spec.ok()) return Fail(err, spec.status(), kExitUsage);
  Result<KvCache> cache = LoadKvCache(args.in);
  if (!cache.ok()) return Fail(err, cache.status(), kExitRuntime);
  Result<CompactionResult> r = Compact(*cache, *spec);
  if (!r.ok()) return Fail(err, r.status(), kExitRuntime);
  Status saved = SaveCompactedCache(args.out, r->cache);
  if (!saved.ok()) return Fail(err, saved, kExitRuntime);
  const int64_t T = cache->layout.tokens;
  if (args.json) {
    out << "{\"fidelity\":" << (r->fidelity ? r->fidelity->ToJson() : "null")
        << ",\"gate\":" << r->gate.ToJson() << ",\"timings\":" << r->timings.ToJson() << "}\n";
  } else {
    out << "compacted " << args.in << " (" << cache->layout.ToString() << ") with "
        << MethodName(spec->method) << ": " << r->head_budget << " keys per head on average ("
        << r->cache.total_entries() << " of "
        << T * cache->layout.n_layers * cache->layout.n_kv_heads << " entries) -> " << args.out
        << "\n";
    if (r->fidelity) {
      out << r->fidelity->ToText();
    } else {
      out << "fidelity: not measured (no q_ref or heldout_fraction 0)\n";
    }
    PrintGate(r->gate, out);
    PrintTimings(r->timings, out);
  }
  if (r->gate.requested && !r->gate.passed) {
    return Fail(err,
                Status::FailedPrecondition("quality gate not met: held-out mean cosine below " +
                                           std::to_string(spec->gate.min_cosine) + " after " +
                                           std::to_string(r->gate.rounds) + " rounds; " + args.out +
                                           " was written and records passed=false"),
                kExitRuntime);
  }
  return kExitOk;
}

int RunEval(const EvalArgs& args, std::ostream& out, std::ostream& err) {
  Result<KvCache> full = LoadKvCache(args.in);
  if (!full.ok()) return Fail(err, full.status(), kExitRuntime);
  Result<CompactedCache> comp = LoadCompactedCache(args.compacted);
  if (!comp.ok()) return Fail(err, comp.status(), kExitRuntime);
  Result<std::vector<Tensor>> queries = args.heldout.empty()
                                            ? HeldoutQueries(*full, *comp)
                                            : QueriesFromFile(args.heldout, full->layout.n_layers);
  if (!queries.ok()) return Fail(err, queries.status(), kExitRuntime);
  Result<FidelityReport> rep = EvaluateFidelity(*full, *comp, *queries, args.threads);
  if (!rep.ok()) return Fail(err, rep.status(), kExitRuntime);
  if (args.json) {
    out << rep->ToJson() << "\n";
  } else {
    auto it = comp->metadata.find("method");
    out << "evaluating " << args.compacted << " (method "
        << (it != comp->metadata.end() ? it->second : "?") << ", " << comp->total_entries()
        << " entries) against " << args.in << "\n"
        << rep->ToText();
  }
  return kExitOk;
}

int RunGenerate(const GenerateArgs& args, std::ostream& out, std::ostream& err) {
  Result<SynthOptions> opts = BuildSynth(args);
  if (!opts.ok()) return Fail(err, opts.status(), kExitUsage);
  Result<KvCache> cache = GenerateSyntheticKv(*opts);
  if (!cache.ok()) return Fail(err, cache.status(), kExitRuntime);
  Status st = SaveKvCache(args.out, *cache);
  if (!st.ok()) return Fail(err, st, kExitRuntime);
  out << "generated " << args.out << ": " << cache->layout.ToString() << ", q_ref "
      << (cache->has_q_ref() ? cache->layers[0].q_ref->dim(1) : 0) << " rows, q_window "
      << (cache->has_q_window() ? cache->layers[0].q_window->dim(1) : 0) << " rows\n";
  return kExitOk;
}

namespace {

CLI::App* AddCompact(CLI::App& app, CompactArgs& c) {
  CLI::App* cmd = app.add_subcommand("compact", "compact a KV dump and print its fidelity");
  cmd->add_option("--in", c.in, "input dump (.safetensors)")->required();
  cmd->add_option("--out", c.out, "output compacted cache (.safetensors)")->required();
  cmd->add_option("--method", c.method, "am|okdmd|dynamickv|d2o|streamingllm|h2o|snapkv|pyramidkv")
      ->capture_default_str();
  cmd->add_option("--ratio", c.ratio, "T / keys kept per head")->capture_default_str();
  cmd->add_option("--budget", c.budget, "keys per head (overrides --ratio)");
  cmd->add_option("--allocator", c.allocator, "default|uniform|pyramid|dynamickv|d2o|am")
      ->capture_default_str();
  cmd->add_option("--am-selection", c.am_selection, "highest|omp|omp-fast|scores")
      ->capture_default_str();
  cmd->add_option("--selector", c.selector, "method whose scores pick keys (scores)")
      ->capture_default_str();
  cmd->add_option("--seed", c.seed, "seed of every random choice")->capture_default_str();
  cmd->add_option("--threads", c.threads, "worker threads (0 = all cores)");
  cmd->add_option("--heldout-fraction", c.heldout_fraction, "share of q_ref held out")
      ->capture_default_str();
  cmd->add_option("--gate-min-cosine", c.gate_min_cosine, "quality floor (0 = off)");
  cmd->add_option("--gate-escalation", c.gate_escalation, "budget factor per retry")
      ->capture_default_str();
  cmd->add_option("--gate-max-rounds", c.gate_max_rounds, "retries")->capture_default_str();
  cmd->add_option("--ridge", c.ridge, "AM value ridge towards the kept values (x ||X||^2 / t)");
  cmd->add_option("--refine-rounds", c.refine_rounds, "AM refinement rounds (0-3)");
  cmd->add_option("--nnls-pg-steps", c.nnls_pg_steps, "AM projected-gradient steps")
      ->capture_default_str();
  cmd->add_flag("--no-fit-beta", c.no_fit_beta, "keep beta = 0");
  cmd->add_flag("--no-fit-values", c.no_fit_values, "keep the selected values");
  cmd->add_flag("--keys-as-queries", c.keys_as_queries, "AM without q_ref: select only");
  cmd->add_flag("--keys-as-queries-fit", c.keys_as_queries_fit, "... and fit anyway");
  cmd->add_flag("--json", c.json, "print JSON");
  return cmd;
}

CLI::App* AddEval(CLI::App& app, EvalArgs& e) {
  CLI::App* cmd = app.add_subcommand("eval", "fidelity of a compacted cache against its dump");
  cmd->add_option("--in", e.in, "the full dump")->required();
  cmd->add_option("--compacted", e.compacted, "the compacted cache")->required();
  cmd->add_option("--heldout", e.heldout, "file with layers.{l}.q_ref held-out queries");
  cmd->add_option("--threads", e.threads, "worker threads (0 = all cores)");
  cmd->add_flag("--json", e.json, "print JSON");
  return cmd;
}

CLI::App* AddGenerate(CLI::App& app, GenerateArgs& g) {
  CLI::App* cmd = app.add_subcommand("generate", "write a synthetic KV dump");
  cmd->add_option("--out", g.out, "output dump (.safetensors)")->required();
  cmd->add_option("--preset", g.preset, "tiny|small|llama8b")->capture_default_str();
  cmd->add_option("--tokens", g.tokens, "context length T");
  cmd->add_option("--dtype", g.dtype, "f32|f16|bf16 (default: the preset's)");
  cmd->add_option("--seed", g.seed, "generator seed")->capture_default_str();
  cmd->add_option("--layers", g.layers, "number of layers (default: the preset's)");
  cmd->add_option("--n-ref", g.n_ref, "q_ref rows per query head");
  cmd->add_option("--window", g.window, "q_window rows");
  return cmd;
}

}  // namespace

int Main(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"kvcompact: compact LLM KV caches (Attention Matching and baselines)"};
  app.require_subcommand(1);
  CompactArgs c;
  EvalArgs e;
  GenerateArgs g;
  CLI::App* compact = AddCompact(app, c);
  CLI::App* eval = AddEval(app, e);
  AddGenerate(app, g);
  BatchCommand batch(app);     // `kvcompact batch` (services/cli/batch.h)
  RemoteCommands remote(app);  // put, lookup, fetch, stats (services/cli/remote.h)
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& ex) {
    const int rc = app.exit(ex, out, err);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  if (batch.parsed()) return batch.Run(out, err);
  if (remote.parsed()) return remote.Run(out, err);
  if (compact->parsed()) return RunCompact(c, out, err);
  if (eval->parsed()) return RunEval(e, out, err);
  return RunGenerate(g, out, err);
}

}  // namespace kvc::cli
