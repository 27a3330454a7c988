#include "kernels/spec.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

namespace kvc {
namespace {

// Lower-cases ASCII letters; names are ASCII.
std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

// Looks `name` up (case-insensitively) in a table of (name, value); NotSupported listing the
// valid names otherwise.
template <typename E, size_t N>
Result<E> ParseName(std::string_view what, std::string_view name,
                    const std::array<std::pair<const char*, E>, N>& table) {
  const std::string key = Lower(name);
  std::string valid;
  for (const auto& [n, v] : table) {
    if (key == n) return v;
    if (!valid.empty()) valid += ", ";
    valid += n;
  }
  return Status::NotSupported("unknown " + std::string(what) + " '" + std::string(name) +
                              "' (valid: " + valid + ")");
}

constexpr std::array<std::pair<const char*, Method>, 8> kMethods{{
    {"am", Method::kAttentionMatching},
    {"okdmd", Method::kOkDmd},
    {"dynamickv", Method::kDynamicKv},
    {"d2o", Method::kD2o},
    {"streamingllm", Method::kStreamingLlm},
    {"h2o", Method::kH2o},
    {"snapkv", Method::kSnapKv},
    {"pyramidkv", Method::kPyramidKv},
}};

constexpr std::array<std::pair<const char*, AmSelection>, 4> kSelections{{
    {"highest", AmSelection::kHighestAttention},
    {"omp", AmSelection::kOmp},
    {"omp-fast", AmSelection::kOmpFast},
    {"scores", AmSelection::kScores},
}};

constexpr std::array<std::pair<const char*, Allocator>, 6> kAllocators{{
    {"default", Allocator::kDefault},
    {"uniform", Allocator::kUniform},
    {"pyramid", Allocator::kPyramid},
    {"dynamickv", Allocator::kDynamicKv},
    {"d2o", Allocator::kD2o},
    {"am", Allocator::kAm},
}};

template <typename E, size_t N>
const char* NameOf(E value, const std::array<std::pair<const char*, E>, N>& table) {
  for (const auto& [n, v] : table) {
    if (v == value) return n;
  }
  return "?";
}

template <typename E, size_t N>
bool Known(E value, const std::array<std::pair<const char*, E>, N>& table) {
  return std::string_view(NameOf(value, table)) != "?";
}

const char* PoolingName(Pooling p) { return p == Pooling::kMax ? "max" : "avg"; }

// Field checks: each returns InvalidArgument naming the field and the accepted range.
Status Bad(std::string_view field, std::string_view why) {
  return Status::InvalidArgument("spec." + std::string(field) + " " + std::string(why));
}

Status CheckInt(std::string_view field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) {
    return Bad(field, "= " + std::to_string(v) + " outside [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "]");
  }
  return Status::OK();
}

Status CheckReal(std::string_view field, double v, double lo, double hi, bool lo_open = false) {
  const bool below = lo_open ? !(v > lo) : !(v >= lo);
  if (!std::isfinite(v) || below || !(v <= hi)) {
    return Bad(field, "= " + std::to_string(v) + " outside " + (lo_open ? "(" : "[") +
                          std::to_string(lo) + ", " + std::to_string(hi) + "]");
  }
  return Status::OK();
}

constexpr int kMaxThreads = 1024;
constexpr int64_t kMaxBudget = int64_t{1} << 24;

Status ValidateAm(const AmOptions& o) {
  if (!Known(o.selection, kSelections)) return Bad("am.selection", "is not a known selection");
  if (!Known(o.selector, kMethods)) return Bad("am.selector", "is not a known method");
  if (o.selection == AmSelection::kScores && o.selector == Method::kAttentionMatching) {
    return Bad("am.selector", "must be another method than am when am.selection = scores");
  }
  KVC_RETURN_IF_ERROR(CheckInt("am.nnls_pg_steps", o.nnls_pg_steps, 0, 100000));
  KVC_RETURN_IF_ERROR(CheckReal("am.ridge", o.ridge, 0.0, 1e6));
  KVC_RETURN_IF_ERROR(CheckInt("am.refine_rounds", o.refine_rounds, 0, 3));
  if (o.omp_fast_schedule.empty()) return Bad("am.omp_fast_schedule", "is empty");
  int64_t prev = 0;
  for (size_t i = 0; i < o.omp_fast_schedule.size(); ++i) {
    const OmpStage& st = o.omp_fast_schedule[i];
    const std::string f = "am.omp_fast_schedule[" + std::to_string(i) + "]";
    if (st.up_to <= prev) return Bad(f + ".up_to", "must be positive and increasing");
    KVC_RETURN_IF_ERROR(CheckInt(f + ".keys_per_step", st.keys_per_step, 1, 4096));
    KVC_RETURN_IF_ERROR(CheckInt(f + ".refit_every", st.refit_every, 1, 4096));
    prev = st.up_to;
  }
  if (o.keys_as_queries_fit && !o.keys_as_queries) {
    return Bad("am.keys_as_queries_fit", "requires am.keys_as_queries");
  }
  return Status::OK();
}

Status ValidateMethods(const CompactionSpec& s) {
  const OkDmdOptions& k = s.okdmd;
  KVC_RETURN_IF_ERROR(CheckInt("okdmd.k_modes", k.k_modes, 1, 1024));
  KVC_RETURN_IF_ERROR(CheckReal("okdmd.lambda", k.lambda, 0.0, 1.0, /*lo_open=*/true));
  KVC_RETURN_IF_ERROR(CheckReal("okdmd.sigma", k.sigma, 0.0, 1e6));
  KVC_RETURN_IF_ERROR(CheckInt("okdmd.sinks", k.sinks, 0, kMaxBudget));
  KVC_RETURN_IF_ERROR(CheckInt("okdmd.recent", k.recent, 0, kMaxBudget));
  KVC_RETURN_IF_ERROR(CheckInt("okdmd.refresh_every", k.refresh_every, 1, 1 << 20));
  KVC_RETURN_IF_ERROR(CheckInt("okdmd.power_iters", k.power_iters, 0, 1000));
  KVC_RETURN_IF_ERROR(CheckInt("streaming.sinks", s.streaming.sinks, 0, kMaxBudget));
  KVC_RETURN_IF_ERROR(CheckReal("h2o.recent_fraction", s.h2o.recent_fraction, 0.0, 1.0));
  KVC_RETURN_IF_ERROR(CheckInt("snapkv.kernel", s.snapkv.kernel, 1, 1023));
  if (s.snapkv.pooling != Pooling::kAvg && s.snapkv.pooling != Pooling::kMax) {
    return Bad("snapkv.pooling", "is not avg or max");
  }
  KVC_RETURN_IF_ERROR(CheckInt("snapkv.window", s.snapkv.window, 0, kMaxBudget));
  KVC_RETURN_IF_ERROR(CheckReal("pyramid.beta", s.pyramid.beta, 1.0, 1e6));
  const DynamicKvOptions& dk = s.dynamickv;
  KVC_RETURN_IF_ERROR(CheckInt("dynamickv.window", dk.window, 1, kMaxBudget));
  KVC_RETURN_IF_ERROR(CheckInt("dynamickv.kernel", dk.kernel, 1, 1023));
  if (dk.pooling != Pooling::kAvg && dk.pooling != Pooling::kMax) {
    return Bad("dynamickv.pooling", "is not avg or max");
  }
  KVC_RETURN_IF_ERROR(CheckReal("dynamickv.radio_max", dk.radio_max, 0.0, 1e6, true));
  KVC_RETURN_IF_ERROR(CheckInt("dynamickv.every_m", dk.every_m, 1, 1024));
  const D2oOptions& d = s.d2o;
  KVC_RETURN_IF_ERROR(CheckReal("d2o.hh_ratio", d.hh_ratio, 0.0, 1.0));
  KVC_RETURN_IF_ERROR(CheckReal("d2o.recent_ratio", d.recent_ratio, 0.0, 1.0));
  KVC_RETURN_IF_ERROR(CheckReal("d2o.ema_alpha", d.ema_alpha, 0.0, 1.0));
  KVC_RETURN_IF_ERROR(CheckReal("d2o.ema_beta", d.ema_beta, 0.0, 1.0));
  KVC_RETURN_IF_ERROR(CheckInt("d2o.sinks", d.sinks, 0, kMaxBudget));
  for (size_t i = 0; i < d.uncompressed_layers.size(); ++i) {
    KVC_RETURN_IF_ERROR(CheckInt("d2o.uncompressed_layers[" + std::to_string(i) + "]",
                                 d.uncompressed_layers[i], -1024, 1023));
  }
  return Status::OK();
}

nlohmann::ordered_json AmJson(const AmOptions& o) {
  nlohmann::ordered_json sched = nlohmann::ordered_json::array();
  for (const OmpStage& st : o.omp_fast_schedule) {
    sched.push_back({st.up_to, st.keys_per_step, st.refit_every});
  }
  nlohmann::ordered_json j;
  j["selection"] = AmSelectionName(o.selection);
  j["selector"] = MethodName(o.selector);
  j["fit_beta"] = o.fit_beta;
  j["fit_values"] = o.fit_values;
  j["nnls_pg_steps"] = o.nnls_pg_steps;
  j["ridge"] = o.ridge;
  j["refine_rounds"] = o.refine_rounds;
  j["omp_fast_schedule"] = std::move(sched);
  j["keys_as_queries"] = o.keys_as_queries;
  j["keys_as_queries_fit"] = o.keys_as_queries_fit;
  return j;
}

nlohmann::ordered_json MethodsJson(const CompactionSpec& s) {
  nlohmann::ordered_json j;
  j["okdmd"] = {{"k_modes", s.okdmd.k_modes},
                {"lambda", s.okdmd.lambda},
                {"sigma", s.okdmd.sigma},
                {"sinks", s.okdmd.sinks},
                {"recent", s.okdmd.recent},
                {"refresh_every", s.okdmd.refresh_every},
                {"power_iters", s.okdmd.power_iters}};
  j["streaming"] = {{"sinks", s.streaming.sinks}};
  j["h2o"] = {{"recent_fraction", s.h2o.recent_fraction}};
  j["snapkv"] = {{"kernel", s.snapkv.kernel},
                 {"pooling", PoolingName(s.snapkv.pooling)},
                 {"window", s.snapkv.window}};
  j["pyramid"] = {{"beta", s.pyramid.beta}};
  j["dynamickv"] = {{"window", s.dynamickv.window},
                    {"kernel", s.dynamickv.kernel},
                    {"pooling", PoolingName(s.dynamickv.pooling)},
                    {"radio_max", s.dynamickv.radio_max},
                    {"every_m", s.dynamickv.every_m},
                    {"progressive", s.dynamickv.progressive}};
  j["d2o"] = {{"hh_ratio", s.d2o.hh_ratio},
              {"recent_ratio", s.d2o.recent_ratio},
              {"ema_alpha", s.d2o.ema_alpha},
              {"ema_beta", s.d2o.ema_beta},
              {"sinks", s.d2o.sinks},
              {"merge", s.d2o.merge},
              {"uncompressed_layers", s.d2o.uncompressed_layers}};
  return j;
}

}  // namespace

