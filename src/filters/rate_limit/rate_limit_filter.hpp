#pragma once
// The rate-limit step of a request: which limits apply to the route, the key each one counts
// (client IP, a header, the route, or one global bucket), bans, concurrency caps, the decision,
// and the response headers (IETF RateLimit/RateLimit-Policy and X-RateLimit-*) and 429/403 body.
// Pure and thread-safe: every worker calls check() on the same instance; the state lives in a
// sharded MemoryStore and the counters in per-worker cells.
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "observability/logging.hpp"
#include "observability/metrics.hpp"
#include "ratelimit/bans.hpp"
#include "ratelimit/clock.hpp"
#include "ratelimit/in_flight.hpp"
#include "ratelimit/memory_store.hpp"

namespace gatehouse::filters::rate_limit {

// The state that outlives one limiter (a reload builds a new limiter on the same state, and
// counters of limits whose definition did not change carry over: keys are derived from the
// definition, not from positions in the file).
struct SharedState {
  explicit SharedState(std::size_t max_keys) : store(max_keys) {}
  ratelimit::MemoryStore store;
  ratelimit::BanList bans;
  ratelimit::InFlight in_flight;
};

struct RequestInfo {
  std::size_t route = 0;
  std::string_view client_ip;  // trusted proxies already applied
  std::string_view path;       // without query
  // Header lookup: empty when absent.
  std::string_view (*header)(const void* ctx, std::string_view name) = nullptr;
  const void* header_ctx = nullptr;
};

struct Verdict {
  enum class Kind : std::uint8_t { allowed, limited, banned, too_many_in_flight };
  Kind kind = Kind::allowed;
  std::string headers;             // complete header lines, each ending in CRLF
  std::int64_t retry_after_s = 0;  // rejections
  std::string message;             // rejections: the JSON body's message
  std::string new_ban;             // set when this request started a ban: the banned key
  std::string ban_reason;          // and why
  std::vector<std::string> held;   // in-flight slots to release when the request ends

  bool allowed() const { return kind == Kind::allowed; }
  unsigned status() const { return kind == Kind::banned ? 403 : kind == Kind::allowed ? 0 : 429; }
  const char* code() const;  // "rate_limit_exceeded", "banned", "too_many_concurrent_requests"
};

class RateLimiter {
 public:
  RateLimiter(const config::Config& cfg, unsigned workers, std::shared_ptr<SharedState> state,
              std::shared_ptr<const ratelimit::Clock> clock,
              const observability::ClientIpHasher* hasher = nullptr);
  ~RateLimiter();

  // Whether any route is limited at all (the session skips everything otherwise).
  bool enabled() const { return enabled_; }
  bool route_limited(std::size_t route) const;

  // The decision for one request, counted in worker `worker`'s metrics. Fills `out` (reused by
  // the caller across requests, so the header string's buffer is recycled).
  void check(const RequestInfo& request, unsigned worker, Verdict& out);
  // Ends the request's in-flight slots.
  void release(Verdict& verdict);

  // Admin: bans as JSON ({"bans":[{"key":...,"reason":...,"expires_in":s}]}), lifting them.
  std::string bans_json();
  bool lift_ban(std::string_view key);
  std::size_t lift_all_bans();
  std::size_t bans_active() { return state_->bans.active(clock_->now()); }

  // Prometheus text for the limiter's metrics.
  void render_metrics(std::string& out) const;

  SharedState& state() { return *state_; }

 private:
  struct Policy;
  struct RoutePlan;
  struct WorkerCells;

  std::string identity(const Policy& p, const RequestInfo& r) const;
  std::string policy_line(const RoutePlan& plan, std::span<const std::size_t> policies) const;
  // The response lines for the check that decided: policy `plan_index` of the route, its rate
  // `rate_index`; `applied` lists the plan's policies that applied (not exempt).
  void build_headers(const RoutePlan& plan, std::span<const std::size_t> applied,
                     std::size_t plan_index, std::size_t rate_index, const ratelimit::Outcome& o,
                     bool rejected, ratelimit::Nanos now, Verdict& out) const;

  std::shared_ptr<SharedState> state_;
  std::shared_ptr<const ratelimit::Clock> clock_;
  const observability::ClientIpHasher* hasher_;
  std::vector<std::unique_ptr<Policy>> policies_;
  std::vector<RoutePlan> plans_;
  std::vector<std::unique_ptr<WorkerCells>> cells_;
  struct MetricSlot {
    std::string labels;  // route="...",limit="...",key="..."
    bool shown;          // max_in_flight slots only when configured
    bool ban;            // counts refusals by ban (result="banned")
  };
  std::vector<MetricSlot> metric_labels_;
  std::atomic<std::uint64_t> bans_total_{0};
  bool enabled_ = false;
  ratelimit::Nanos wall_offset_ = 0;  // clock_->wall_offset(), taken once
};

}  // namespace gatehouse::filters::rate_limit
