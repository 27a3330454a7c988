// kvcompactd's command line: CLI11 flags over the config file over the embedded defaults.
#include <CLI/CLI.hpp>
#include <functional>
#include <sstream>

#include "services/worker/worker_options.h"

namespace kvc::worker {
namespace {

constexpr char kVersion[] = "kvcompactd 0.1.0";

// Flags are parsed into a scratch copy; after the config file is applied, only the flags the
// user gave are copied over, so a flag beats the file and the file beats the defaults.
class FlagBinder {
 public:
  FlagBinder(CLI::App* app, WorkerOptions* scratch) : app_(app), scratch_(scratch) {}

  // `access` maps a WorkerOptions to the field (any type CLI11 parses).
  template <typename Access>
  void Value(const std::string& name, Access access, const std::string& help) {
    CLI::Option* opt = app_->add_option(name, access(*scratch_), help)->capture_default_str();
    appliers_.push_back([opt, access](WorkerOptions& to, WorkerOptions& from) {
      if (opt->count() > 0) access(to) = access(from);
    });
  }
  // A millisecond duration field, given as an integer.
  template <typename Access>
  void Millis(const std::string& name, Access access, const std::string& help) {
    auto value = std::make_shared<int64_t>(access(*scratch_).count());
    CLI::Option* opt = app_->add_option(name, *value, help)->capture_default_str();
    appliers_.push_back([opt, access, value](WorkerOptions& to, WorkerOptions&) {
      if (opt->count() > 0) access(to) = std::chrono::milliseconds(*value);
    });
  }
  // A boolean flag that sets the field to `to_value`.
  template <typename Access>
  void Switch(const std::string& name, Access access, bool to_value, const std::string& help) {
    CLI::Option* opt = app_->add_flag(name, help);
    appliers_.push_back([opt, access, to_value](WorkerOptions& to, WorkerOptions&) {
      if (opt->count() > 0) access(to) = to_value;
    });
  }
  void ApplyGiven(WorkerOptions* to) {
    for (auto& apply : appliers_) apply(*to, *scratch_);
  }

 private:
  CLI::App* app_;
  WorkerOptions* scratch_;
  std::vector<std::function<void(WorkerOptions&, WorkerOptions&)>> appliers_;
};

#define KVC_FIELD(expr) \
  [](WorkerOptions & w) -> auto& { return w.expr; }

void AddFlags(FlagBinder& b) {
  b.Value("--data-dir", KVC_FIELD(data_dir), "root of the store (warm/, cold/)");
  b.Value("--listen", KVC_FIELD(listen_address), "address every listener binds");
  b.Value("--advertise-host", KVC_FIELD(advertise_host), "host clients use for UCX fetches");
  b.Value("--thrift-port", KVC_FIELD(thrift_port), "Thrift port (0: any free port)");
  b.Value("--ucx-port", KVC_FIELD(ucx_port), "UCX listener port (0: any free port)");
  b.Value("--http-port", KVC_FIELD(http_port), "HTTP /metrics and /healthz port (0: any)");
  b.Switch("--no-ucx", KVC_FIELD(ucx_enabled), false, "run without the UCX data plane");
  b.Value("--ucx-staging-bytes", KVC_FIELD(ucx_staging_bytes), "UCX receive buffer budget");
  b.Value("--executor", KVC_FIELD(executor),
          "compaction executor: auto (GPU if present), cpu, gpu");
  b.Value("--queue-capacity", KVC_FIELD(engine.queue_capacity), "jobs waiting to run");
  b.Value("--executor-threads", KVC_FIELD(engine.executor_threads), "compactions at once");
  b.Value("--compaction-threads", KVC_FIELD(engine.compaction_threads),
          "threads per compaction (0: one per core)");
  b.Value("--staging-bytes", KVC_FIELD(engine.staging_bytes), "bytes of KV caches held");
  b.Value("--max-request-bytes", KVC_FIELD(engine.max_request_bytes), "largest request");
  b.Millis("--default-deadline-ms", KVC_FIELD(engine.default_deadline),
           "deadline of requests that name none");
  b.Millis("--drain-timeout-ms", KVC_FIELD(engine.drain_timeout),
           "how long shutdown lets jobs finish");
  b.Switch("--store-failed-gate", KVC_FIELD(engine.store_failed_gate), true,
           "store results that failed their quality gate (marked)");
  b.Value("--hot-bytes", KVC_FIELD(hot_bytes), "in-memory LRU tier bytes");
  b.Switch("--cold", KVC_FIELD(cold_enabled), true, "enable the cold tier (<data-dir>/cold)");
  b.Switch("--no-sync", KVC_FIELD(store_sync), false,
           "do not sync the WAL per put (survives kill -9, not power loss)");
  b.Value("--max-frame-bytes", KVC_FIELD(max_frame_bytes), "largest Thrift frame");
  b.Value("--maintenance-ms", KVC_FIELD(maintenance_ms), "store and engine housekeeping period");
  b.Value("--stats-ms", KVC_FIELD(stats_ms), "stats log period (0: off)");
  b.Value("--log-level", KVC_FIELD(log_level), "trace|debug|info|warn|error|critical|off");
  b.Value("--log-file", KVC_FIELD(log_file), "also append logs to this file");
}

#undef KVC_FIELD

}  // namespace

Result<CommandLine> ParseCommandLine(int argc, const char* const* argv, std::ostream& out) {
  CLI::App app{"kvcompactd: the kvcompact compaction worker (Thrift + UCX + HTTP)"};
  app.set_version_flag("--version", kVersion);
  WorkerOptions scratch;
  FlagBinder binder(&app, &scratch);
  std::string config_path;
  app.add_option("--config", config_path, "JSON config file (unknown keys are rejected)");
  AddFlags(binder);
  CommandLine result;
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForVersion&) {
    out << kVersion << "\n";
    result.exit_now = true;
    return result;
  } catch (const CLI::Success&) {  // --help
    out << app.help();
    result.exit_now = true;
    return result;
  } catch (const CLI::ParseError& e) {
    return Status::InvalidArgument(std::string("command line: ") + e.what() + " (run with --help)");
  }
  if (!config_path.empty()) {
    KVC_ASSIGN_OR_RETURN(Config config, Config::LoadFile(config_path));
    KVC_RETURN_IF_ERROR(ApplyConfig(config, &result.options));
  }
  binder.ApplyGiven(&result.options);
  KVC_RETURN_IF_ERROR(result.options.Validate());
  return result;
}

}  // namespace kvc::worker
