#include "services/engine/engine_metrics.h"

#include <spdlog/spdlog.h>

namespace kvc::engine {
namespace {

// Unwraps a registration; a failure is a bug in the names above, logged once, and leaves the
// series unset (not counted) instead of stopping the worker.
template <typename T>
T* Registered(Result<T*> r) {
  if (!r.ok()) {
    spdlog::error("engine metrics: {}", r.status().ToString());
    return nullptr;
  }
  return *r;
}

}  // namespace

std::vector<double> LatencyBuckets() { return ExponentialBuckets(0.001, 2.0, 21); }

EngineMetrics::EngineMetrics(MetricsRegistry* r) {
  if (r == nullptr) return;
  jobs_ = Registered(
      r->AddCounter("kvc_engine_jobs_total", "Compaction jobs by outcome.", {"outcome"}));
  if (auto* g = Registered(r->AddGauge("kvc_engine_queue_depth", "Jobs waiting to run."))) {
    queue_depth_ = &g->Get();
  }
  if (auto* g = Registered(r->AddGauge("kvc_engine_running_jobs", "Jobs running now."))) {
    running_ = &g->Get();
  }
  if (auto* g = Registered(r->AddGauge("kvc_engine_staged_bytes",
                                       "Bytes held for staged uploads and job inputs."))) {
    staged_bytes_ = &g->Get();
  }
  if (auto* g = Registered(
          r->AddGauge("kvc_engine_staged_uploads", "Uploads waiting for a compact request."))) {
    staged_uploads_ = &g->Get();
  }
  if (auto* h =
          Registered(r->AddHistogram("kvc_engine_queue_wait_seconds",
                                     "Time from submission to start.", {}, LatencyBuckets()))) {
    queue_wait_ = &h->Get();
  }
  compute_ = Registered(r->AddHistogram("kvc_engine_compute_seconds",
                                        "Time a compaction spent in the executor.",
                                        {"method", "executor"}, LatencyBuckets()));
  ratio_ = Registered(r->AddHistogram("kvc_compaction_ratio", "Source entries over kept entries.",
                                      {"method"}, {2, 4, 5, 8, 10, 16, 20, 32, 50, 64, 100}));
  cosine_ = Registered(r->AddHistogram("kvc_compaction_fidelity_cosine",
                                       "Held-out mean cosine of attention outputs.", {"method"},
                                       {0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999}));
  rel_l2_ = Registered(r->AddHistogram(
      "kvc_compaction_fidelity_rel_l2", "Held-out mean relative L2 error of attention outputs.",
      {"method"}, {0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1}));
  gate_ = Registered(
      r->AddCounter("kvc_quality_gate_total", "Requested quality gates by result.", {"result"}));
}

void EngineMetrics::JobDone(const char* outcome) {
  if (jobs_) jobs_->WithLabels({outcome}).Inc();
}

void EngineMetrics::QueueDepth(size_t depth, size_t running) {
  if (queue_depth_) queue_depth_->Set(static_cast<double>(depth));
  if (running_) running_->Set(static_cast<double>(running));
}

void EngineMetrics::Staging(uint64_t bytes, size_t uploads) {
  if (staged_bytes_) staged_bytes_->Set(static_cast<double>(bytes));
  if (staged_uploads_) staged_uploads_->Set(static_cast<double>(uploads));
}

void EngineMetrics::Started(double queue_wait_s) {
  if (queue_wait_) queue_wait_->Observe(queue_wait_s);
}

void EngineMetrics::Computed(const std::string& method, const char* executor, double seconds) {
  if (compute_) compute_->WithLabels({method, executor}).Observe(seconds);
}

void EngineMetrics::Quality(const std::string& method, double ratio, bool measured, double cosine,
                            double rel_l2, bool gate_requested, bool gate_passed) {
  if (ratio_) ratio_->WithLabels({method}).Observe(ratio);
  if (measured && cosine_) cosine_->WithLabels({method}).Observe(cosine);
  if (measured && rel_l2_) rel_l2_->WithLabels({method}).Observe(rel_l2);
  if (gate_requested && gate_) gate_->WithLabels({gate_passed ? "passed" : "failed"}).Inc();
}

}  // namespace kvc::engine