const char* MethodName(Method m) { return NameOf(m, kMethods); }
Result<Method> ParseMethod(std::string_view name) { return ParseName("method", name, kMethods); }

const char* AmSelectionName(AmSelection s) { return NameOf(s, kSelections); }
Result<AmSelection> ParseAmSelection(std::string_view name) {
  return ParseName("AM selection", name, kSelections);
}

Allocator ResolvedAllocator(const CompactionSpec& spec) {
  if (spec.allocator != Allocator::kDefault) return spec.allocator;
  switch (spec.method) {
    case Method::kPyramidKv:
      return Allocator::kPyramid;
    case Method::kDynamicKv:
      return Allocator::kDynamicKv;
    case Method::kD2o:
      return Allocator::kD2o;
    default:
      return Allocator::kUniform;
  }
}

const char* AllocatorName(Allocator a) { return NameOf(a, kAllocators); }
Result<Allocator> ParseAllocator(std::string_view name) {
  return ParseName("allocator", name, kAllocators);
}

Status CompactionSpec::Validate() const {
  if (!Known(method, kMethods)) return Bad("method", "is not a known method");
  if (budget == 0) {
    KVC_RETURN_IF_ERROR(CheckReal("ratio", ratio, 1.0, 1e6));
  }
  KVC_RETURN_IF_ERROR(CheckInt("budget", budget, 0, kMaxBudget));
  if (!Known(allocator, kAllocators)) return Bad("allocator", "is not a known allocator");
  KVC_RETURN_IF_ERROR(CheckReal("heldout_fraction", heldout_fraction, 0.0, 0.9));
  KVC_RETURN_IF_ERROR(CheckInt("threads", threads, 0, kMaxThreads));
  KVC_RETURN_IF_ERROR(ValidateAm(am));
  KVC_RETURN_IF_ERROR(ValidateMethods(*this));
  KVC_RETURN_IF_ERROR(CheckReal("gate.min_cosine", gate.min_cosine, 0.0, 1.0));
  KVC_RETURN_IF_ERROR(CheckReal("gate.escalation", gate.escalation, 1.0, 100.0, true));
  KVC_RETURN_IF_ERROR(CheckInt("gate.max_rounds", gate.max_rounds, 0, 32));
  return Status::OK();
}

int64_t CompactionSpec::PerHeadBudget(int64_t tokens) const {
  if (tokens <= 0) return 0;
  int64_t b = budget;
  if (b <= 0) {
    const double r = std::isfinite(ratio) && ratio > 0 ? ratio : 1.0;
    b = static_cast<int64_t>(std::llround(static_cast<double>(tokens) / r));
  }
  return std::clamp<int64_t>(b, 1, tokens);
}

std::string CompactionSpec::ToJson() const {
  nlohmann::ordered_json j;
  j["version"] = 1;
  j["method"] = MethodName(method);
  j["ratio"] = ratio;
  j["budget"] = budget;
  j["allocator"] = AllocatorName(allocator);
  j["heldout_fraction"] = heldout_fraction;
  j["seed"] = seed;  // threads is left out: results do not depend on it
  j["am"] = AmJson(am);
  const nlohmann::ordered_json methods = MethodsJson(*this);
  for (const auto& [key, value] : methods.items()) j[key] = value;
  j["gate"] = {{"min_cosine", gate.min_cosine},
               {"escalation", gate.escalation},
               {"max_rounds", gate.max_rounds}};
  return j.dump();
}

}  // namespace kvc
