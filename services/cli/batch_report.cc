#include "services/cli/batch_report.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "services/cli/batch_progress.h"

namespace kvc::cli {
namespace {

using Json = nlohmann::ordered_json;

Json ParseOrNull(const std::string& text) {
  if (text.empty()) return nullptr;
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? Json(nullptr) : j;
}

double SourceEntries(const DocumentOutcome& d) {
  return static_cast<double>(d.layout.n_layers) * d.layout.n_kv_heads *
         static_cast<double>(d.layout.tokens);
}

double Ratio(const DocumentOutcome& d) {
  return d.entries > 0 ? SourceEntries(d) / static_cast<double>(d.entries) : 0.0;
}

Json DocJson(const DocumentOutcome& d) {
  Json j = {{"name", d.name},
            {"input", d.input},
            {"output", d.output},
            {"status", DocStateName(d.state)},
            {"error", d.error.ok() ? Json(nullptr) : Json(d.error.ToString())},
            {"note", d.note}};
  j["tokens"] = d.layout_known ? Json(d.layout.tokens) : Json(nullptr);
  j["layers"] = d.layout_known ? Json(d.layout.n_layers) : Json(nullptr);
  j["kv_heads"] = d.layout_known ? Json(d.layout.n_kv_heads) : Json(nullptr);
  j["entries"] = d.entries;
  j["ratio"] = d.entries > 0 && d.layout_known ? Json(Ratio(d)) : Json(nullptr);
  j["seconds"] = d.seconds;
  const Json fid = ParseOrNull(d.fidelity_json);
  j["fidelity"] = fid.is_object() && fid.contains("overall") ? fid["overall"] : Json(nullptr);
  j["gate"] = ParseOrNull(d.gate_json);
  j["plan"] = ParseOrNull(d.plan_json);
  j["over_budget"] = d.over_budget;
  j["store"] = d.store.empty() ? Json(nullptr) : Json(d.store);
  return j;
}

// "0.9921/0.9712" (mean/min held-out cosine) or "-".
std::string CosineText(const DocumentOutcome& d) {
  const Json fid = ParseOrNull(d.fidelity_json);
  if (!fid.is_object() || !fid.contains("overall")) return "-";
  const Json& c = fid["overall"]["cosine"];
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%.4f/%.4f", c.value("mean", 0.0), c.value("min", 0.0));
  return buf;
}

std::string GateText(const DocumentOutcome& d) {
  const Json g = ParseOrNull(d.gate_json);
  if (!g.is_object()) return "-";
  if (!g.value("requested", false)) return "off";
  return std::string(g.value("passed", false) ? "passed" : "FAILED") + " (" +
         std::to_string(g.value("rounds", 0)) + " rounds)";
}

}  // namespace

const char* DocStateName(DocState s) {
  switch (s) {
    case DocState::kDone:
      return "done";
    case DocState::kSkipped:
      return "skipped";
    case DocState::kFailed:
      return "failed";
    case DocState::kInterrupted:
      return "interrupted";
  }
  return "?";
}

bool DocumentOutcome::ok() const {
  return (state == DocState::kDone || state == DocState::kSkipped) && !gate_failed && error.ok();
}

void FillFromOutput(const OutputInfo& info, DocumentOutcome& o) {
  o.layout = info.layout;
  o.layout_known = true;
  o.entries = info.entries;
  auto it = info.metadata.find("fidelity");
  o.fidelity_json = it == info.metadata.end() ? "" : it->second;
  it = info.metadata.find("gate");
  o.gate_json = it == info.metadata.end() ? "" : it->second;
  const Json g = ParseOrNull(o.gate_json);
  o.gate_failed = g.is_object() && g.value("requested", false) && !g.value("passed", true);
}

int RunSummary::ExitCode() const {
  for (const DocumentOutcome& d : docs) {
    if (!d.ok()) return 1;
  }
  return 0;
}

std::string RunSummary::ToJson() const {
  Json counts = {{"done", 0}, {"skipped", 0}, {"failed", 0}, {"interrupted", 0}};
  Json list = Json::array();
  for (const DocumentOutcome& d : docs) {
    counts[DocStateName(d.state)] = counts[DocStateName(d.state)].get<int>() + 1;
    list.push_back(DocJson(d));
  }
  Json j = {{"in", in_dir},
            {"out", out_dir},
            {"spec", ParseOrNull(spec.ToJson())},
            {"memory_budget_bytes", memory_bytes},
            {"jobs", jobs},
            {"threads_per_document", threads},
            {"temporaries_removed", temporaries_removed},
            {"seconds", seconds},
            {"exit_code", ExitCode()},
            {"counts", counts},
            {"documents", list}};
  return j.dump();
}

void RunSummary::PrintText(std::ostream& out) const {
  int n[4] = {0, 0, 0, 0};
  for (const DocumentOutcome& d : docs) ++n[static_cast<int>(d.state)];
  out << "batch: " << docs.size() << " documents in " << FormatDuration(seconds) << ": " << n[0]
      << " compacted, " << n[1] << " already done, " << n[2] << " failed, " << n[3]
      << " interrupted";
  if (temporaries_removed > 0) {
    out << "; removed " << temporaries_removed << " temporaries of an earlier run";
  }
  out << "\n";
  char line[512];
  std::snprintf(line, sizeof(line), "  %-32s %-11s %8s %6s %8s %9s %-15s %s\n", "document",
                "status", "tokens", "layers", "ratio", "time", "cosine mean/min", "gate");
  out << line;
  for (const DocumentOutcome& d : docs) {
    char ratio[32] = "-";
    if (d.entries > 0 && d.layout_known) std::snprintf(ratio, sizeof(ratio), "%.2f", Ratio(d));
    std::snprintf(line, sizeof(line), "  %-32s %-11s %8s %6s %8s %9s %-15s %s\n", d.name.c_str(),
                  DocStateName(d.state),
                  d.layout_known ? std::to_string(d.layout.tokens).c_str() : "-",
                  d.layout_known ? std::to_string(d.layout.n_layers).c_str() : "-", ratio,
                  d.state == DocState::kSkipped ? "-" : FormatDuration(d.seconds).c_str(),
                  CosineText(d).c_str(), GateText(d).c_str());
    out << line;
    if (!d.error.ok()) out << "      error: " << d.error.ToString() << "\n";
    if (!d.note.empty()) out << "      note: " << d.note << "\n";
    if (!d.store.empty()) out << "      store: " << d.store << "\n";
    const Json plan = ParseOrNull(d.plan_json);
    if (plan.is_object()) {
      out << "      layer groups: " << plan["groups"].size()
          << "; cross-layer allocation: " << plan.value("allocation", "")
          << "\n      chunking: " << plan.value("chunking", "") << "\n      modelled peak memory: "
          << FormatBytes(static_cast<double>(plan.value("estimated_bytes", int64_t{0})))
          << (d.over_budget ? " (over the budget: the smallest plan this spec allows)" : "")
          << "\n";
    }
  }
}

}  // namespace kvc::cli
