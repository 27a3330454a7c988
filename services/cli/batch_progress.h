// Progress of `kvcompact batch` on stderr. Work is counted in bytes of K/V compacted (every
// document's layers x 2 x kv heads x T x head_dim x dtype size); documents found finished are
// not counted. The rate is over the bytes compacted since Start and the ETA divides what is left
// by it.
//
//   bar    (a terminal) one line redrawn in place a few times a second:
//          [#########...........]  45.2%  3/8 docs  212.4 MiB/s  ETA 1m02s
//          finished documents are printed above it.
//   lines  (not a terminal) one plain line every `interval`, and one per finished document:
//          batch: 45.2% (3/8 docs, 1.2 GiB of 2.7 GiB) 212.4 MiB/s ETA 1m02s
//   none   nothing is printed.
//
// Thread safety: every method may be called from any thread; all output to the stream goes
// through one mutex (Note() is the way for other code to print while the bar is shown).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>

namespace kvc::cli {

enum class ProgressMode { kAuto, kBar, kLines, kNone };

// "auto" | "bar" | "lines" | "none"; false for anything else.
bool ParseProgressMode(const std::string& text, ProgressMode* mode);

// "1.5 GiB", "212.4 MiB", ...
std::string FormatBytes(double bytes);
// "1h02m", "1m02s", "12s"
std::string FormatDuration(double seconds);

class Progress {
 public:
  // `mode` must not be kAuto (the caller resolves it). Starts the drawing thread.
  Progress(std::ostream& err, ProgressMode mode, std::chrono::milliseconds interval,
           uint64_t total_bytes, int total_docs);
  // Stops the thread and ends the bar's line.
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // `bytes` more of the work are done.
  void Add(uint64_t bytes);
  // A document is finished (successfully or not); `line` is printed unless the mode is kNone.
  void DocumentDone(const std::string& line);
  // Prints a line (above the bar) unless the mode is kNone.
  void Note(const std::string& line);

  // The status line as it would be drawn now (for tests and the final line).
  std::string StatusLine() const;

 private:
  void Run();
  void DrawLocked(bool final);

  std::ostream& err_;
  const ProgressMode mode_;
  const std::chrono::milliseconds interval_;
  const uint64_t total_;
  const int docs_total_;
  const std::chrono::steady_clock::time_point start_;
  std::atomic<uint64_t> done_{0};
  std::atomic<int> docs_done_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool bar_shown_ = false;
  std::thread thread_;
};

}  // namespace kvc::cli
