#pragma once
// Which security events reach the security log (log.security_events) and how many: at most
// log.security_sample.per_key_per_minute lines per event type and key (client, rate-limit key) a
// minute, and at most kTypeCapFactor times that per event type, so a flood or an address spray
// cannot fill the disk. The rest are counted, and one summary line a minute says how many lines
// were left out. State is a fixed table of atomics shared by every thread: bounded memory, no
// lock; an event type that is off costs one bit test.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace gatehouse::observability {

class Logs;

class SecurityEvents {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kSlots = 4096;
  static constexpr unsigned kTypeCapFactor = 100;

  SecurityEvents(Logs* logs, const config::LogConfig& cfg);

  bool enabled(config::SecurityEvent e) const {
    return (bits_ & config::security_event_bit(e)) != 0;
  }
  // Whether a line for (e, key) may be written now; counted either way. Thread-safe.
  bool admit(config::SecurityEvent e, std::string_view key, Clock::time_point now);
  // Counts a line that is never sampled (an operator's action).
  void note(config::SecurityEvent e) {
    logged_[static_cast<unsigned>(e)].fetch_add(1, std::memory_order_relaxed);
  }
  // Writes a line admit() allowed.
  void write(std::string_view line);

  // The summary line for the suppressed lines since the last one (at most one a minute; the
  // admin thread calls this every second). Returns the lines it wrote (for tests).
  unsigned summarize(Clock::time_point now, bool force = false);

  std::uint64_t count(config::SecurityEvent e, bool logged) const {
    auto i = static_cast<unsigned>(e);
    return (logged ? logged_[i] : suppressed_[i]).load(std::memory_order_relaxed);
  }
  void render_metrics(std::string& out) const;

 private:
  std::uint32_t minute(Clock::time_point now) const;

  Logs* logs_;
  unsigned bits_;
  unsigned per_key_;  // 0: no sampling
  Clock::time_point epoch_;
  // tag (32 bits: the key's hash) | minute (16 bits) | lines (16 bits)
  std::unique_ptr<std::atomic<std::uint64_t>[]> slots_;
  // Per event type: minute (32 bits) | lines in it (32 bits).
  std::array<std::atomic<std::uint64_t>, config::kSecurityEventCount> type_minute_{};
  std::array<std::atomic<std::uint64_t>, config::kSecurityEventCount> pending_{};  // for summary
  std::array<std::atomic<std::uint64_t>, config::kSecurityEventCount> logged_{};
  std::array<std::atomic<std::uint64_t>, config::kSecurityEventCount> suppressed_{};
  Clock::time_point last_summary_;  // admin thread only
};

}  // namespace gatehouse::observability
