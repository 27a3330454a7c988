// The `options` map of the wire Spec: every CompactionSpec field that has no named field of its
// own, by dotted name (convert.h lists them).
#include <charconv>
#include <functional>
#include <limits>
#include <string>
#include <system_error>

#include "services/rpc/convert.h"

namespace kvc::rpc {
namespace {

Status BadValue(std::string_view key, std::string_view value, std::string_view expected) {
  return Status::InvalidArgument("spec option '" + std::string(key) + "' = '" + std::string(value) +
                                 "': expected " + std::string(expected));
}

// Writes *out only when all of `v` is one number.
template <typename T>
bool ParseNumber(std::string_view v, T* out) {
  T parsed{};
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), parsed);
  if (ec != std::errc() || end != v.data() + v.size()) return false;
  *out = parsed;
  return true;
}

Status Parse(std::string_view key, std::string_view v, int* out) {
  return ParseNumber(v, out) ? Status::OK() : BadValue(key, v, "an integer");
}
Status Parse(std::string_view key, std::string_view v, double* out) {
  return ParseNumber(v, out) ? Status::OK() : BadValue(key, v, "a number");
}
Status Parse(std::string_view key, std::string_view v, bool* out) {
  if (v == "true" || v == "1") {
    *out = true;
  } else if (v == "false" || v == "0") {
    *out = false;
  } else {
    return BadValue(key, v, "true or false");
  }
  return Status::OK();
}
Status Parse(std::string_view key, std::string_view v, Pooling* out) {
  if (v == "avg") {
    *out = Pooling::kAvg;
  } else if (v == "max") {
    *out = Pooling::kMax;
  } else {
    return BadValue(key, v, "avg or max");
  }
  return Status::OK();
}

// Splits on `sep`; an empty string gives no parts.
std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  if (s.empty()) return parts;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == sep) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return parts;
}

Status Parse(std::string_view key, std::string_view v, std::vector<int>* out) {
  std::vector<int> values;
  for (std::string_view part : Split(v, ',')) {
    int x = 0;
    if (!ParseNumber(part, &x)) return BadValue(key, v, "comma-separated integers");
    values.push_back(x);
  }
  *out = std::move(values);
  return Status::OK();
}

Status Parse(std::string_view key, std::string_view v, std::vector<OmpStage>* out) {
  std::vector<OmpStage> stages;
  for (std::string_view part : Split(v, ',')) {
    const std::vector<std::string_view> f = Split(part, ':');
    OmpStage st{};
    const bool ok = f.size() == 3 &&
                    (f[0] == "max" ? (st.up_to = std::numeric_limits<int64_t>::max(), true)
                                   : ParseNumber(f[0], &st.up_to)) &&
                    ParseNumber(f[1], &st.keys_per_step) && ParseNumber(f[2], &st.refit_every);
    if (!ok) return BadValue(key, v, "up_to:keys_per_step:refit_every,... ('max' allowed)");
    stages.push_back(st);
  }
  *out = std::move(stages);
  return Status::OK();
}

std::string Text(int v) { return std::to_string(v); }
std::string Text(bool v) { return v ? "true" : "false"; }
std::string Text(Pooling v) { return v == Pooling::kMax ? "max" : "avg"; }
std::string Text(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : std::string("nan");
}
std::string Text(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}
std::string Text(const std::vector<OmpStage>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string up = v[i].up_to == std::numeric_limits<int64_t>::max()
                               ? std::string("max")
                               : std::to_string(v[i].up_to);
    s += (i ? "," : "") + up + ":" + std::to_string(v[i].keys_per_step) + ":" +
         std::to_string(v[i].refit_every);
  }
  return s;
}

struct OptionField {
  const char* key;
  std::function<Status(CompactionSpec*, std::string_view)> set;
  std::function<std::string(const CompactionSpec&)> get;
};

// One table row for the CompactionSpec member `field` (an lvalue expression on `s`).
#define KVC_SPEC_OPTION(name, field)                                                       \
  OptionField {                                                                            \
    name, [](CompactionSpec* s, std::string_view v) { return Parse(name, v, &s->field); }, \
        [](const CompactionSpec& s) { return Text(s.field); }                              \
  }

