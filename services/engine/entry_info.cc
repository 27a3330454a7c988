#include "services/engine/entry_info.h"

#include <charconv>
#include <cstdlib>
#include <string_view>

namespace kvc::engine {
namespace {

constexpr std::string_view kFidelityPrefix = "fidelity.";
constexpr std::string_view kGatePrefix = "gate.";

std::string Num(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : std::string("nan");
}

double GetNum(const std::map<std::string, std::string>& attrs, const std::string& key) {
  auto it = attrs.find(key);
  return it == attrs.end() ? 0.0 : std::strtod(it->second.c_str(), nullptr);
}

bool GetFlag(const std::map<std::string, std::string>& attrs, const std::string& key,
             bool fallback) {
  auto it = attrs.find(key);
  return it == attrs.end() ? fallback : it->second == "1";
}

std::string MetadataOr(const std::map<std::string, std::string>& md, const std::string& key) {
  auto it = md.find(key);
  return it == md.end() ? std::string() : it->second;
}

// Fills everything but block/spec hash, entries and payload bytes.
void FillCommon(const KvLayout& layout, const std::map<std::string, std::string>& metadata,
                const std::map<std::string, std::string>& attrs, int64_t created_ms,
                EntryInfo* info) {
  info->layout = layout;
  info->method = MetadataOr(metadata, "method");
  info->created_ms = created_ms;
  EntryFidelity& f = info->fidelity;
  f.measured = GetFlag(attrs, "fidelity.measured", false);
  f.mean_cosine = GetNum(attrs, "fidelity.mean_cosine");
  f.min_cosine = GetNum(attrs, "fidelity.min_cosine");
  f.p10_cosine = GetNum(attrs, "fidelity.p10_cosine");
  f.mean_rel_l2 = GetNum(attrs, "fidelity.mean_rel_l2");
  f.mass_error = GetNum(attrs, "fidelity.mass_error");
  f.gate_requested = GetFlag(attrs, "gate.requested", false);
  f.gate_passed = GetFlag(attrs, "gate.passed", true);
  f.gate_rounds = static_cast<int>(GetNum(attrs, "gate.rounds"));
  f.report_json = MetadataOr(metadata, "fidelity");
  for (const auto& [k, v] : attrs) {
    if (!k.starts_with(kFidelityPrefix) && !k.starts_with(kGatePrefix)) info->attributes[k] = v;
  }
}

}  // namespace

std::map<std::string, std::string> EntryAttributes(const EntryOrigin& origin,
                                                   const CompactionResult& result) {
  std::map<std::string, std::string> a;
  a["tenant"] = origin.tenant;
  a["model"] = origin.model;
  a["request_id"] = origin.request_id;
  a["blocks"] = std::to_string(origin.blocks);
  const bool measured = result.fidelity.has_value() && !result.fidelity->empty();
  a["fidelity.measured"] = measured ? "1" : "0";
  if (measured) {
    const FidelitySummary& o = result.fidelity->overall;
    a["fidelity.mean_cosine"] = Num(o.cosine.mean);
    a["fidelity.min_cosine"] = Num(o.cosine.min);
    a["fidelity.p10_cosine"] = Num(o.cosine.p10);
    a["fidelity.mean_rel_l2"] = Num(o.rel_l2.mean);
    a["fidelity.mass_error"] = Num(o.mass_error.mean);
  }
  a["gate.requested"] = result.gate.requested ? "1" : "0";
  a["gate.passed"] = result.gate.passed ? "1" : "0";
  a["gate.rounds"] = std::to_string(result.gate.rounds);
  return a;
}

EntryInfo EntryInfoFromResult(const std::string& block_hash, const std::string& spec_hash,
                              const CompactionResult& result,
                              const std::map<std::string, std::string>& attributes,
                              int64_t created_ms) {
  EntryInfo info;
  info.block_hash = block_hash;
  info.spec_hash = spec_hash;
  FillCommon(result.cache.layout, result.cache.metadata, attributes, created_ms, &info);
  info.entries = result.cache.total_entries();
  for (const CompactedLayer& l : result.cache.layers) {
    info.payload_bytes += l.k.nbytes() + l.v.nbytes() + l.beta.nbytes();
  }
  return info;
}

EntryInfo EntryInfoFromManifest(const std::string& block_hash, const std::string& spec_hash,
                                const storage::Manifest& manifest) {
  EntryInfo info;
  info.block_hash = block_hash;
  info.spec_hash = spec_hash;
  FillCommon(manifest.layout, manifest.metadata, manifest.extras.attributes,
             manifest.created_at_micros / 1000, &info);
  for (const auto& offsets : manifest.offsets) {
    if (!offsets.empty()) info.entries += offsets.back();
  }
  info.payload_bytes = manifest.payload_bytes();
  return info;
}

}  // namespace kvc::engine
