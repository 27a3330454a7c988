#include "services/cli/batch_document.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>
#include <vector>

namespace kvc::cli {
namespace {

namespace fs = std::filesystem;

struct GroupSummary {
  int count = 0;
  GateOutcome gate;
};

template <typename T>
T At(const std::vector<T>& v, size_t r) {
  return v.empty() ? T{} : v[std::min(r, v.size() - 1)];
}

// The document's gate outcome from its groups' (see the header).
GateOutcome MergeGates(const std::vector<GroupSummary>& groups, int n_layers) {
  GateOutcome m;
  bool all_cosines = true;
  for (const GroupSummary& g : groups) {
    m.requested = m.requested || g.gate.requested;
    m.passed = m.passed && g.gate.passed;
    m.min_cosine = g.gate.min_cosine;
    m.rounds = std::max(m.rounds, g.gate.rounds);
    all_cosines = all_cosines && !g.gate.cosines.empty();
  }
  for (int r = 0; r < m.rounds; ++r) {
    double b = 0, c = 0;
    for (const GroupSummary& g : groups) {
      b += g.count * static_cast<double>(At(g.gate.budgets_tried, r));
      c += g.count * At(g.gate.cosines, r);
    }
    m.budgets_tried.push_back(std::llround(b / n_layers));
    if (all_cosines) m.cosines.push_back(c / n_layers);
  }
  return m;
}

std::string HeldoutJson(const CompactionSpec& spec, int64_t rows) {
  const std::vector<int64_t> held = HeldoutRows(rows, spec.heldout_fraction, spec.seed);
  nlohmann::ordered_json j = {{"seed", spec.seed},
                              {"fraction", spec.heldout_fraction},
                              {"q_ref_rows", rows},
                              {"rows", held}};
  return j.dump();
}

std::string SourceJson(const DumpInfo& info, const DocumentPlan& plan) {
  nlohmann::ordered_json j = {{"source", fs::path(info.path).filename().string()},
                              {"source_bytes", info.file_bytes},
                              {"source_mtime_ns", info.mtime_ns},
                              {"plan", nlohmann::ordered_json::parse(plan.ToJson(false))}};
  return j.dump();
}

std::map<std::string, std::string> DocumentMetadata(const DumpInfo& info,
                                                    const CompactionSpec& spec,
                                                    const DocumentPlan& plan,
                                                    const DocumentResult& r) {
  std::map<std::string, std::string> md;
  md["method"] = MethodName(spec.method);
  md["spec"] = spec.ToJson();
  md["head_budget"] = std::to_string(r.head_budget);
  md["gate"] = r.gate.ToJson();
  if (r.fidelity) md["fidelity"] = r.fidelity->ToJson();
  if (info.shape.q_ref_rows > 0) md["heldout"] = HeldoutJson(spec, info.shape.q_ref_rows);
  for (const char* key : {"model", "rope_theta"}) {
    auto it = info.metadata.find(key);
    if (it != info.metadata.end()) md[key] = it->second;
  }
  md["batch"] = SourceJson(info, plan);
  return md;
}

}  // namespace

Result<DocumentResult> CompactDocument(const DumpFile& dump, const CompactionSpec& spec,
                                       const DocumentPlan& plan, const std::string& out_path,
                                       const GroupHooks& hooks) {
  const DumpInfo& info = dump.info();
  const KvLayout& lay = info.layout();
  KVC_ASSIGN_OR_RETURN(std::unique_ptr<CompactedFileWriter> writer,
                       CompactedFileWriter::Create(out_path, lay));
  std::vector<HeadFidelity> heads;
  std::vector<GroupSummary> groups;
  int64_t heldout_per_head = 0;
  DocumentResult res;
  double budget_sum = 0;
  for (const LayerGroup& g : plan.groups) {
    KVC_ASSIGN_OR_RETURN(GroupResult gr, CompactGroup(dump, plan, g, hooks));
    for (const CompactedLayer& x : gr.layers) {
      KVC_RETURN_IF_ERROR(writer->AppendLayer(x));
      res.entries += x.total();
    }
    heads.insert(heads.end(), gr.heads.begin(), gr.heads.end());
    heldout_per_head = gr.heldout_per_head;
    budget_sum += g.count * static_cast<double>(gr.gate.budgets_tried.back());
    groups.push_back(GroupSummary{g.count, std::move(gr.gate)});
  }
  res.head_budget = std::llround(budget_sum / lay.n_layers);
  res.gate = MergeGates(groups, lay.n_layers);
  if (!heads.empty()) {
    res.fidelity = SummarizeFidelity(std::move(heads), lay.n_layers, heldout_per_head);
  }
  KVC_RETURN_IF_ERROR(writer->Finish(DocumentMetadata(info, spec, plan, res)));
  return res;
}

Result<OutputInfo> FinishedOutput(const std::string& in_path, const std::string& out_path,
                                  const CompactionSpec& spec) {
  std::error_code ec;
  if (!fs::exists(out_path, ec)) return Status::NotFound(out_path + ": no output yet");
  KVC_ASSIGN_OR_RETURN(OutputInfo out, VerifyCompactedFile(out_path));
  auto it = out.metadata.find("spec");
  if (it == out.metadata.end() || it->second != spec.ToJson()) {
    return Status::FailedPrecondition(out_path + " was made with another spec");
  }
  struct stat st {};
  if (::stat(in_path.c_str(), &st) != 0) return Status::NotFound(in_path + ": cannot stat");
  const int64_t mtime = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  it = out.metadata.find("batch");
  const nlohmann::json j = it == out.metadata.end()
                               ? nlohmann::json()
                               : nlohmann::json::parse(it->second, nullptr, false);
  if (!j.is_object() || j.value("source_bytes", int64_t{-1}) != st.st_size ||
      j.value("source_mtime_ns", int64_t{-1}) != mtime) {
    return Status::FailedPrecondition(out_path + " was made from another version of " + in_path);
  }
  return out;
}

}  // namespace kvc::cli
