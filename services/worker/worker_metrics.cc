#include "services/worker/worker_metrics.h"

#include <spdlog/spdlog.h>

namespace kvc::worker {
namespace {

template <typename T>
T* Registered(Result<T*> r) {
  if (!r.ok()) {
    spdlog::error("worker metrics: {}", r.status().ToString());
    return nullptr;
  }
  return *r;
}

// Advances a counter to a snapshot of a monotonic value.
void Mirror(Counter& c, uint64_t value) {
  const double delta = static_cast<double>(value) - c.Value();
  if (delta > 0) c.Inc(delta);
}

}  // namespace

WorkerMetrics::WorkerMetrics(MetricsRegistry* r) : registry_(r) {
  if (r == nullptr) return;
  up_ = Registered(r->AddGauge("kvc_up", "1 while the worker serves, 0 otherwise."));
  entries_ = Registered(r->AddGauge("kvc_store_entries", "Entries held per tier.", {"tier"}));
  bytes_ = Registered(r->AddGauge("kvc_store_bytes", "Bytes held per tier.", {"tier"}));
  events_ = Registered(
      r->AddCounter("kvc_store_tier_events_total", "Store events per tier.", {"tier", "event"}));
  puts_ = Registered(r->AddCounter("kvc_store_puts_total", "Entries written."));
  deletes_ = Registered(r->AddCounter("kvc_store_deletes_total", "Entries deleted."));
  ucx_open_ = Registered(r->AddGauge("kvc_ucx_connections_open", "Open UCX client connections."));
  ucx_uploads_ =
      Registered(r->AddCounter("kvc_ucx_uploads_total", "UCX uploads by result.", {"result"}));
  ucx_fetches_ =
      Registered(r->AddCounter("kvc_ucx_fetches_total", "UCX fetches by result.", {"result"}));
  ucx_bytes_ = Registered(
      r->AddCounter("kvc_ucx_bytes_received_total", "Tensor bytes of completed UCX uploads."));
  ucx_staging_ =
      Registered(r->AddGauge("kvc_ucx_staging_bytes", "UCX receive buffer bytes.", {"state"}));
}

void WorkerMetrics::Refresh(const engine::EngineStats& stats, const transport::ListenerStats* ucx,
                            bool serving) {
  if (registry_ == nullptr) return;
  if (up_) up_->Get().Set(serving ? 1 : 0);
  RefreshStore(stats.store);
  if (ucx != nullptr) RefreshUcx(*ucx);
}

void WorkerMetrics::RefreshStore(const storage::StoreStats& s) {
  const std::pair<const char*, const storage::TierStats*> tiers[] = {
      {"hot", &s.hot}, {"warm", &s.warm}, {"cold", &s.cold}};
  for (const auto& [name, t] : tiers) {
    if (entries_) entries_->WithLabels({name}).Set(static_cast<double>(t->entries));
    if (bytes_) bytes_->WithLabels({name}).Set(static_cast<double>(t->bytes));
    if (!events_) continue;
    Mirror(events_->WithLabels({name, "hit"}), t->hits);
    Mirror(events_->WithLabels({name, "miss"}), t->misses);
    Mirror(events_->WithLabels({name, "promotion"}), t->promotions);
    Mirror(events_->WithLabels({name, "demotion"}), t->demotions);
    Mirror(events_->WithLabels({name, "eviction"}), t->evictions);
    Mirror(events_->WithLabels({name, "expiration"}), t->expirations);
    Mirror(events_->WithLabels({name, "corruption"}), t->corruptions);
  }
  if (puts_) Mirror(puts_->Get(), s.puts);
  if (deletes_) Mirror(deletes_->Get(), s.deletes);
}

void WorkerMetrics::RefreshUcx(const transport::ListenerStats& u) {
  if (ucx_open_) ucx_open_->Get().Set(static_cast<double>(u.connections_open));
  if (ucx_uploads_) {
    Mirror(ucx_uploads_->WithLabels({"completed"}), u.uploads_completed);
    Mirror(ucx_uploads_->WithLabels({"rejected"}), u.uploads_rejected);
    Mirror(ucx_uploads_->WithLabels({"invalid"}), u.uploads_invalid);
    Mirror(ucx_uploads_->WithLabels({"over_budget"}), u.uploads_over_budget);
    Mirror(ucx_uploads_->WithLabels({"corrupt"}), u.uploads_corrupt);
    Mirror(ucx_uploads_->WithLabels({"timed_out"}), u.uploads_timed_out);
    Mirror(ucx_uploads_->WithLabels({"aborted"}), u.uploads_aborted);
  }
  if (ucx_fetches_) {
    Mirror(ucx_fetches_->WithLabels({"served"}), u.fetches_served);
    Mirror(ucx_fetches_->WithLabels({"failed"}), u.fetches_failed);
  }
  if (ucx_bytes_) Mirror(ucx_bytes_->Get(), u.bytes_received);
  if (ucx_staging_) {
    ucx_staging_->WithLabels({"in_use"}).Set(static_cast<double>(u.staging_in_use));
    ucx_staging_->WithLabels({"cached"}).Set(static_cast<double>(u.staging_cached));
  }
}

}  // namespace kvc::worker
