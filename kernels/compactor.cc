#include "kernels/compactor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "kernels/backend.h"
#include "kernels/cpu/am_allocator.h"
#include "kernels/cpu/attention_matching.h"
#include "kernels/cpu/compact_stages.h"
#include "kernels/cpu/fidelity_eval.h"
#include "kernels/cpu/linalg.h"
#include "kernels/cpu/pipeline.h"
#include "kernels/cpu/thread_pool.h"

namespace kvc {
namespace {

using cpu::Budgets;
using cpu::LayerResults;
using cpu::PreparedCache;
using cpu::ScoreSet;
using cpu::Selection;

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  // Milliseconds since construction or the previous Lap.
  double Lap() {
    const auto now = std::chrono::steady_clock::now();
    const double ms = std::chrono::duration<double, std::milli>(now - start_).count();
    start_ = now;
    return ms;
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

bool NeedsWindow(Method m) {
  return m == Method::kSnapKv || m == Method::kPyramidKv || m == Method::kDynamicKv ||
         m == Method::kD2o || m == Method::kH2o;
}

bool IsOmp(AmSelection s) { return s == AmSelection::kOmp || s == AmSelection::kOmpFast; }

// Everything Compact checks before touching the data.
Status ValidateRequest(const KvCache& cache, const CompactionSpec& spec) {
  KVC_RETURN_IF_ERROR(spec.Validate());
  KVC_RETURN_IF_ERROR(cache.Validate(/*check_finite=*/true).WithContext("cache"));
  const int64_t T = cache.layout.tokens;
  if (spec.budget > T) {
    return Status::InvalidArgument("spec.budget = " + std::to_string(spec.budget) +
                                   " exceeds the source length T = " + std::to_string(T));
  }
  const bool am = spec.method == Method::kAttentionMatching;
  const bool kaq = spec.am.keys_as_queries;
  if (am && !cache.has_q_ref() && !kaq) {
    return Status::InvalidArgument(
        "method am needs reference queries (layers.{l}.q_ref); send them, or set "
        "am.keys_as_queries for the labelled select-only fallback");
  }
  if (spec.allocator == Allocator::kAm && !cache.has_q_ref() && !(am && kaq)) {
    return Status::InvalidArgument("allocator am needs reference queries (layers.{l}.q_ref)");
  }
  const Method scorer =
      am && spec.am.selection == AmSelection::kScores ? spec.am.selector : spec.method;
  if (NeedsWindow(scorer) && !cache.has_q_window()) {
    return Status::InvalidArgument(std::string(am ? "AM selector " : "method ") +
                                   MethodName(scorer) +
                                   " needs window queries (layers.{l}.q_window); none were sent");
  }
  if (spec.gate.min_cosine > 0 && (!cache.has_q_ref() || spec.heldout_fraction <= 0)) {
    return Status::InvalidArgument(
        "spec.gate.min_cosine > 0 needs held-out queries: send q_ref and keep "
        "heldout_fraction > 0");
  }
  if (cache.has_q_ref() && spec.heldout_fraction > 0 && cache.layers[0].q_ref->dim(1) < 2) {
    return Status::InvalidArgument(
        "q_ref has 1 row per head: holding out heldout_fraction of it needs at least 2 "
        "(or set heldout_fraction = 0)");
  }
  return Status::OK();
}

Budgets UniformBudgets(int L, int H, int64_t b) {
  return Budgets(static_cast<size_t>(L), std::vector<int64_t>(static_cast<size_t>(H), b));
}

bool AllocatorNeedsScores(Allocator a) {
  return a == Allocator::kPyramid || a == Allocator::kDynamicKv || a == Allocator::kD2o;
}

// Internal unless `s` is [L, H, T] of the layout with sorted, unique forced positions in [0, T)
// (a backend's scores get the same checks as the CPU's before selection reads them).
Status CheckScores(const ScoreSet& s, const KvLayout& layout) {
  const int64_t T = layout.tokens;
  const bool shape = s.n_layers == layout.n_layers && s.n_kv_heads == layout.n_kv_heads &&
                     s.T == T && s.scores.size() == size_t(s.n_layers) * s.n_kv_heads * T;
  if (!shape) return Status::Internal("scores do not match the cache's [L, H, T]");
  for (size_t i = 0; i < s.forced.size(); ++i) {
    if (s.forced[i] < 0 || s.forced[i] >= T || (i > 0 && s.forced[i] <= s.forced[i - 1])) {
      return Status::Internal("forced positions must be sorted, unique and in [0, T)");
    }
  }
  return Status::OK();
}

// Runs one offloadable stage: `on_backend(*backend)` first, then `on_cpu()` when there is no
// backend or it answered NotSupported. `ran` gets the name of what produced the result.
template <typename T, typename OnBackend, typename OnCpu>
Result<T> RunStage(ComputeBackend* backend, const char* stage, std::string& ran,
                   OnBackend on_backend, OnCpu on_cpu) {
  if (backend != nullptr) {
    Result<T> r = on_backend(*backend);
    if (r.ok() || r.status().code() != Code::kNotSupported) {
      ran = backend->name();
      if (!r.ok()) {
        return r.status().WithContext(std::string("backend '") + backend->name() + "', " + stage);
      }
      return r;
    }
  }
  ran = "cpu";
  return on_cpu();
}

// The Score stage: the method's scores, AM highest-attention scores when the allocator needs
// them, or none (AM selecting inside its fit).
Result<std::optional<ScoreSet>> RunScores(const PreparedCache& p, const CompactionSpec& spec,
                                          int64_t hb, ComputeBackend* backend,
                                          cpu::ThreadPool& pool, StageBackends& ran) {
  const bool am = spec.method == Method::kAttentionMatching;
  Result<ScoreSet> r = Status::Internal("no scorer ran");
  if (!am || spec.am.selection == AmSelection::kScores) {
    r = RunStage<ScoreSet>(
        backend, "score", ran.score,
        [&](ComputeBackend& b) { return b.ComputeScores(p, spec, hb); },
        [&] { return cpu::ComputeScores(p, spec, hb); });
  } else if (AllocatorNeedsScores(spec.allocator)) {
    r = RunStage<ScoreSet>(
        backend, "score", ran.score, [&](ComputeBackend& b) { return b.ScoreHighestAttention(p); },
        [&] { return cpu::ScoreHighestAttention(p, pool); });
  } else {
    ran.score = "none";
    return std::optional<ScoreSet>();
  }
  if (!r.ok()) return r.status();
  return std::optional<ScoreSet>(std::move(r).value());
}

// The Post stage: AM fit, D2O merge or a plain gather (always on the CPU).
Result<LayerResults> RunPost(const PreparedCache& p, const CompactionSpec& spec, bool select_only,
                             const Selection& sel, const Budgets& budgets, ComputeBackend* backend,
                             cpu::ThreadPool& pool, StageBackends& ran) {
  if (spec.method == Method::kAttentionMatching) {
    AmOptions o = spec.am;
    if (select_only) o.fit_beta = o.fit_values = false;
    return RunStage<LayerResults>(
        backend, "post", ran.post,
        [&](ComputeBackend& b) { return b.AttentionMatchingFit(p, sel, budgets, o); },
        [&] { return cpu::AttentionMatchingFit(p, sel, budgets, o, pool); });
  }
  if (spec.method == Method::kD2o && spec.d2o.merge) {
    return RunStage<LayerResults>(
        backend, "post", ran.post, [&](ComputeBackend& b) { return b.D2oMerge(p, sel, spec.d2o); },
        [&] { return cpu::D2oMerge(p, sel, spec.d2o); });
  }
  ran.post = "cpu";
  return cpu::GatherSelected(p, sel);
}

// One compaction round at per-head budget `hb`: Score -> Allocate -> Select -> Post.
Result<LayerResults> RunRound(const PreparedCache& p, const CompactionSpec& spec, bool select_only,
                              int64_t hb, ComputeBackend* backend, cpu::ThreadPool& pool,
                              StageTimings& tm, StageBackends& ran) {
  const int L = p.layout.n_layers, H = p.layout.n_kv_heads;
  const bool am = spec.method == Method::kAttentionMatching;
  Stopwatch sw;
  KVC_ASSIGN_OR_RETURN(std::optional<ScoreSet> scores, RunScores(p, spec, hb, backend, pool, ran));
  if (scores) KVC_RETURN_IF_ERROR(CheckScores(*scores, p.layout).WithContext("score stage"));
  tm.score_ms += sw.Lap();
  Budgets budgets;
  if (spec.allocator == Allocator::kAm) {
    KVC_ASSIGN_OR_RETURN(budgets, cpu::AllocateAmBudgets(p, spec, hb, pool));
  } else if (scores) {
    KVC_ASSIGN_OR_RETURN(
        budgets, RunStage<Budgets>(
                     backend, "allocate", ran.allocate,
                     [&](ComputeBackend& b) { return b.AllocateBudgets(p, *scores, spec, hb); },
                     [&] { return cpu::AllocateBudgets(p, *scores, spec, hb); }));
  } else {
    budgets = UniformBudgets(L, H, hb);
  }
  KVC_RETURN_IF_ERROR(cpu::CheckBudgets(budgets, p.layout, hb));
  tm.allocate_ms += sw.Lap();
  Selection sel;
  if (scores && !(am && IsOmp(spec.am.selection))) {
    sel = cpu::SelectTopK(*scores, budgets);
    KVC_RETURN_IF_ERROR(cpu::CheckSelection(sel, budgets, p.layout));
  }
  tm.select_ms += sw.Lap();
  Result<LayerResults> out = RunPost(p, spec, select_only, sel, budgets, backend, pool, ran);
  tm.post_ms += sw.Lap();
  if (!out.ok()) return out;
  KVC_RETURN_IF_ERROR(cpu::CheckResults(*out, budgets, p.layout));
  return out;
}

nlohmann::ordered_json HeldoutJson(const CompactionSpec& spec, int64_t rows,
                                   const std::vector<int64_t>& held) {
  return {{"seed", spec.seed},
          {"fraction", spec.heldout_fraction},
          {"q_ref_rows", rows},
          {"rows", held}};
}

void FillMetadata(const KvCache& src, const CompactionSpec& spec, const CompactionResult& r,
                  const std::vector<int64_t>& held, CompactedCache& out) {
  auto& md = out.metadata;
  md["method"] = MethodName(spec.method);
  md["spec"] = spec.ToJson();
  md["source_tokens"] = std::to_string(src.layout.tokens);
  md["head_budget"] = std::to_string(r.head_budget);
  md["gate"] = r.gate.ToJson();
  md["backend"] = r.backends.ToJson();
  if (r.fidelity) md["fidelity"] = r.fidelity->ToJson();
  if (src.has_q_ref()) {
    md["heldout"] = HeldoutJson(spec, src.layers[0].q_ref->dim(1), held).dump();
  }
  for (const char* key : {"model", "rope_theta"}) {
    auto it = src.metadata.find(key);
    if (it != src.metadata.end()) md[key] = it->second;
  }
}

}  // namespace

std::string StageTimings::ToJson() const {
  nlohmann::ordered_json j = {
      {"validate_ms", validate_ms}, {"prepare_ms", prepare_ms},   {"score_ms", score_ms},
      {"allocate_ms", allocate_ms}, {"select_ms", select_ms},     {"post_ms", post_ms},
      {"assemble_ms", assemble_ms}, {"fidelity_ms", fidelity_ms}, {"total_ms", total_ms}};
  return j.dump();
}

std::string GateOutcome::ToJson() const {
  nlohmann::ordered_json j = {{"requested", requested},         {"passed", passed},
                              {"min_cosine", min_cosine},       {"rounds", rounds},
                              {"budgets_tried", budgets_tried}, {"cosines", cosines}};
  return j.dump();
}

std::string StageBackends::ToJson() const {
  nlohmann::ordered_json j = {{"score", score}, {"allocate", allocate}, {"post", post}};
  return j.dump();
}

std::vector<int64_t> HeldoutRows(int64_t rows, double fraction, uint64_t seed) {
  return cpu::HeldoutRowsImpl(rows, fraction, seed);
}

Result<CompactionResult> Compact(const KvCache& cache, const CompactionSpec& spec) {
  return Compact(cache, spec, nullptr);
}

Result<CompactionResult> Compact(const KvCache& cache, const CompactionSpec& spec,
                                 ComputeBackend* backend) {
  Stopwatch total, sw;
  CompactionResult res;
  KVC_RETURN_IF_ERROR(ValidateRequest(cache, spec));
  res.timings.validate_ms = sw.Lap();
  cpu::ScopedBlasThreads blas(1);
  cpu::ThreadPool pool(spec.threads);
  const bool am = spec.method == Method::kAttentionMatching;
  const bool select_only = am && !cache.has_q_ref() && !spec.am.keys_as_queries_fit;
  const bool keys_as_queries =
      !cache.has_q_ref() && spec.am.keys_as_queries && (am || spec.allocator == Allocator::kAm);
  const std::vector<int64_t> held =
      cache.has_q_ref()
          ? HeldoutRows(cache.layers[0].q_ref->dim(1), spec.heldout_fraction, spec.seed)
          : std::vector<int64_t>{};
  KVC_ASSIGN_OR_RETURN(PreparedCache p, cpu::Prepare(cache, held, keys_as_queries, &pool));
  res.timings.prepare_ms = sw.Lap();
  const int64_t T = cache.layout.tokens;
  int64_t hb = spec.PerHeadBudget(T);
  res.gate.requested = spec.gate.min_cosine > 0;
  res.gate.min_cosine = spec.gate.min_cosine;
  for (;;) {
    Result<LayerResults> round =
        RunRound(p, spec, select_only, hb, backend, pool, res.timings, res.backends);
    if (!round.ok()) return round.status();
    sw.Lap();
    KVC_ASSIGN_OR_RETURN(res.cache, cpu::Assemble(cache.layout, *round));
    res.timings.assemble_ms += sw.Lap();
    res.head_budget = hb;
    res.gate.rounds += 1;
    res.gate.budgets_tried.push_back(hb);
    if (p.layers[0].q_heldout) {
      KVC_ASSIGN_OR_RETURN(res.fidelity, cpu::FidelityOnHeldout(p, res.cache, pool));
      res.gate.cosines.push_back(res.fidelity->overall.cosine.mean);
    }
    res.timings.fidelity_ms += sw.Lap();
    if (!res.gate.requested) break;
    res.gate.passed = res.fidelity->overall.cosine.mean >= spec.gate.min_cosine;
    if (res.gate.passed || res.gate.rounds > spec.gate.max_rounds || hb >= T) break;
    const auto raised =
        static_cast<int64_t>(std::ceil(static_cast<double>(hb) * spec.gate.escalation));
    hb = std::min(T, std::max(hb + 1, raised));
  }
  res.timings.total_ms = total.Lap();
  FillMetadata(cache, spec, res, held, res.cache);
  return res;
}

Result<std::vector<Tensor>> HeldoutQueries(const KvCache& full, const CompactedCache& compacted) {
  if (!full.has_q_ref()) return Status::NotFound("the full cache has no q_ref to hold out from");
  auto it = compacted.metadata.find("heldout");
  if (it == compacted.metadata.end()) {
    return Status::InvalidArgument(
        "the compacted cache has no 'heldout' metadata (compacted without q_ref?); pass the "
        "held-out queries explicitly");
  }
  const nlohmann::json j = nlohmann::json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  const int64_t n = full.layers[0].q_ref->dim(1);
  if (!j.is_object() || !j.contains("rows") || !j["rows"].is_array() || !j.contains("q_ref_rows") ||
      !j["q_ref_rows"].is_number_integer()) {
    return Status::InvalidArgument("'heldout' metadata is malformed: " + it->second);
  }
  if (j["q_ref_rows"].get<int64_t>() != n) {
    return Status::InvalidArgument("'heldout' metadata was made for q_ref with " +
                                   std::to_string(j["q_ref_rows"].get<int64_t>()) +
                                   " rows per head; this cache's q_ref has " + std::to_string(n));
  }
  std::vector<int64_t> rows;
  for (const auto& r : j["rows"]) {
    if (!r.is_number_integer() || r.get<int64_t>() < 0 || r.get<int64_t>() >= n ||
        (!rows.empty() && r.get<int64_t>() <= rows.back())) {
      return Status::InvalidArgument("'heldout' rows must be sorted, unique and in [0, " +
                                     std::to_string(n) + ")");
    }
    rows.push_back(r.get<int64_t>());
  }
  if (rows.empty()) return Status::InvalidArgument("'heldout' metadata lists no rows");
  std::vector<Tensor> out;
  for (const LayerKv& layer : full.layers) {
    KVC_ASSIGN_OR_RETURN(Tensor q, layer.q_ref->To(DType::kF32));
    out.push_back(cpu::GatherQueryRows(q, rows));
  }
  return out;
}

}  // namespace kvc
