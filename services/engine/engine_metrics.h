// The engine's series in a MetricsRegistry (all optional: with no registry nothing is counted).
// Internal to services/engine.
//
//   kvc_engine_jobs_total{outcome}             succeeded | failed | cancelled | expired | rejected
//   kvc_engine_queue_depth                     jobs waiting
//   kvc_engine_running_jobs                    jobs running
//   kvc_engine_staged_bytes                    bytes held for staged uploads and job inputs
//   kvc_engine_staged_uploads                  uploads waiting for a compact request
//   kvc_engine_queue_wait_seconds              submission to start
//   kvc_engine_compute_seconds{method,executor}  time in the executor
//   kvc_compaction_ratio{method}               T * layers * kv heads / kept entries
//   kvc_compaction_fidelity_cosine{method}     held-out mean cosine (when measured)
//   kvc_compaction_fidelity_rel_l2{method}     held-out mean relative L2 error (when measured)
//   kvc_quality_gate_total{result}             passed | failed (requested gates only)
//
// Thread safety: all methods are thread-safe.
#pragma once

#include <string>

#include "common/metrics.h"

namespace kvc::engine {

class EngineMetrics {
 public:
  // `registry` may be null (then every method does nothing).
  explicit EngineMetrics(MetricsRegistry* registry);

  void JobDone(const char* outcome);
  void QueueDepth(size_t depth, size_t running);
  void Staging(uint64_t bytes, size_t uploads);
  void Started(double queue_wait_s);
  void Computed(const std::string& method, const char* executor, double seconds);
  void Quality(const std::string& method, double ratio, bool measured, double cosine, double rel_l2,
               bool gate_requested, bool gate_passed);

 private:
  CounterFamily* jobs_ = nullptr;
  Gauge* queue_depth_ = nullptr;
  Gauge* running_ = nullptr;
  Gauge* staged_bytes_ = nullptr;
  Gauge* staged_uploads_ = nullptr;
  Histogram* queue_wait_ = nullptr;
  HistogramFamily* compute_ = nullptr;
  HistogramFamily* ratio_ = nullptr;
  HistogramFamily* cosine_ = nullptr;
  HistogramFamily* rel_l2_ = nullptr;
  CounterFamily* gate_ = nullptr;
};

// Latency buckets shared by the engine and the RPC layer: 1 ms .. about 17 min.
std::vector<double> LatencyBuckets();

}  // namespace kvc::engine
