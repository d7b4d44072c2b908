#include "observability/security_events.hpp"

#include <fmt/format.h>

#include <functional>

#include "http/json.hpp"
#include "observability/logging.hpp"

namespace gatehouse::observability {
namespace {

constexpr std::uint64_t kMinuteMask = 0xFFFF;
constexpr std::uint64_t kCountMax = 0xFFFF;

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finalizer: spreads std::hash's low entropy
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

SecurityEvents::SecurityEvents(Logs* logs, const config::LogConfig& cfg)
    : logs_(logs),
      bits_(cfg.security_events),
      per_key_(cfg.security_per_key_per_minute),
      epoch_(Clock::now()),
      last_summary_(epoch_) {
  if (per_key_ != 0) {
    slots_ = std::make_unique<std::atomic<std::uint64_t>[]>(kSlots);
  }
}

std::uint32_t SecurityEvents::minute(Clock::time_point now) const {
  return static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::minutes>(now - epoch_).count());
}

bool SecurityEvents::admit(config::SecurityEvent e, std::string_view key, Clock::time_point now) {
  const auto type = static_cast<unsigned>(e);
  if (per_key_ == 0) {
    logged_[type].fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  const std::uint32_t m = minute(now);
  auto refuse = [&] {
    suppressed_[type].fetch_add(1, std::memory_order_relaxed);
    pending_[type].fetch_add(1, std::memory_order_relaxed);
    return false;
  };
  // The key's own budget. A slot another key holds (a collision, or a spray) is taken over: the
  // table stays bounded, and the type's cap below bounds the lines.
  const std::uint64_t h = mix(std::hash<std::string_view>{}(key) ^ (std::uint64_t{type} << 56));
  auto& slot = slots_[h % kSlots];
  const std::uint64_t tag = h >> 32;
  const std::uint64_t fresh = (tag << 32) | ((m & kMinuteMask) << 16) | 1;
  std::uint64_t old = slot.load(std::memory_order_relaxed);
  for (;;) {
    std::uint64_t next = fresh;
    if ((old >> 32) == tag && ((old >> 16) & kMinuteMask) == (m & kMinuteMask)) {
      std::uint64_t lines = old & kCountMax;
      if (lines >= per_key_ || lines >= kCountMax) {
        return refuse();
      }
      next = old + 1;
    }
    if (slot.compare_exchange_weak(old, next, std::memory_order_relaxed)) {
      break;
    }
  }
  // The type's budget this minute.
  const std::uint64_t cap = std::uint64_t{per_key_} * kTypeCapFactor;
  auto& tm = type_minute_[type];
  old = tm.load(std::memory_order_relaxed);
  for (;;) {
    std::uint64_t next = (std::uint64_t{m} << 32) | 1;
    if ((old >> 32) == m) {
      if ((old & 0xFFFFFFFFULL) >= cap) {
        return refuse();
      }
      next = old + 1;
    }
    if (tm.compare_exchange_weak(old, next, std::memory_order_relaxed)) {
      break;
    }
  }
  logged_[type].fetch_add(1, std::memory_order_relaxed);
  return true;
}

void SecurityEvents::write(std::string_view line) {
  if (logs_ != nullptr) {
    logs_->security(line);
  }
}

unsigned SecurityEvents::summarize(Clock::time_point now, bool force) {
  if (!force && now - last_summary_ < std::chrono::minutes(1)) {
    return 0;
  }
  last_summary_ = now;
  unsigned written = 0;
  for (unsigned i = 0; i < config::kSecurityEventCount; ++i) {
    auto n = pending_[i].exchange(0, std::memory_order_relaxed);
    if (n == 0) {
      continue;
    }
    std::string line = "{\"time\":\"";
    append_timestamp(line);
    line += "\",\"type\":\"security\",\"event\":\"suppressed\",\"for\":";
    http::append_json_string(line,
                             config::security_event_name(static_cast<config::SecurityEvent>(i)));
    fmt::format_to(std::back_inserter(line), ",\"count\":{},\"per_key_per_minute\":{}}}", n,
                   per_key_);
    write(line);
    ++written;
  }
  return written;
}

void SecurityEvents::render_metrics(std::string& out) const {
  out +=
      "# HELP gatehouse_security_events_total Security events by type; logged=\"false\" were "
      "left out of the security log by log.security_sample.\n"
      "# TYPE gatehouse_security_events_total counter\n";
  for (unsigned i = 0; i < config::kSecurityEventCount; ++i) {
    if ((bits_ & (1U << i)) == 0) {
      continue;
    }
    auto name = config::security_event_name(static_cast<config::SecurityEvent>(i));
    fmt::format_to(std::back_inserter(out),
                   "gatehouse_security_events_total{{event=\"{}\",logged=\"true\"}} {}\n"
                   "gatehouse_security_events_total{{event=\"{}\",logged=\"false\"}} {}\n",
                   name, logged_[i].load(std::memory_order_relaxed), name,
                   suppressed_[i].load(std::memory_order_relaxed));
  }
}

}  // namespace gatehouse::observability
