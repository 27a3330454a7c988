// RunBatch (batch.h): directories, the output lock, resumption, scheduling and the summary.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "services/cli/batch.h"
#include "services/cli/batch_document.h"
#include "services/cli/batch_report.h"
#include "services/cli/batch_store.h"
#include "services/cli/commands.h"

namespace kvc::cli {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr char kLockName[] = ".kvcompact-batch.lock";

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Flag and directory checks that make a run bad usage (exit 2).
Status CheckUsage(const BatchOptions& o) {
  std::error_code ec;
  if (o.in_dir.empty() || !fs::is_directory(o.in_dir, ec)) {
    return Status::InvalidArgument("--in " + o.in_dir + ": not a directory");
  }
  if (o.out_dir.empty()) return Status::InvalidArgument("--out is required");
  if (fs::exists(o.out_dir, ec)) {
    if (!fs::is_directory(o.out_dir, ec)) {
      return Status::InvalidArgument("--out " + o.out_dir + ": not a directory");
    }
    if (fs::equivalent(o.in_dir, o.out_dir, ec)) {
      return Status::InvalidArgument("--out must differ from --in (outputs would be read back)");
    }
  }
  if (!o.workers.empty()) {
#ifdef KVC_BATCH_HAVE_CLIENT
    return Status::NotSupported(
        "--workers: not yet supported: batch does not use the client "
        "library yet; compact locally (drop --workers)");
#else
    return Status::NotSupported(
        "--workers: not yet supported: the client library is not built "
        "(services/client); compact locally (drop --workers)");
#endif
  }
  if (o.memory_bytes <= 0 || o.jobs < 0 || o.threads < 0 || o.group_layers < 0 ||
      o.chunk_tokens < 0 || o.progress_interval_s < 1) {
    return Status::InvalidArgument(
        "--memory-budget must be > 0, --progress-interval >= 1, and --jobs, --threads, "
        "--group-layers, --chunk-tokens >= 0");
  }
  KVC_RETURN_IF_ERROR(o.spec.Validate());
  if (o.chunk_tokens > 0 && !ChunkableSpec(o.spec)) {
    return Status::InvalidArgument(
        "--chunk-tokens applies only to method am with highest, omp or omp-fast selection and a "
        "uniform, pyramid or am allocator");
  }
  return Status::OK();
}

// flock on OUT/.kvcompact-batch.lock for the life of the run.
class OutputLock {
 public:
  static Result<std::unique_ptr<OutputLock>> Acquire(const std::string& dir) {
    const std::string path = (fs::path(dir) / kLockName).string();
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Status::IOError("open " + path + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return Status::FailedPrecondition("another kvcompact batch is running on " + dir);
    }
    return std::unique_ptr<OutputLock>(new OutputLock(fd));
  }
  ~OutputLock() { ::close(fd_); }

 private:
  explicit OutputLock(int fd) : fd_(fd) {}
  int fd_;
};

int RemoveTemporaries(const std::string& dir) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (IsBatchTemporary(e.path().filename().string()) && fs::remove(e.path(), ec)) ++n;
  }
  return n;
}

Result<std::vector<std::string>> ListInputs(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.starts_with(".") && name.ends_with(".safetensors") && e.is_regular_file(ec)) {
      names.push_back(name);
    }
  }
  if (ec) return Status::IOError("list " + dir + ": " + ec.message());
  std::sort(names.begin(), names.end());
  return names;
}

// Memory admission: a document starts when its modelled peak fits beside the running ones, or
// when nothing runs.
class Admission {
 public:
  explicit Admission(int64_t budget) : budget_(budget) {}
  bool Acquire(int64_t bytes, const std::atomic<bool>& cancel) {
    std::unique_lock<std::mutex> lock(mu_);
    while (!(running_ == 0 || in_use_ + bytes <= budget_)) {
      if (cancel.load()) return false;
      cv_.wait_for(lock, std::chrono::milliseconds(100));
    }
    if (cancel.load()) return false;
    in_use_ += bytes;
    ++running_;
    return true;
  }
  void Release(int64_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_use_ -= bytes;
      --running_;
    }
    cv_.notify_all();
  }

 private:
  const int64_t budget_;
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t in_use_ = 0;
  int running_ = 0;
};

struct Pending {
  DocumentOutcome* outcome = nullptr;
  std::optional<DumpFile> dump;
  DocumentPlan plan;
  int64_t admit_bytes = 0;
};

std::map<std::string, std::string> StoreAttributes(const DumpInfo& info, const std::string& plan) {
  std::map<std::string, std::string> a;
  auto it = info.metadata.find("model");
  if (it != info.metadata.end()) a["model"] = it->second;
  a["source"] = fs::path(info.path).filename().string();
  if (!plan.empty()) a["batch_plan"] = plan;
  return a;
}

