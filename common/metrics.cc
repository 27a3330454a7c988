#include "common/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>
#include <utility>

namespace kvc {
namespace {

// Adds `delta` to an atomic double (compare-and-swap; fetch_add on atomic<double> is not
// lock-free everywhere).
void AtomicAdd(std::atomic<double>* target, double delta) {
  double current = target->load(std::memory_order_relaxed);
  while (!target->compare_exchange_weak(current, current + delta, std::memory_order_relaxed)) {
  }
}

bool IsNameStart(char c, bool allow_colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
}

bool IsNameChar(char c, bool allow_colon) {
  return IsNameStart(c, allow_colon) || (c >= '0' && c <= '9');
}

bool ValidIdentifier(std::string_view s, bool allow_colon) {
  if (s.empty() || !IsNameStart(s[0], allow_colon)) return false;
  return std::all_of(s.begin() + 1, s.end(), [&](char c) { return IsNameChar(c, allow_colon); });
}

Status ValidateLabels(std::string_view family, MetricType type,
                      const std::vector<std::string>& labels) {
  std::set<std::string_view> seen;
  for (const std::string& l : labels) {
    if (!ValidIdentifier(l, /*allow_colon=*/false) || l.starts_with("__")) {
      return Status::InvalidArgument("metrics: family '" + std::string(family) +
                                     "': invalid label name '" + l + "'");
    }
    if (type == MetricType::kHistogram && l == "le") {
      return Status::InvalidArgument("metrics: family '" + std::string(family) +
                                     "': a histogram may not have a label named 'le'");
    }
    if (!seen.insert(l).second) {
      return Status::InvalidArgument("metrics: family '" + std::string(family) +
                                     "': duplicate label name '" + l + "'");
    }
  }
  return Status::OK();
}

Status ValidateBuckets(std::string_view family, const std::vector<double>& buckets) {
  if (buckets.empty()) {
    return Status::InvalidArgument("metrics: histogram '" + std::string(family) +
                                   "' needs at least one bucket bound");
  }
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (!std::isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
      return Status::InvalidArgument("metrics: histogram '" + std::string(family) +
                                     "': bucket bounds must be finite and strictly increasing");
    }
  }
  return Status::OK();
}

void AppendEscaped(std::string_view s, bool quote, std::string* out) {
  for (char c : s) {
    if (c == '\\') {
      *out += "\\\\";
    } else if (c == '\n') {
      *out += "\\n";
    } else if (quote && c == '"') {
      *out += "\\\"";
    } else {
      *out += c;
    }
  }
}

// "<prefix>[,]<extra>}" or "" when both are empty.
std::string CloseLabels(const std::string& prefix, const std::string& extra) {
  if (prefix.empty() && extra.empty()) return "";
  if (prefix.empty()) return "{" + extra + "}";
  if (extra.empty()) return prefix + "}";
  return prefix + "," + extra + "}";
}

void AppendSample(const std::string& name, const std::string& labels, double value,
                  std::string* out) {
  *out += name;
  *out += labels;
  *out += ' ';
  *out += FormatMetricValue(value);
  *out += '\n';
}

}  // namespace

void Counter::Inc(double delta) {
  if (!(delta > 0)) return;  // also drops NaN
  AtomicAdd(&value_, delta);
}

void Gauge::Add(double delta) { AtomicAdd(&value_, delta); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {}

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(&sum_, value);
}

HistogramSnapshot Histogram::Snapshot() const {
  HistogramSnapshot s;
  s.bounds = bounds_;
  s.counts.resize(bounds_.size() + 1);
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    s.count += s.counts[i];
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

const char* MetricTypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, end);
}

namespace metrics_internal {

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type,
                       std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {}

std::vector<std::string> FamilyBase::Fit(std::span<const std::string_view> values) const {
  std::vector<std::string> out(label_names_.size());
  for (size_t i = 0; i < out.size() && i < values.size(); ++i) out[i] = std::string(values[i]);
  return out;
}

std::string FamilyBase::LabelPrefix(const std::vector<std::string>& values) const {
  if (label_names_.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < label_names_.size(); ++i) {
    if (i > 0) out += ',';
    out += label_names_[i];
    out += "=\"";
    AppendEscaped(values[i], /*quote=*/true, &out);
    out += '"';
  }
  return out;
}

}  // namespace metrics_internal

template <typename M>
M& MetricFamily<M>::WithLabels(std::span<const std::string_view> values) {
  std::vector<std::string> key = Fit(values);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = series_.find(key);
  if (it == series_.end()) {
    std::unique_ptr<M> m;
    if constexpr (std::is_same_v<M, Histogram>) {
      m = std::make_unique<Histogram>(bounds_);
    } else {
      m = std::make_unique<M>();
    }
    it = series_.emplace(std::move(key), std::move(m)).first;
  }
  return *it->second;
}