const std::vector<OptionField>& Fields() {
  static const std::vector<OptionField> fields = {
      KVC_SPEC_OPTION("am.fit_beta", am.fit_beta),
      KVC_SPEC_OPTION("am.fit_values", am.fit_values),
      KVC_SPEC_OPTION("am.keys_as_queries", am.keys_as_queries),
      KVC_SPEC_OPTION("am.keys_as_queries_fit", am.keys_as_queries_fit),
      KVC_SPEC_OPTION("am.nnls_pg_steps", am.nnls_pg_steps),
      KVC_SPEC_OPTION("am.omp_fast_schedule", am.omp_fast_schedule),
      KVC_SPEC_OPTION("am.refine_rounds", am.refine_rounds),
      KVC_SPEC_OPTION("am.ridge", am.ridge),
      KVC_SPEC_OPTION("d2o.ema_alpha", d2o.ema_alpha),
      KVC_SPEC_OPTION("d2o.ema_beta", d2o.ema_beta),
      KVC_SPEC_OPTION("d2o.hh_ratio", d2o.hh_ratio),
      KVC_SPEC_OPTION("d2o.merge", d2o.merge),
      KVC_SPEC_OPTION("d2o.recent_ratio", d2o.recent_ratio),
      KVC_SPEC_OPTION("d2o.sinks", d2o.sinks),
      KVC_SPEC_OPTION("d2o.uncompressed_layers", d2o.uncompressed_layers),
      KVC_SPEC_OPTION("dynamickv.every_m", dynamickv.every_m),
      KVC_SPEC_OPTION("dynamickv.kernel", dynamickv.kernel),
      KVC_SPEC_OPTION("dynamickv.pooling", dynamickv.pooling),
      KVC_SPEC_OPTION("dynamickv.progressive", dynamickv.progressive),
      KVC_SPEC_OPTION("dynamickv.radio_max", dynamickv.radio_max),
      KVC_SPEC_OPTION("dynamickv.window", dynamickv.window),
      KVC_SPEC_OPTION("gate.escalation", gate.escalation),
      KVC_SPEC_OPTION("gate.max_rounds", gate.max_rounds),
      KVC_SPEC_OPTION("h2o.recent_fraction", h2o.recent_fraction),
      KVC_SPEC_OPTION("okdmd.k_modes", okdmd.k_modes),
      KVC_SPEC_OPTION("okdmd.lambda", okdmd.lambda),
      KVC_SPEC_OPTION("okdmd.power_iters", okdmd.power_iters),
      KVC_SPEC_OPTION("okdmd.recent", okdmd.recent),
      KVC_SPEC_OPTION("okdmd.refresh_every", okdmd.refresh_every),
      KVC_SPEC_OPTION("okdmd.sigma", okdmd.sigma),
      KVC_SPEC_OPTION("okdmd.sinks", okdmd.sinks),
      KVC_SPEC_OPTION("pyramid.beta", pyramid.beta),
      KVC_SPEC_OPTION("snapkv.kernel", snapkv.kernel),
      KVC_SPEC_OPTION("snapkv.pooling", snapkv.pooling),
      KVC_SPEC_OPTION("snapkv.window", snapkv.window),
      KVC_SPEC_OPTION("streaming.sinks", streaming.sinks),
      KVC_SPEC_OPTION("threads", threads),
  };
  return fields;
}

#undef KVC_SPEC_OPTION

}  // namespace

std::vector<std::string> SpecOptionKeys() {
  std::vector<std::string> keys;
  for (const OptionField& f : Fields()) keys.emplace_back(f.key);
  return keys;
}

Status ApplySpecOption(CompactionSpec* spec, std::string_view key, std::string_view value) {
  for (const OptionField& f : Fields()) {
    if (key == f.key) return f.set(spec, value);
  }
  return Status::InvalidArgument("unknown spec option '" + std::string(key) +
                                 "' (see services/rpc/convert.h for the option names)");
}

// Every option whose text differs from the default spec's, as SpecToThrift sends them.
std::map<std::string, std::string> NonDefaultSpecOptions(const CompactionSpec& spec) {
  static const CompactionSpec defaults;
  std::map<std::string, std::string> out;
  for (const OptionField& f : Fields()) {
    std::string value = f.get(spec);
    if (value != f.get(defaults)) out.emplace(f.key, std::move(value));
  }
  return out;
}

}  // namespace kvc::rpc
