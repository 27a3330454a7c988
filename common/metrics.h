// A small metrics registry: counters, gauges and histograms with fixed buckets, grouped in
// labelled families, exposed in the Prometheus text format (version 0.0.4).
//
//   MetricsRegistry registry;
//   auto* requests = *registry.AddCounter("kvc_rpc_requests_total", "RPC calls", {"op", "code"});
//   requests->WithLabels({"lookup", "ok"}).Inc();
//   std::string text = registry.ExposePrometheus();
//
// A family is a metric name with a help text, a type and a fixed list of label names; each
// distinct tuple of label values is one series (a Counter, Gauge or Histogram), created on first
// use and never removed. References to families and series stay valid for the registry's
// lifetime, so hot paths look a series up once and keep the reference.
//
// Thread safety: everything is thread-safe. Updating a series is lock-free (atomics); creating a
// series takes its family's mutex; exposition takes the registry's and each family's mutex and
// reads the series without stopping writers (each value is exact; a histogram's buckets, sum and
// count are read one after another, so they may disagree by in-flight observations, but the
// exposed _count always equals the +Inf bucket).
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kvc {

// A value that only goes up (requests served, bytes received).
class Counter {
 public:
  // Adds `delta`. Negative and NaN deltas are ignored (a counter never goes down).
  void Inc(double delta = 1.0);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down (queue depth, bytes staged).
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A point-in-time copy of a histogram.
struct HistogramSnapshot {
  std::vector<double> bounds;    // finite upper bounds, strictly increasing
  std::vector<uint64_t> counts;  // bounds.size() + 1 entries, NOT cumulative; last is > max
  uint64_t count = 0;            // sum of counts
  double sum = 0.0;              // sum of observed values
};

// Observations counted into fixed buckets: bucket i holds values <= bounds[i] (and above
// bounds[i-1]); a last implicit bucket holds everything above the largest bound.
class Histogram {
 public:
  // REQUIRES: bounds finite and strictly increasing (MetricsRegistry::AddHistogram checks).
  explicit Histogram(std::vector<double> bounds);
  // NaN observations are ignored.
  void Observe(double value);
  HistogramSnapshot Snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // bounds_.size() + 1
  std::atomic<double> sum_{0.0};
};

enum class MetricType : uint8_t { kCounter, kGauge, kHistogram };
// "counter", "gauge", "histogram".
const char* MetricTypeName(MetricType type);

namespace metrics_internal {

// The type-independent part of a family; see MetricFamily.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type,
             std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Appends the family's HELP, TYPE and sample lines.
  virtual void Expose(std::string* out) const = 0;

 protected:
  // `values` fitted to the label count: missing values become "", extra ones are dropped.
  std::vector<std::string> Fit(std::span<const std::string_view> values) const;
  // `{a="x",b="y"` (no closing brace) for the given values, escaped; empty without labels.
  std::string LabelPrefix(const std::vector<std::string>& values) const;

  mutable std::mutex mu_;  // guards the series maps of subclasses

 private:
  const std::string name_;
  const std::string help_;
  const MetricType type_;
  const std::vector<std::string> label_names_;
};

}  // namespace metrics_internal

// One metric name and its series. M is Counter, Gauge or Histogram.
template <typename M>
class MetricFamily final : public metrics_internal::FamilyBase {
 public:
  MetricFamily(std::string name, std::string help, MetricType type,
               std::vector<std::string> label_names, std::vector<double> bounds = {})
      : FamilyBase(std::move(name), std::move(help), type, std::move(label_names)),
        bounds_(std::move(bounds)) {}

  // The series for `values` (one per label name, in the family's order), created on first use.
  // REQUIRES: values.size() == label_names().size(); otherwise missing values are taken as ""
  // and extra ones are dropped.
  M& WithLabels(std::initializer_list<std::string_view> values) {
    return WithLabels(std::span<const std::string_view>(values.begin(), values.size()));
  }
  M& WithLabels(std::span<const std::string_view> values);
  // The series without label values (for families with no labels).
  M& Get() { return WithLabels({}); }

  const std::vector<double>& bounds() const { return bounds_; }
  void Expose(std::string* out) const override;

 private:
  const std::vector<double> bounds_;                               // histograms only
  std::map<std::vector<std::string>, std::unique_ptr<M>> series_;  // guarded by mu_
};

using CounterFamily = MetricFamily<Counter>;
using GaugeFamily = MetricFamily<Gauge>;
using HistogramFamily = MetricFamily<Histogram>;

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Returns the family `name`, creating it. Adding a family that exists with the same type,
  // label names and buckets returns the existing one (help text of the first registration).
  // InvalidArgument for a name or label name that is not a valid Prometheus identifier
  // ([a-zA-Z_:][a-zA-Z0-9_:]* for names, [a-zA-Z_][a-zA-Z0-9_]* for labels, no leading "__", no
  // label "le" on histograms), duplicate label names, buckets that are empty, not finite or not
  // strictly increasing, or an existing family of the same name that differs.
  Result<CounterFamily*> AddCounter(std::string_view name, std::string_view help,
                                    std::vector<std::string> label_names = {});
  Result<GaugeFamily*> AddGauge(std::string_view name, std::string_view help,
                                std::vector<std::string> label_names = {});
  Result<HistogramFamily*> AddHistogram(std::string_view name, std::string_view help,
                                        std::vector<std::string> label_names,
                                        std::vector<double> buckets);

  // Every family, sorted by name, each series sorted by label values, in the Prometheus text
  // format: "# HELP", "# TYPE", then one line per sample; histograms as name_bucket{le=...}
  // (cumulative, ending with le="+Inf"), name_sum and name_count. Label values and help text are
  // escaped (backslash, double quote in label values, newline). A family with no series yet
  // exposes only its HELP and TYPE lines.
  std::string ExposePrometheus() const;

 private:
  Result<metrics_internal::FamilyBase*> Add(std::string_view name, std::string_view help,
                                            MetricType type, std::vector<std::string> labels,
                                            std::vector<double> buckets);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<metrics_internal::FamilyBase>, std::less<>> families_;
};

// `count` bounds start, start*factor, start*factor^2, ... REQUIRES: start > 0, factor > 1,
// count >= 1.
std::vector<double> ExponentialBuckets(double start, double factor, int count);
// `count` bounds start, start+width, ... REQUIRES: width > 0, count >= 1.
std::vector<double> LinearBuckets(double start, double width, int count);

// A number as Prometheus writes it: shortest round-trip decimal, "+Inf", "-Inf", "NaN".
std::string FormatMetricValue(double value);

}  // namespace kvc
