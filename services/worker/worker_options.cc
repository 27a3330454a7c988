#include "services/worker/worker_options.h"

#include <CLI/CLI.hpp>
#include <functional>
#include <limits>
#include <sstream>

#include "common/logging.h"

namespace kvc::worker {
namespace {

using Ms = std::chrono::milliseconds;

// One config key and how it lands in WorkerOptions.
struct ConfigField {
  const char* key;
  std::function<Status(const Config&, WorkerOptions*)> apply;
};

Status OutOfRange(std::string_view key, int64_t v) {
  return Status::InvalidArgument("config: " + std::string(key) + " = " + std::to_string(v) +
                                 " is out of range");
}

// Integer-valued keys into any integral field, range-checked.
template <typename T>
ConfigField IntKey(const char* key, T WorkerOptions::*field) {
  return {key, [key, field](const Config& c, WorkerOptions* o) -> Status {
            KVC_ASSIGN_OR_RETURN(int64_t v, c.GetInt(key, static_cast<int64_t>(o->*field)));
            if (v < static_cast<int64_t>(std::numeric_limits<T>::min()) ||
                static_cast<uint64_t>(v) > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
              return OutOfRange(key, v);
            }
            o->*field = static_cast<T>(v);
            return Status::OK();
          }};
}

// Integer-valued keys into EngineOptions fields.
template <typename T>
ConfigField EngineInt(const char* key, T engine::EngineOptions::*field) {
  return {key, [key, field](const Config& c, WorkerOptions* o) -> Status {
            KVC_ASSIGN_OR_RETURN(int64_t v, c.GetInt(key, static_cast<int64_t>(o->engine.*field)));
            if (v < 0) return OutOfRange(key, v);
            o->engine.*field = static_cast<T>(v);
            return Status::OK();
          }};
}

ConfigField EngineMs(const char* key, Ms engine::EngineOptions::*field) {
  return {key, [key, field](const Config& c, WorkerOptions* o) -> Status {
            KVC_ASSIGN_OR_RETURN(int64_t v, c.GetInt(key, (o->engine.*field).count()));
            o->engine.*field = Ms(v);
            return Status::OK();
          }};
}

ConfigField StringKey(const char* key, std::string WorkerOptions::*field) {
  return {key, [key, field](const Config& c, WorkerOptions* o) -> Status {
            KVC_ASSIGN_OR_RETURN(o->*field, c.GetString(key, o->*field));
            return Status::OK();
          }};
}

ConfigField BoolKey(const char* key, bool WorkerOptions::*field) {
  return {key, [key, field](const Config& c, WorkerOptions* o) -> Status {
            KVC_ASSIGN_OR_RETURN(o->*field, c.GetBool(key, o->*field));
            return Status::OK();
          }};
}

const std::vector<ConfigField>& Fields() {
  using W = WorkerOptions;
  using E = engine::EngineOptions;
  static const std::vector<ConfigField> fields = {
      StringKey("data_dir", &W::data_dir),
      StringKey("log.level", &W::log_level),
      StringKey("log.file", &W::log_file),
      StringKey("listen.address", &W::listen_address),
      StringKey("listen.advertise_host", &W::advertise_host),
      IntKey("ports.thrift", &W::thrift_port),
      IntKey("ports.ucx", &W::ucx_port),
      IntKey("ports.http", &W::http_port),
      BoolKey("ucx.enabled", &W::ucx_enabled),
      IntKey("ucx.staging_bytes", &W::ucx_staging_bytes),
      IntKey("ucx.handler_threads", &W::ucx_handler_threads),
      StringKey("engine.executor", &W::executor),
      EngineInt("engine.queue_capacity", &E::queue_capacity),
      EngineInt("engine.executor_threads", &E::executor_threads),
      EngineInt("engine.compaction_threads", &E::compaction_threads),
      EngineInt("engine.staging_bytes", &E::staging_bytes),
      EngineMs("engine.default_deadline_ms", &E::default_deadline),
      EngineMs("engine.max_deadline_ms", &E::max_deadline),
      EngineInt("engine.max_request_bytes", &E::max_request_bytes),
      EngineInt("engine.max_tokens", &E::max_tokens),
      EngineInt("engine.max_blocks", &E::max_blocks),
      EngineMs("engine.retry_after_ms", &E::retry_after),
      EngineMs("engine.staged_upload_ttl_ms", &E::staged_upload_ttl),
      EngineMs("engine.job_retention_ms", &E::job_retention),
      EngineInt("engine.max_finished_jobs", &E::max_finished_jobs),
      {"engine.store_failed_gate",
       [](const Config& c, W* o) -> Status {
         KVC_ASSIGN_OR_RETURN(o->engine.store_failed_gate,
                              c.GetBool("engine.store_failed_gate", o->engine.store_failed_gate));
         return Status::OK();
       }},
      EngineMs("engine.drain_timeout_ms", &E::drain_timeout),
      BoolKey("store.sync", &W::store_sync),
      IntKey("store.hot_bytes", &W::hot_bytes),
      IntKey("store.warm_capacity_bytes", &W::warm_capacity_bytes),
      IntKey("store.warm_ttl_s", &W::warm_ttl_s),
      IntKey("store.warm_demote_after_s", &W::warm_demote_after_s),
      BoolKey("store.cold", &W::cold_enabled),
      IntKey("store.cold_capacity_bytes", &W::cold_capacity_bytes),
      IntKey("store.cold_ttl_s", &W::cold_ttl_s),
      IntKey("rpc.max_connections", &W::max_connections),
      IntKey("rpc.max_frame_bytes", &W::max_frame_bytes),
      IntKey("rpc.max_inline_fetch_bytes", &W::max_inline_fetch_bytes),
      IntKey("rpc.idle_timeout_ms", &W::idle_timeout_ms),
      IntKey("timers.maintenance_ms", &W::maintenance_ms),
      IntKey("timers.stats_ms", &W::stats_ms),
  };
  return fields;
}

}  // namespace

Status WorkerOptions::Validate() const {
  const auto bad = [](const std::string& what) {
    return Status::InvalidArgument("worker options: " + what);
  };
  if (data_dir.empty()) return bad("data_dir is empty");
  KVC_RETURN_IF_ERROR(ParseLogLevel(log_level).status());
  if (listen_address.empty()) return bad("listen.address is empty");
  const bool clash = (thrift_port != 0 &&
                      (thrift_port == http_port || (ucx_enabled && thrift_port == ucx_port))) ||
                     (ucx_enabled && ucx_port != 0 && ucx_port == http_port);
  if (clash) return bad("the Thrift, UCX and HTTP ports must differ (or be 0)");
  if (ucx_handler_threads < 1) return bad("ucx.handler_threads must be at least 1");
  if (ucx_enabled && ucx_staging_bytes == 0) return bad("ucx.staging_bytes must be positive");
  if (executor != "auto" && executor != "cpu" && executor != "gpu") {
    return bad("engine.executor '" + executor + "' is not one of auto, cpu, gpu");
  }
  KVC_RETURN_IF_ERROR(engine.Validate());
  if (warm_ttl_s < 0 || warm_demote_after_s < 0 || cold_ttl_s < 0) {
    return bad("store TTLs and demotion age must be >= 0");
  }
  if (max_connections < 1) return bad("rpc.max_connections must be at least 1");
  if (max_frame_bytes < (1u << 20) || max_frame_bytes > (1u << 30)) {
    return bad("rpc.max_frame_bytes must be in [1 MiB, 1 GiB]");
  }
  if (max_inline_fetch_bytes + (1u << 20) > max_frame_bytes) {
    return bad("rpc.max_inline_fetch_bytes must leave 1 MiB of rpc.max_frame_bytes");
  }
  if (idle_timeout_ms < 0) return bad("rpc.idle_timeout_ms must be >= 0");
  if (maintenance_ms < 100) return bad("timers.maintenance_ms must be at least 100");
  if (stats_ms < 0) return bad("timers.stats_ms must be >= 0");
  return Status::OK();
}

storage::TieredStoreOptions WorkerOptions::StoreOptions() const {
  storage::TieredStoreOptions o;
  o.hot.capacity_bytes = hot_bytes;
  o.warm.path = data_dir + "/warm";
  o.warm.capacity_bytes = warm_capacity_bytes;
  o.warm.ttl = std::chrono::seconds(warm_ttl_s);
  o.warm_demote_after = std::chrono::seconds(warm_demote_after_s);
  if (cold_enabled) {
    o.cold.path = data_dir + "/cold";
    o.cold.capacity_bytes = cold_capacity_bytes;
    o.cold.ttl = std::chrono::seconds(cold_ttl_s);
  }
  o.sync = store_sync;
  o.maintenance_interval = Ms(0);  // the worker's timer runs maintenance
  return o;
}

std::vector<std::string> ConfigKeys() {
  std::vector<std::string> keys;
  for (const ConfigField& f : Fields()) keys.emplace_back(f.key);
  return keys;
}

Status ApplyConfig(const Config& config, WorkerOptions* options) {
  const std::vector<std::string> keys = ConfigKeys();
  KVC_RETURN_IF_ERROR(config.CheckKnownKeys(keys).WithContext("config " + config.source()));
  for (const ConfigField& f : Fields()) {
    KVC_RETURN_IF_ERROR(f.apply(config, options).WithContext("config " + config.source()));
  }
  return Status::OK();
}

}  // namespace kvc::worker
