// The worker's snapshot series: values owned by other components (store tiers, the UCX
// listener, serving state), copied into the registry just before each /metrics exposition.
// Monotonic snapshots are exposed as counters (advanced by the difference since the last
// refresh), levels as gauges:
//
//   kvc_up                                     1 while serving, 0 while starting or stopping
//   kvc_store_entries{tier}, kvc_store_bytes{tier}          hot | warm | cold
//   kvc_store_tier_events_total{tier,event}    hit | miss | promotion | demotion | eviction |
//                                              expiration | corruption
//   kvc_store_puts_total, kvc_store_deletes_total
//   kvc_ucx_connections_open
//   kvc_ucx_uploads_total{result}              completed | rejected | invalid | over_budget |
//                                              corrupt | timed_out | aborted
//   kvc_ucx_fetches_total{result}              served | failed
//   kvc_ucx_bytes_received_total
//   kvc_ucx_staging_bytes{state}               in_use | cached
//
// Thread safety: Refresh calls must not overlap (the worker makes them on its event loop).
#pragma once

#include "common/metrics.h"
#include "services/engine/engine_types.h"
#include "services/transport/listener.h"

namespace kvc::worker {

class WorkerMetrics {
 public:
  // `registry` may be null (Refresh then does nothing); if set it must outlive this object.
  explicit WorkerMetrics(MetricsRegistry* registry);
  // `ucx` is null when the worker runs without UCX.
  void Refresh(const engine::EngineStats& stats, const transport::ListenerStats* ucx, bool serving);

 private:
  void RefreshStore(const storage::StoreStats& s);
  void RefreshUcx(const transport::ListenerStats& u);

  MetricsRegistry* registry_;
  GaugeFamily* up_ = nullptr;
  GaugeFamily* entries_ = nullptr;
  GaugeFamily* bytes_ = nullptr;
  CounterFamily* events_ = nullptr;
  CounterFamily* puts_ = nullptr;
  CounterFamily* deletes_ = nullptr;
  GaugeFamily* ucx_open_ = nullptr;
  CounterFamily* ucx_uploads_ = nullptr;
  CounterFamily* ucx_fetches_ = nullptr;
  CounterFamily* ucx_bytes_ = nullptr;
  GaugeFamily* ucx_staging_ = nullptr;
};

}  // namespace kvc::worker
