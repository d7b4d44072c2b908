#pragma once
// Health state shared by workers (who report connect outcomes) and the admin thread (which
// renders /health, /health/ready and /health/detailed). Components are pluggable so later
// features (Redis, jobs) add an entry of their own.
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace gatehouse::observability {

enum class Status { ok, degraded, down };
const char* to_string(Status s);

// One upstream target's state, shared by every thread: the workers' balancers read it on each
// pick (one relaxed load), the workers' passive health (connect outcomes, outlier detection) and
// the admin thread's active checks write it. Lock-free except the last error text.
class TargetHealth {
 public:
  // Why a target is not eligible; several may hold at once (docs/architecture.md, "Target state").
  enum Flag : std::uint8_t {
    kUnreachable = 1,  // its last connect failed (TCP check or real traffic): tried last
    kUnhealthy = 2,    // its HTTP health check failed unhealthy_after times in a row: out
    kEjected = 4,      // ejected by outlier detection until ejected_until: out
    // i12-resolve: a slot of a re-resolved host name that holds no address (never filled, or its
    // address went away): out, and left out of health, metrics and checks.
    kRetired = 8,
  };
  static constexpr std::uint8_t kOut = kUnhealthy | kEjected | kRetired;

  explicit TargetHealth(std::string address, bool retired = false)
      : flags_(retired ? kRetired : 0), address_(std::move(address)) {}
  // Eligible for new requests: no flag at all. Balancers offer these first.
  bool reachable() const { return flags_.load(std::memory_order_relaxed) == 0; }
  // Out (unhealthy or ejected): gets no request at all, not even as a last resort.
  bool out() const { return (flags_.load(std::memory_order_relaxed) & kOut) != 0; }
  std::uint8_t flags() const { return flags_.load(std::memory_order_relaxed); }
  // Sets or clears `f`; true when this call changed it (so exactly one thread logs a change).
  bool set(Flag f, bool on) {
    auto before = on ? flags_.fetch_or(f, std::memory_order_relaxed)
                     : flags_.fetch_and(static_cast<std::uint8_t>(~f), std::memory_order_relaxed);
    return ((before & f) != 0) != on;
  }
  // A connect outcome (kUnreachable), with the error when it failed.
  void report(bool reachable, std::string_view error = {});
  std::string last_error() const;
  void set_last_error(std::string_view error);
  // The slot's address, "10.0.0.5:8000" (written by the admin thread when a re-resolved name's
  // addresses change; workers keep their own copy, so this is off the request path).
  std::string address() const;
  bool retired() const { return (flags() & kRetired) != 0; }
  // i12-resolve, admin thread: the slot takes a new address with fresh passive and active state;
  // it stays retired (out) until the caller clears kRetired. Clear kEjected through the outlier
  // detector first (it counts ejections).
  void reuse(std::string address);
  // "healthy", "unreachable", "unhealthy" or "ejected" (the strongest reason), for health/logs.
  const char* state() const;

  // Passive health, written by the workers (relaxed; consecutive counts are process-wide).
  struct Passive {
    std::atomic<std::uint32_t> consecutive_5xx{0};
    std::atomic<std::uint32_t> consecutive_connect_failures{0};
    std::atomic<std::int64_t> ejected_until_ns{0};  // steady clock; valid while kEjected
    std::atomic<std::int64_t> returned_at_ns{0};    // end of the last ejection
    std::atomic<std::uint32_t> ejection_streak{0};  // multiplies eject_for
    std::atomic<std::uint64_t> ejections{0};        // total
  } passive;
  // Active checks, written by the admin thread only; read by health and metrics.
  struct Active {
    std::atomic<std::int64_t> last_check_unix_ms{0};  // 0: never checked
    std::atomic<std::int64_t> last_latency_us{-1};
    std::atomic<std::uint32_t> consecutive_passes{0};
    std::atomic<std::uint32_t> consecutive_failures{0};
    std::atomic<std::uint64_t> state_changes{0};  // healthy <-> unhealthy
  } active;

 private:
  std::atomic<std::uint8_t> flags_{0};  // a target starts eligible: healthy until shown otherwise
  mutable std::mutex mu_;               // guards address_ and last_error_
  std::string address_;
  std::string last_error_;
};

struct ComponentReport {
  Status status = Status::ok;
  nlohmann::json detail = nlohmann::json::object();  // merged into the component's JSON
};

// How many upstream units a process may have: one per start-up upstream, plus this many built by
// reloads that add or re-target an upstream (a unit is kept, and found again, for each definition
// served since start).
inline std::size_t upstream_unit_capacity(std::size_t startup) {
  return startup + 64;
}

class Health {
 public:
  using Clock = std::chrono::steady_clock;
  // One unit per upstream of `cfg` (served from the start), with room for `unit_capacity` units in
  // all (0: upstream_unit_capacity(cfg.upstreams.size())).
  Health(const config::Config& cfg, unsigned workers, std::string version,
         std::size_t unit_capacity = 0);

  // Unit `upstream`'s target slots. Any thread: a unit's entry never moves once added.
  TargetHealth& target(std::size_t upstream, std::size_t target) {
    return *upstreams_[upstream].targets[target];
  }
  // Units added so far (start-up upstreams, then units built by reloads).
  std::size_t upstream_count() const { return count_.load(std::memory_order_acquire); }
  std::size_t unit_capacity() const { return capacity_; }
  // Reload, admin thread: a unit for `u` (an upstream added or re-targeted after start-up), not
  // served until set_active says so; its index. Throws std::length_error past unit_capacity().
  std::size_t add_upstream(const config::Upstream& u);
  const std::string& upstream_name(std::size_t upstream) const { return upstreams_[upstream].name; }
  // Whether this unit's series are the ones exported for its name: the served unit of that name,
  // else (none served) the newest. A re-targeted upstream's other units keep their state but
  // export nothing, so each name has one series per label set. Admin thread.
  bool exported(std::size_t upstream) const;
  std::size_t target_count(std::size_t upstream) const {
    return upstreams_[upstream].targets.size();
  }
  // i12-resolve: the host name ("app.internal:8000") a slot's addresses come from; empty for a
  // target written as an address or not re-resolved.
  const std::string& target_name(std::size_t upstream, std::size_t target) const {
    return upstreams_[upstream].names[target];
  }

  void add_component(std::string name, std::function<ComponentReport()> probe);
  // Adds to the `upstream:<name>` component what the upstream module knows beyond its targets
  // (the circuit breaker); may make its status worse, never better.
  void set_upstream_probe(std::size_t upstream, std::function<ComponentReport()> probe);
  // Which upstreams the running configuration serves (a reload may leave start-up upstreams
  // out): readiness and the report look at those only. Admin thread; all are served at start.
  void set_active(const std::vector<bool>& active);
  bool active(std::size_t upstream) const {
    return active_[upstream].load(std::memory_order_relaxed);
  }
  void set_draining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }

  // Ready: not draining and at least one upstream target reachable.
  bool ready() const;
  // Cached for health.cache_ttl; called from the admin/worker threads.
  nlohmann::json summary();   // {"status":..,"components":{name: status}}
  nlohmann::json detailed();  // {"status":..,"checked_at":..,"components":{name:{...}}}
  static bool is_down(const nlohmann::json& report) { return report.value("status", "") == "down"; }
  // The report as JSON text. Details carry text from outside (a Redis error reply, an OS error)
  // that may not be UTF-8; nlohmann's dump() throws on that, so invalid bytes become U+FFFD.
  static std::string to_json_text(const nlohmann::json& report) {
    return report.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }

 private:
  struct UpstreamEntry {
    std::string name;
    std::vector<std::unique_ptr<TargetHealth>> targets;  // one per slot (Upstream::slot_count)
    std::vector<std::string> names;                      // per slot: target_name()
    std::function<ComponentReport()> probe;
  };
  nlohmann::json compute();

  UpstreamEntry entry(const config::Upstream& u) const;

  // Reserved to capacity_ at construction and never reallocated, so workers index it without a
  // lock while the admin thread appends (count_ published with release after the entry is built).
  std::vector<UpstreamEntry> upstreams_;
  std::size_t capacity_;
  std::atomic<std::size_t> count_{0};
  std::unique_ptr<std::atomic<bool>[]> active_;  // per unit, capacity_ of them
  std::vector<std::pair<std::string, std::function<ComponentReport()>>> components_;
  std::atomic<bool> draining_{false};
  Clock::time_point started_ = Clock::now();
  unsigned workers_;
  std::string version_;
  config::Millis cache_ttl_;
  std::mutex cache_mu_;
  Clock::time_point cached_at_{};
  nlohmann::json cached_;
};

}  // namespace gatehouse::observability
