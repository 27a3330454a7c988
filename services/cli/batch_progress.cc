#include "services/cli/batch_progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace kvc::cli {
namespace {

constexpr int kBarWidth = 28;
// The bar is redrawn this often.
constexpr std::chrono::milliseconds kBarPeriod{200};

}  // namespace

bool ParseProgressMode(const std::string& text, ProgressMode* mode) {
  if (text == "auto")
    *mode = ProgressMode::kAuto;
  else if (text == "bar")
    *mode = ProgressMode::kBar;
  else if (text == "lines")
    *mode = ProgressMode::kLines;
  else if (text == "none")
    *mode = ProgressMode::kNone;
  else
    return false;
  return true;
}

std::string FormatBytes(double bytes) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", bytes, kUnits[u]);
  return buf;
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60));
  } else if (s >= 60) {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%.1fs", seconds);
  }
  return buf;
}

Progress::Progress(std::ostream& err, ProgressMode mode, std::chrono::milliseconds interval,
                   uint64_t total_bytes, int total_docs)
    : err_(err),
      mode_(mode),
      interval_(mode == ProgressMode::kBar ? kBarPeriod : interval),
      total_(total_bytes),
      docs_total_(total_docs),
      start_(std::chrono::steady_clock::now()) {
  if (mode_ == ProgressMode::kBar || mode_ == ProgressMode::kLines) {
    thread_ = std::thread([this] { Run(); });
  }
}

Progress::~Progress() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  if (mode_ == ProgressMode::kBar || mode_ == ProgressMode::kLines) DrawLocked(/*final=*/true);
}

void Progress::Add(uint64_t bytes) { done_.fetch_add(bytes, std::memory_order_relaxed); }

void Progress::DocumentDone(const std::string& line) {
  docs_done_.fetch_add(1, std::memory_order_relaxed);
  Note(line);
}

void Progress::Note(const std::string& line) {
  if (mode_ == ProgressMode::kNone) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (bar_shown_) err_ << "\r\033[K";
  err_ << line << "\n";
  bar_shown_ = false;
  if (mode_ == ProgressMode::kBar) DrawLocked(false);
  err_.flush();
}

std::string Progress::StatusLine() const {
  const uint64_t done = std::min(done_.load(std::memory_order_relaxed), total_);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = total_ > 0 ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
  const double rate = secs > 0 ? static_cast<double>(done) / secs : 0.0;
  const std::string eta =
      rate > 0 ? FormatDuration(static_cast<double>(total_ - done) / rate) : "?";
  char pct[16];
  std::snprintf(pct, sizeof(pct), "%5.1f%%", 100.0 * frac);
  const std::string docs = std::to_string(docs_done_.load()) + "/" + std::to_string(docs_total_);
  if (mode_ == ProgressMode::kBar) {
    const int fill = static_cast<int>(std::floor(frac * kBarWidth));
    return "[" + std::string(fill, '#') + std::string(kBarWidth - fill, '.') + "] " + pct + "  " +
           docs + " docs  " + FormatBytes(rate) + "/s  ETA " + eta;
  }
  return std::string("batch: ") + pct + " (" + docs + " docs, " +
         FormatBytes(static_cast<double>(done)) + " of " +
         FormatBytes(static_cast<double>(total_)) + ") " + FormatBytes(rate) + "/s ETA " + eta;
}

void Progress::DrawLocked(bool final) {
  if (mode_ == ProgressMode::kBar) {
    err_ << "\r\033[K" << StatusLine();
    bar_shown_ = true;
    if (final) {
      err_ << "\n";
      bar_shown_ = false;
    }
  } else if (mode_ == ProgressMode::kLines) {
    err_ << StatusLine() << "\n";
  }
  err_.flush();
}

void Progress::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, interval_, [this] { return stop_; });
    if (!stop_) DrawLocked(false);
  }
}

}  // namespace kvc::cli