// Puts a finished output into the store; records what happened in o.store (and o.error).
void StoreOutput(BatchStore* store, const BatchOptions& opt, const DumpInfo& info,
                 bool only_if_absent, DocumentOutcome& o) {
  if (store == nullptr) return;
  Result<DocumentKey> key = KeyForDocument(info, opt.spec, opt.tenant);
  Result<bool> put =
      key.ok() ? store->Put(*key, o.output, StoreAttributes(info, o.plan_json), only_if_absent)
               : Result<bool>(key.status());
  if (!put.ok()) {
    o.error = put.status().WithContext("store");
    o.store = "failed";
    return;
  }
  o.store = (*put ? "put " : "already stored ") + key->ToString();
}

std::string DoneLine(const DocumentOutcome& d) {
  if (!d.error.ok()) {
    return std::string(d.state == DocState::kInterrupted ? "interrupted " : "FAILED ") + d.name +
           ": " + d.error.ToString();
  }
  char buf[128];
  const double src = static_cast<double>(d.layout.n_layers) * d.layout.n_kv_heads *
                     static_cast<double>(d.layout.tokens);
  std::snprintf(buf, sizeof(buf), ": ratio %.2f, %s", d.entries > 0 ? src / d.entries : 0.0,
                FormatDuration(d.seconds).c_str());
  return "done " + d.name + buf + (d.gate_failed ? ", quality gate FAILED" : "");
}

void ProcessOne(Pending& p, const BatchOptions& opt, BatchStore* store, Progress& progress,
                const std::atomic<bool>& cancel) {
  DocumentOutcome& o = *p.outcome;
  const auto t0 = Clock::now();
  GroupHooks hooks{&cancel, [&progress](uint64_t b) { progress.Add(b); }};
  Result<DocumentResult> r = CompactDocument(*p.dump, opt.spec, p.plan, o.output, hooks);
  o.seconds = SecondsSince(t0);
  if (!r.ok()) {
    o.state = r.status().code() == Code::kCancelled ? DocState::kInterrupted : DocState::kFailed;
    o.error = r.status();
  } else if (Result<OutputInfo> v = VerifyCompactedFile(o.output); !v.ok()) {
    o.state = DocState::kFailed;
    o.error = v.status().WithContext("written output does not verify");
  } else {
    o.state = DocState::kDone;
    FillFromOutput(*v, o);
    StoreOutput(store, opt, p.dump->info(), /*only_if_absent=*/false, o);
  }
  p.dump.reset();
  progress.DocumentDone(DoneLine(o));
}

// Step 3 of the run: finished outputs are skipped; the rest are opened (or fail).
std::vector<Pending> Scan(const BatchOptions& opt, BatchStore* store, RunSummary& summary) {
  std::vector<Pending> pending;
  for (DocumentOutcome& o : summary.docs) {
    Result<OutputInfo> fin = FinishedOutput(o.input, o.output, opt.spec);
    if (fin.ok()) {
      o.state = DocState::kSkipped;
      FillFromOutput(*fin, o);
      if (store != nullptr) {
        Result<DumpFile> d = DumpFile::Open(o.input);
        if (d.ok()) StoreOutput(store, opt, d->info(), /*only_if_absent=*/true, o);
        if (!d.ok()) o.error = d.status().WithContext("store");
      }
      continue;
    }
    if (!fin.status().IsNotFound()) o.note = "redone: " + fin.status().message();
    Result<DumpFile> d = DumpFile::Open(o.input);
    if (!d.ok()) {
      o.state = DocState::kFailed;
      o.error = d.status();
      continue;
    }
    o.layout = d->info().layout();
    o.layout_known = true;
    Pending p;
    p.outcome = &o;
    p.dump = std::move(*d);
    pending.push_back(std::move(p));
  }
  return pending;
}

// Plans every pending document for its share of the budget (or the whole budget when it cannot
// fit its share); documents that cannot be planned fail.
void PlanAll(const BatchOptions& opt, int jobs, int threads, std::vector<Pending>& pending) {
  for (Pending& p : pending) {
    PlanOptions po;
    po.memory_bytes = opt.memory_bytes / jobs;
    po.threads = threads;
    po.group_layers = opt.group_layers;
    po.chunk_tokens = opt.chunk_tokens;
    po.store = !opt.store_path.empty();
    Result<DocumentPlan> plan = PlanDocument(p.dump->info().shape, opt.spec, po);
    if (plan.ok() && plan->over_budget && jobs > 1) {
      po.memory_bytes = opt.memory_bytes;
      plan = PlanDocument(p.dump->info().shape, opt.spec, po);
    }
    if (!plan.ok()) {
      p.outcome->state = DocState::kFailed;
      p.outcome->error = plan.status();
      p.dump.reset();
      continue;
    }
    p.plan = std::move(*plan);
    p.outcome->plan_json = p.plan.ToJson();
    p.outcome->over_budget = p.plan.over_budget;
    p.admit_bytes = std::min(p.plan.estimated_bytes, opt.memory_bytes);
  }
  std::erase_if(pending, [](const Pending& p) { return !p.dump.has_value(); });
}

