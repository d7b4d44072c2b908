#pragma once
// The rate-limit step of a request: which limits apply to the route, the key each one counts
// (client IP, a header, the route, or one global bucket), bans, concurrency caps, the decision,
// and the response headers (IETF RateLimit/RateLimit-Policy and X-RateLimit-*) and 429/403 body.
// Pure and thread-safe: every worker calls check() on the same instance; the state lives in a
// sharded MemoryStore and the counters in per-worker cells.
#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/path_params.hpp"
#include "filters/rate_limit/config.hpp"
#include "filters/rate_limit/decision_counters.hpp"
#include "observability/logging.hpp"
#include "observability/metrics.hpp"
#include "observability/top_k.hpp"
#include "ratelimit/bans.hpp"
#include "ratelimit/clock.hpp"
#include "ratelimit/in_flight.hpp"
#include "ratelimit/memory_store.hpp"

namespace gatehouse::filters::rate_limit {

// The state that outlives one limiter (a reload builds a new limiter on the same state, and
// counters of limits whose definition did not change carry over: keys are derived from the
// definition, not from positions in the file). `workers`: how many workers write the decision
// counters and top keys (each its own cells; limiters built for more share the last one's).
struct SharedState {
  explicit SharedState(std::size_t max_keys, unsigned workers = 1)
      : store(max_keys), decisions(workers), rejected_keys(workers, kTopKeysPerWorker) {}
  // Refused keys each worker remembers for the dashboard (space-saving: a key refused more than
  // 1/64 of the time is always among them).
  static constexpr std::size_t kTopKeysPerWorker = 64;
  ratelimit::MemoryStore store;
  ratelimit::BanList bans;
  ratelimit::InFlight in_flight;
  // Decisions and refusals by rule (gatehouse_ratelimit_decisions_total, the dashboard), and the
  // keys refused most often: process-wide, so a reload keeps them.
  DecisionCounters decisions;
  observability::ShardedTopK rejected_keys;
};

struct RequestInfo {
  std::size_t route = 0;
  std::string_view client_ip;  // trusted proxies already applied
  std::string_view path;       // without query
  // Header lookup: empty when absent.
  std::string_view (*header)(const void* ctx, std::string_view name) = nullptr;
  const void* header_ctx = nullptr;
  const core::PathParams* params = nullptr;  // the route template's variables (`path:NAME` keys)
};

// One request's rate checks as a store sees them. The in-memory store decides them inside check();
// a remote store (Redis) decides them between begin() and finish(), while the request waits.
struct StoreRequest {
  // One applied policy with rates: its checks count one bucket identity and are decided
  // atomically together (one Redis script call, one hash tag: one cluster slot).
  struct Group {
    std::string identity;  // "ip=203.0.113.7", "header:X-API-Key=#1f2e..." (never a raw secret)
    std::uint16_t first = 0;
    std::uint16_t count = 0;
    const ratelimit::BanRule* ban = nullptr;  // the policy's ban rule, if any
    std::string_view ban_reason;  // "route=generate limit=10/minute" (owned by the limiter)
  };
  std::vector<ratelimit::Check> checks;
  std::vector<std::string> keys;           // the memory store's binary keys behind checks[i].key
  std::vector<std::uint32_t> definitions;  // per check: the limit's definition hash (Redis names)
  std::vector<Group> groups;               // remote decisions only
  bool check_bans = false;                 // some policy has a ban rule: look ban keys up
  // Set by the store that decided:
  bool all = false;               // every check allowed (and was committed)
  int banned_group = -1;          // remote: this group's identity is banned ...
  ratelimit::Nanos ban_left = 0;  // ... for this much longer
  std::uint32_t new_bans = 0;     // remote: bit g set when this request started a ban of group g

  // The limiter's bookkeeping between begin() and finish().
  std::size_t n_applied = 0;
  std::array<std::uint8_t, 8> applied_index{};
  std::vector<std::uint16_t> check_policy;  // per check: index into applied_index
  std::vector<std::uint16_t> check_rate;    // per check: the rate within its policy
};

struct Verdict {
  enum class Kind : std::uint8_t {
    allowed,
    limited,
    banned,
    too_many_in_flight,
    store_unavailable  // the shared store failed and on_store_failure is deny
  };
  Kind kind = Kind::allowed;
  std::string headers;             // complete header lines, each ending in CRLF
  std::int64_t retry_after_s = 0;  // rejections
  std::string message;             // rejections: the JSON body's message
  std::string new_ban;             // set when this request started a ban: the banned key
  std::string ban_reason;          // and why
  std::vector<std::string> held;   // in-flight slots to release when the request ends
  StoreRequest store;              // the rate checks (reused across requests)

  bool allowed() const { return kind == Kind::allowed; }
  unsigned status() const {
    switch (kind) {
      case Kind::allowed:
        return 0;
      case Kind::banned:
        return 403;
      case Kind::store_unavailable:
        return 503;
      default:
        return 429;
    }
  }
  // "rate_limit_exceeded", "banned", "too_many_concurrent_requests",
  // "rate_limit_store_unavailable"
  const char* code() const;
};

// {"bans":[{"key":...,"reason":...,"expires_in":s}],"count":N} (plus "source" when given).
std::string bans_json(const std::vector<ratelimit::BanInfo>& bans, std::string_view source = {});

class RateLimiter {
 public:
  RateLimiter(const config::Config& cfg, unsigned workers, std::shared_ptr<SharedState> state,
              std::shared_ptr<const ratelimit::Clock> clock,
              const observability::ClientIpHasher* hasher = nullptr);
  ~RateLimiter();

