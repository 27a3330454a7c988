#include "common/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

namespace kvc {
namespace {

TEST(MetricsTest, CounterOnlyGoesUp) {
  MetricsRegistry r;
  CounterFamily* f = *r.AddCounter("requests_total", "Requests.");
  Counter& c = f->Get();
  c.Inc();
  c.Inc(2.5);
  c.Inc(-10);
  c.Inc(std::numeric_limits<double>::quiet_NaN());
  EXPECT_DOUBLE_EQ(c.Value(), 3.5);
  EXPECT_EQ(&c, &f->Get());  // the same series every time
}

TEST(MetricsTest, GaugeSetAndAdd) {
  MetricsRegistry r;
  Gauge& g = (*r.AddGauge("queue_depth", "Jobs waiting."))->Get();
  g.Set(5);
  g.Add(-2);
  EXPECT_DOUBLE_EQ(g.Value(), 3);
}

TEST(MetricsTest, HistogramBucketsAreUpperInclusive) {
  Histogram h({1.0, 2.0, 5.0});
  for (double v : {0.5, 1.0, 1.5, 2.0, 4.0, 7.0, 100.0}) h.Observe(v);
  h.Observe(std::numeric_limits<double>::quiet_NaN());
  HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.counts, (std::vector<uint64_t>{2, 2, 1, 2}));
  EXPECT_EQ(s.count, 7u);
  EXPECT_DOUBLE_EQ(s.sum, 116.0);
}

TEST(MetricsTest, ExpositionFormat) {
  MetricsRegistry r;
  auto* req = *r.AddCounter("kvc_requests_total", "Calls per op.", {"op", "code"});
  req->WithLabels({"lookup", "ok"}).Inc(3);
  req->WithLabels({"fetch", "not_found"}).Inc();
  auto* lat = *r.AddHistogram("kvc_latency_seconds", "Latency.", {"op"}, {0.1, 1});
  lat->WithLabels({"fetch"}).Observe(0.05);
  lat->WithLabels({"fetch"}).Observe(0.5);
  lat->WithLabels({"fetch"}).Observe(3);
  (*r.AddGauge("kvc_up", "Serving."))->Get().Set(1);
  const std::string expected =
      "# HELP kvc_latency_seconds Latency.\n"
      "# TYPE kvc_latency_seconds histogram\n"
      "kvc_latency_seconds_bucket{op=\"fetch\",le=\"0.1\"} 1\n"
      "kvc_latency_seconds_bucket{op=\"fetch\",le=\"1\"} 2\n"
      "kvc_latency_seconds_bucket{op=\"fetch\",le=\"+Inf\"} 3\n"
      "kvc_latency_seconds_sum{op=\"fetch\"} 3.55\n"
      "kvc_latency_seconds_count{op=\"fetch\"} 3\n"
      "# HELP kvc_requests_total Calls per op.\n"
      "# TYPE kvc_requests_total counter\n"
      "kvc_requests_total{op=\"fetch\",code=\"not_found\"} 1\n"
      "kvc_requests_total{op=\"lookup\",code=\"ok\"} 3\n"
      "# HELP kvc_up Serving.\n"
      "# TYPE kvc_up gauge\n"
      "kvc_up 1\n";
  EXPECT_EQ(r.ExposePrometheus(), expected);
}

TEST(MetricsTest, UnlabelledHistogramHasOnlyLe) {
  MetricsRegistry r;
  (*r.AddHistogram("h", "x", {}, {1}))->Get().Observe(2);
  const std::string text = r.ExposePrometheus();
  EXPECT_NE(text.find("h_bucket{le=\"1\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("h_bucket{le=\"+Inf\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("h_sum 2\n"), std::string::npos) << text;
}

TEST(MetricsTest, EscapesLabelValuesAndHelp) {
  MetricsRegistry r;
  auto* f = *r.AddCounter("c", "line1\nback\\slash", {"path"});
  f->WithLabels({"a\"b\\c\nd"}).Inc();
  const std::string text = r.ExposePrometheus();
  EXPECT_NE(text.find("# HELP c line1\\nback\\\\slash\n"), std::string::npos) << text;
  EXPECT_NE(text.find("c{path=\"a\\\"b\\\\c\\nd\"} 1\n"), std::string::npos) << text;
}

TEST(MetricsTest, RejectsBadNamesAndConflicts) {
  MetricsRegistry r;
  EXPECT_TRUE(r.AddCounter("1abc", "x").status().IsInvalidArgument());
  EXPECT_TRUE(r.AddCounter("a-b", "x").status().IsInvalidArgument());
  EXPECT_TRUE(r.AddCounter("__reserved", "x").status().IsInvalidArgument());
  EXPECT_TRUE(r.AddCounter("ok", "x", {"bad-label"}).status().IsInvalidArgument());
  EXPECT_TRUE(r.AddCounter("ok", "x", {"a", "a"}).status().IsInvalidArgument());
  EXPECT_TRUE(r.AddHistogram("h", "x", {"le"}, {1}).status().IsInvalidArgument());
  EXPECT_TRUE(r.AddHistogram("h", "x", {}, {}).status().IsInvalidArgument());
  EXPECT_TRUE(r.AddHistogram("h", "x", {}, {2, 1}).status().IsInvalidArgument());
  EXPECT_TRUE(r.AddHistogram("h", "x", {}, {1, INFINITY}).status().IsInvalidArgument());

  auto* first = *r.AddCounter("dup", "first", {"op"});
  auto again = r.AddCounter("dup", "second", {"op"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, first);
  EXPECT_TRUE(r.AddGauge("dup", "x", {"op"}).status().IsInvalidArgument());
  EXPECT_TRUE(r.AddCounter("dup", "x", {"other"}).status().IsInvalidArgument());
  ASSERT_TRUE(r.AddHistogram("hh", "x", {}, {1, 2}).ok());
  EXPECT_TRUE(r.AddHistogram("hh", "x", {}, {1, 3}).status().IsInvalidArgument());
}

TEST(MetricsTest, MissingLabelValuesBecomeEmpty) {
  MetricsRegistry r;
  auto* f = *r.AddCounter("c", "x", {"a", "b"});
  f->WithLabels({"only"}).Inc();
  EXPECT_NE(r.ExposePrometheus().find("c{a=\"only\",b=\"\"} 1"), std::string::npos);
}

TEST(MetricsTest, ValueFormatting) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(42), "42");
  EXPECT_EQ(FormatMetricValue(0.25), "0.25");
  EXPECT_EQ(FormatMetricValue(1e21), "1e+21");
  EXPECT_EQ(FormatMetricValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatMetricValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatMetricValue(NAN), "NaN");
}

TEST(MetricsTest, BucketHelpers) {
  EXPECT_EQ(ExponentialBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
  EXPECT_EQ(LinearBuckets(0.5, 0.25, 3), (std::vector<double>{0.5, 0.75, 1.0}));
}

TEST(MetricsTest, ConcurrentUpdatesAreExact) {
  MetricsRegistry r;
  auto* c = *r.AddCounter("c", "x", {"t"});
  auto* h = *r.AddHistogram("h", "x", {}, {10});
  constexpr int kThreads = 4;
  constexpr int kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIters; ++i) {
        c->WithLabels({i % 2 ? "odd" : "even"}).Inc();
        h->Get().Observe(t);
        if (i % 1000 == 0) r.ExposePrometheus();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_DOUBLE_EQ(c->WithLabels({"odd"}).Value() + c->WithLabels({"even"}).Value(),
                   kThreads * kIters);
  HistogramSnapshot s = h->Get().Snapshot();
  EXPECT_EQ(s.count, static_cast<uint64_t>(kThreads * kIters));
  EXPECT_DOUBLE_EQ(s.sum, kIters * (0 + 1 + 2 + 3));
}

}  // namespace
}  // namespace kvc