template <typename M>
void MetricFamily<M>::Expose(std::string* out) const {
  *out += "# HELP " + name() + " ";
  AppendEscaped(help(), /*quote=*/false, out);
  *out += "\n# TYPE " + name() + " " + MetricTypeName(type()) + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, series] : series_) {
    const std::string prefix = LabelPrefix(values);
    if constexpr (std::is_same_v<M, Histogram>) {
      const HistogramSnapshot s = series->Snapshot();
      uint64_t cumulative = 0;
      for (size_t i = 0; i < s.counts.size(); ++i) {
        cumulative += s.counts[i];
        const std::string le =
            i < s.bounds.size() ? FormatMetricValue(s.bounds[i]) : std::string("+Inf");
        AppendSample(name() + "_bucket", CloseLabels(prefix, "le=\"" + le + "\""),
                     static_cast<double>(cumulative), out);
      }
      AppendSample(name() + "_sum", CloseLabels(prefix, ""), s.sum, out);
      AppendSample(name() + "_count", CloseLabels(prefix, ""), static_cast<double>(s.count), out);
    } else {
      AppendSample(name(), CloseLabels(prefix, ""), series->Value(), out);
    }
  }
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;
template class MetricFamily<Histogram>;

Result<metrics_internal::FamilyBase*> MetricsRegistry::Add(std::string_view name,
                                                           std::string_view help, MetricType type,
                                                           std::vector<std::string> labels,
                                                           std::vector<double> buckets) {
  if (!ValidIdentifier(name, /*allow_colon=*/true) || name.starts_with("__")) {
    return Status::InvalidArgument("metrics: invalid metric name '" + std::string(name) + "'");
  }
  KVC_RETURN_IF_ERROR(ValidateLabels(name, type, labels));
  if (type == MetricType::kHistogram) KVC_RETURN_IF_ERROR(ValidateBuckets(name, buckets));

  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    metrics_internal::FamilyBase* f = it->second.get();
    bool same = f->type() == type && f->label_names() == labels;
    if (same && type == MetricType::kHistogram) {
      same = static_cast<HistogramFamily*>(f)->bounds() == buckets;
    }
    if (!same) {
      return Status::InvalidArgument("metrics: family '" + std::string(name) +
                                     "' already exists with another type, labels or buckets");
    }
    return f;
  }
  std::unique_ptr<metrics_internal::FamilyBase> f;
  switch (type) {
    case MetricType::kCounter:
      f = std::make_unique<CounterFamily>(std::string(name), std::string(help), type,
                                          std::move(labels));
      break;
    case MetricType::kGauge:
      f = std::make_unique<GaugeFamily>(std::string(name), std::string(help), type,
                                        std::move(labels));
      break;
    case MetricType::kHistogram:
      f = std::make_unique<HistogramFamily>(std::string(name), std::string(help), type,
                                            std::move(labels), std::move(buckets));
      break;
  }
  metrics_internal::FamilyBase* raw = f.get();
  families_.emplace(std::string(name), std::move(f));
  return raw;
}

Result<CounterFamily*> MetricsRegistry::AddCounter(std::string_view name, std::string_view help,
                                                   std::vector<std::string> label_names) {
  KVC_ASSIGN_OR_RETURN(auto* f, Add(name, help, MetricType::kCounter, std::move(label_names), {}));
  return static_cast<CounterFamily*>(f);
}

Result<GaugeFamily*> MetricsRegistry::AddGauge(std::string_view name, std::string_view help,
                                               std::vector<std::string> label_names) {
  KVC_ASSIGN_OR_RETURN(auto* f, Add(name, help, MetricType::kGauge, std::move(label_names), {}));
  return static_cast<GaugeFamily*>(f);
}

Result<HistogramFamily*> MetricsRegistry::AddHistogram(std::string_view name, std::string_view help,
                                                       std::vector<std::string> label_names,
                                                       std::vector<double> buckets) {
  KVC_ASSIGN_OR_RETURN(
      auto* f, Add(name, help, MetricType::kHistogram, std::move(label_names), std::move(buckets)));
  return static_cast<HistogramFamily*>(f);
}

std::string MetricsRegistry::ExposePrometheus() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, family] : families_) family->Expose(&out);
  return out;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) out.push_back(b);
  return out;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  std::vector<double> out;
  for (int i = 0; i < count; ++i) out.push_back(start + width * i);
  return out;
}

}  // namespace kvc