  // Whether any route is limited at all (the session skips everything otherwise).
  bool enabled() const { return enabled_; }
  bool route_limited(std::size_t route) const;

  // The decision for one request with the in-memory store, counted in worker `worker`'s metrics.
  // Fills `out` (reused by the caller across requests, so buffers are recycled).
  void check(const RequestInfo& request, unsigned worker, Verdict& out);

  // The same in steps, for a remote store. begin() applies exemptions, local bans and in-flight
  // caps and lays out the rate checks in out.store (with identities when `remote`); it returns
  // false when the verdict is already final. Then either a remote store decides out.store and
  // finish(..., true) follows, or decide_local() and finish(..., false) do.
  bool begin(const RequestInfo& request, unsigned worker, Verdict& out, bool remote);
  void decide_local(Verdict& out);
  // The bans this instance knows (its own, and those the shared store reported): for decisions
  // made without the store. True when `out` is now a ban refusal.
  bool refused_by_local_ban(const RequestInfo& request, unsigned worker, Verdict& out);
  void finish(const RequestInfo& request, unsigned worker, Verdict& out, bool remote);
  // When the remote store cannot decide: admit without rate headers (on_store_failure: allow),
  // or refuse with 503 (deny).
  void fail_open(Verdict& out);
  void fail_closed(Verdict& out);
  // Whether some policy carries a ban rule.
  bool has_ban_rules() const { return has_ban_rules_; }
  // Ends the request's in-flight slots.
  void release(Verdict& verdict);

  // Admin: bans as JSON ({"bans":[{"key":...,"reason":...,"expires_in":s}]}), lifting them.
  std::string bans_json();
  bool lift_ban(std::string_view key);
  std::size_t lift_all_bans();
  std::size_t bans_active() { return state_->bans.active(clock_->now()); }
  std::vector<ratelimit::BanInfo> bans() { return state_->bans.list(clock_->now()); }
  // The `n` bans with the most time left, and how many are active.
  std::pair<std::vector<ratelimit::BanInfo>, std::size_t> longest_bans(std::size_t n) {
    return state_->bans.longest(n, clock_->now());
  }

  // Prometheus text for the limiter's metrics.
  void render_metrics(std::string& out) const;

  // Dashboard (admin thread): the keys refused most often (as bans name them: client IPs hashed
  // when log.hash_client_ip is on, header values as fingerprints), kept across reloads in the
  // SharedState. Refusals per route are SharedState::decisions.rejected_by_route(): every rule a
  // route ever had, by route name.
  std::vector<observability::TopEntry> top_rejected(std::size_t n) const {
    return state_->rejected_keys.top(n);
  }

  SharedState& state() { return *state_; }
  // Reload: each policy's counter definitions as (owner, definition), owner "defaults" or
  // "route:NAME#i". Counters (memory keys, Redis key names) derive from the definition, so a
  // limiter built on the same SharedState keeps the counts of every unchanged definition.
  const std::vector<std::pair<std::string, std::string>>& rule_definitions() const {
    return rule_definitions_;
  }

 private:
  struct Policy;
  struct RoutePlan;
  struct WorkerCells;

  std::string identity(const Policy& p, const RequestInfo& r) const;
  std::string identity(const Policy& p, const RequestInfo& r,
                       const std::optional<http::IpBytes>& parsed) const;
  bool refused_by_local_ban(const RequestInfo& r, unsigned worker, Verdict& out,
                            const std::optional<http::IpBytes>& ip);
  // The client's network (rate_limit.ipv6_prefix) of a parsed address.
  std::optional<http::IpBytes> key_ip(const std::optional<http::IpBytes>& ip) const;
  // The BanList probe of policy p's key for this request (see BanList::probe_of).
  std::uint64_t ban_probe(const Policy& p, const RequestInfo& r,
                          const std::optional<http::IpBytes>& network) const;
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
  std::vector<std::pair<std::string, std::string>> rule_definitions_;
  std::vector<std::unique_ptr<WorkerCells>> cells_;
  std::vector<std::size_t> counters_;  // per slot: its DecisionCounters counter
  struct MetricSlot {
    std::string labels;  // route="...",limit="...",key="..."
    bool shown;          // max_in_flight slots only when configured
    bool ban;            // counts refusals by ban (result="banned")
  };
  std::vector<MetricSlot> metric_labels_;
  std::atomic<std::uint64_t> bans_total_{0};
  bool enabled_ = false;
  bool has_ban_rules_ = false;
  ratelimit::Nanos wall_offset_ = 0;  // clock_->wall_offset(), taken once
  unsigned ipv6_prefix_ = 64;         // rate_limit.ipv6_prefix: an IPv6 client is its network
};

}  // namespace gatehouse::filters::rate_limit
