#pragma once
// What /health/detailed shows of the process itself: resident memory, open files against the
// limit, and how late each worker's event loop runs. Pure parsing plus small /proc reads (the
// admin thread's, never a worker's).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>

namespace gatehouse::observability {

// Resident set size in bytes from /proc/self/statm's text ("size resident shared ..." in pages).
std::optional<std::uint64_t> parse_statm_rss(std::string_view statm, std::uint64_t page_size);

struct ProcessStats {
  std::optional<std::uint64_t> rss_bytes;
  std::optional<std::uint64_t> open_files;      // entries of /proc/self/fd
  std::optional<std::uint64_t> max_open_files;  // RLIMIT_NOFILE soft limit
};
ProcessStats read_process_stats();

// The largest event-loop lag of the last 5 to 10 seconds, for one worker: its 100 ms sweep
// records how late it woke (record(), the worker's thread only) and the admin thread reads
// max_us(). A spike stays visible for at least one whole window.
class LoopLag {
 public:
  static constexpr unsigned kSweepsPerWindow = 50;  // 5 s of 100 ms sweeps

  void record(std::int64_t lag_us) {
    current_ = std::max(current_, std::max<std::int64_t>(lag_us, 0));
    published_.store(std::max(previous_, current_), std::memory_order_relaxed);
    if (++sweeps_ == kSweepsPerWindow) {
      previous_ = current_;
      current_ = 0;
      sweeps_ = 0;
    }
  }
  std::int64_t max_us() const { return published_.load(std::memory_order_relaxed); }

 private:
  std::int64_t current_ = 0;
  std::int64_t previous_ = 0;
  unsigned sweeps_ = 0;
  std::atomic<std::int64_t> published_{0};
};

}  // namespace gatehouse::observability