// Step 4: runs the pending documents on `jobs` threads under memory admission.
void RunPending(const BatchOptions& opt, int jobs, BatchStore* store, std::vector<Pending>& pending,
                const std::atomic<bool>& cancel, std::ostream& err, ProgressMode mode) {
  if (pending.empty()) return;
  uint64_t total = 0;
  for (const Pending& p : pending) total += p.dump->info().kv_bytes();
  Progress progress(err, mode, std::chrono::seconds(opt.progress_interval_s), total,
                    static_cast<int>(pending.size()));
  Admission admission(opt.memory_bytes);
  std::atomic<size_t> next{0};
  std::atomic<int> running{jobs};
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < pending.size();) {
      Pending& p = pending[i];
      if (!admission.Acquire(p.admit_bytes, cancel)) {
        p.outcome->state = DocState::kInterrupted;
        p.outcome->error = Status::Cancelled("interrupted before it started");
        continue;
      }
      ProcessOne(p, opt, store, progress, cancel);
      admission.Release(p.admit_bytes);
    }
    running.fetch_sub(1);
  };
  std::vector<std::thread> threads;
  for (int j = 0; j < jobs; ++j) threads.emplace_back(worker);
  bool noted = false;
  while (running.load() > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (cancel.load() && !noted) {
      progress.Note(
          "interrupt: stopping after the current layer group or chunk (again: stop "
          "at once)");
      noted = true;
    }
  }
  for (std::thread& t : threads) t.join();
}

Status WriteJsonFile(const std::string& path, const std::string& json) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << json << "\n";
    if (!f.flush()) return Status::IOError("write " + tmp);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return Status::IOError("rename " + tmp + " to " + path);
  }
  return Status::OK();
}

int UsageError(std::ostream& err, const Status& st) {
  err << "error: " << st.ToString() << "\n";
  return kExitUsage;
}

}  // namespace

int RunBatch(const BatchOptions& opt, std::ostream& out, std::ostream& err) {
  const auto t0 = Clock::now();
  if (Status st = CheckUsage(opt); !st.ok()) return UsageError(err, st);
  std::unique_ptr<BatchStore> store;
  if (!opt.store_path.empty()) {
    Result<std::unique_ptr<BatchStore>> s = BatchStore::Open(opt.store_path);
    if (!s.ok() && s.status().IsNotSupported()) return UsageError(err, s.status());
    if (!s.ok()) return (err << "error: " << s.status().ToString() << "\n", kExitRuntime);
    store = std::move(*s);
  }
  std::error_code ec;
  fs::create_directories(opt.out_dir, ec);
  Result<std::unique_ptr<OutputLock>> lock = OutputLock::Acquire(opt.out_dir);
  if (!lock.ok()) return (err << "error: " << lock.status().ToString() << "\n", kExitRuntime);
  RunSummary summary;
  summary.in_dir = opt.in_dir;
  summary.out_dir = opt.out_dir;
  summary.spec = opt.spec;
  summary.memory_bytes = opt.memory_bytes;
  summary.temporaries_removed = RemoveTemporaries(opt.out_dir);
  Result<std::vector<std::string>> names = ListInputs(opt.in_dir);
  if (!names.ok()) return (err << "error: " << names.status().ToString() << "\n", kExitRuntime);
  for (const std::string& n : *names) {
    DocumentOutcome o;
    o.name = n;
    o.input = (fs::path(opt.in_dir) / n).string();
    o.output = (fs::path(opt.out_dir) / n).string();
    summary.docs.push_back(std::move(o));
  }
  std::vector<Pending> pending = Scan(opt, store.get(), summary);
  const int hw = std::max(1u, std::thread::hardware_concurrency());
  const int n = std::max<int>(1, static_cast<int>(pending.size()));
  summary.jobs = std::min(n, opt.jobs > 0 ? opt.jobs : std::max(1, hw / 4));
  summary.threads = opt.threads > 0 ? opt.threads : std::max(1, hw / summary.jobs);
  PlanAll(opt, summary.jobs, summary.threads, pending);
  const std::atomic<bool> never{false};
  const std::atomic<bool>& cancel = opt.cancel != nullptr ? *opt.cancel : never;
  ProgressMode mode = opt.progress;
  if (mode == ProgressMode::kAuto) {
    mode = opt.err_is_terminal ? ProgressMode::kBar : ProgressMode::kLines;
  }
  RunPending(opt, summary.jobs, store.get(), pending, cancel, err, mode);
  summary.seconds = SecondsSince(t0);
  const std::string json = summary.ToJson();
  if (opt.json) {
    out << json << "\n";
  } else {
    summary.PrintText(out);
  }
  if (!opt.json_out.empty()) {
    if (Status st = WriteJsonFile(opt.json_out, json); !st.ok()) {
      err << "error: --json-out: " << st.ToString() << "\n";
      return kExitRuntime;
    }
  }
  return summary.ExitCode();
}

}  // namespace kvc::cli
