#pragma once
// Whether, when and where a request is tried again after a try failed. Pure: the proxy describes
// the failed try, the policy answers; no I/O, no clock of its own (times and random numbers are
// passed in), so every rule is a unit test.
//
// Two kinds of retry:
// - the stale keep-alive retry (always on, as before issue 12): a reused idle connection that the
//   upstream had closed (EOF or reset before the response head) is retried once on a fresh
//   connection when sending the request again cannot run it twice. It is not the upstream's
//   fault, so it spends neither an attempt nor budget and does not wait;
// - configured retries (`upstreams.<name>.retry`): a try that failed in one of the `on` ways is
//   retried while attempts, the method, the body, the route's deadline and the retry budget allow,
//   after an exponential backoff with full jitter (or the upstream's Retry-After), on another
//   target when there is one.
// Nothing here runs once a response byte went to the client: the proxy only asks before that.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "config/config.hpp"

namespace gatehouse::upstream {

using RetryClock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// RFC 9110 section 9.2.2: requests that may be sent again without changing what they do.
bool idempotent_method(std::string_view method);

// How a try failed.
enum class TryFailure {
  closed,          // EOF, reset, broken pipe or a partial head: the connection was dead or died
  timed_out,       // no head within the try's timeout
  other,           // anything else (a malformed head, ...): never retried
  connect_failed,  // no target accepted a connection (nothing was sent)
  status,          // a response head whose status is in `on` (429, 5xx)
  invalid_json,    // a 2xx JSON body, held whole, that does not parse
};

// Why a request was retried: the metrics label and the log's "reason".
enum class RetryReason : std::uint8_t {
  stale_connection,
  connect_failure,
  reset,
  timeout,
  status_429,
  status_5xx,
  invalid_json,
};
inline constexpr std::size_t kRetryReasons = 7;
std::string_view reason_name(RetryReason r);  // "stale_connection", "429", "5xx", ...

// Why a failed try was not retried (the proxy logs it at debug; budget is counted).
enum class NoRetry : std::uint8_t {
  none,             // it is retried
  not_listed,       // the failure kind or status is not in `on`
  attempts,         // the tries are used up
  method,           // the method is not retryable and there is no Idempotency-Key
  body,             // the body was streamed and is gone (or bigger than buffer_body)
  no_other_target,  // a 429 with a single target: it is never retried against the same one
  retry_after,      // the upstream's Retry-After is longer than what the deadline leaves
  deadline,         // the wait would end at or after the route's deadline
  budget,           // the retry budget is spent (decided by RetryBudget, after the policy)
  circuit_open,     // the upstream's circuit breaker opened meanwhile (decided by the proxy)
};

std::string_view why_not_name(NoRetry n);  // "budget", "retry_after", ...

struct RetryInput {
  int tries = 1;  // tries made so far, the failed one included (a stale retry does not count)
  TryFailure failure = TryFailure::closed;
  unsigned status = 0;             // the response status, for TryFailure::status
  bool reused_connection = false;  // the failed try ran on an idle keep-alive connection
  bool stale_retried = false;      // this request had its stale keep-alive retry already
  bool wrote_any = false;          // some request byte reached the upstream's socket
  enum class Body {
    none,        // the request has no body
    replayable,  // a body that was kept whole and can be sent again
    not_kept,    // a body that was streamed and is gone
  } body = Body::none;
  bool idempotent = false;       // idempotent_method(method): the stale rule's test
  bool method_listed = false;    // the method is in retry.methods: the configured retries' test
  bool idempotency_key = false;  // the client sent an Idempotency-Key header
  bool other_target = true;      // the upstream has more than one target
  // Time left until the route's deadline; nullopt when the route has none.
  std::optional<Millis> remaining;
  std::optional<Millis> retry_after;  // the response's Retry-After (429/503), parsed
  std::uint64_t random = 0;           // uniform random bits for the jitter
};

struct RetryDecision {
  bool retry = false;
  // A new connection (never an idle one, which may be as stale as the one that failed).
  bool fresh_connection = false;
  // Where the next try goes: not to the failed try's target while another one remains; with
  // `avoid_strictly` (a 429) never to it.
  bool avoid_target = false;
  bool avoid_strictly = false;
  Millis wait{0};  // before the next try: the backoff, or the upstream's Retry-After
  RetryReason reason = RetryReason::stale_connection;
  NoRetry why_not = NoRetry::none;

  friend bool operator==(const RetryDecision&, const RetryDecision&) = default;
};

class RetryPolicy {
 public:
  RetryPolicy() = default;
  explicit RetryPolicy(const config::RetryConfig& cfg);

  RetryDecision decide(const RetryInput& in) const;

  // The n-th retry's (n >= 1) backoff bound: min(max, base * 2^(n-1)); the delay is uniform in
  // [0, bound] with full jitter (`random` picks it), the bound itself without.
  Millis backoff_bound(int n) const;
  Millis backoff(int n, std::uint64_t random) const;

  bool retries_status(unsigned status) const;  // the status is in `on`
  bool retries_invalid_json() const { return (on_ & config::retry_invalid_json) != 0; }
  int attempts() const { return attempts_; }
  bool configured() const { return attempts_ > 1; }

 private:
  int attempts_ = 1;
  Millis base_{100};
  Millis max_{1'000};
  bool jitter_ = true;
  std::uint32_t on_ = 0;
  bool on_429_ = false;
  std::uint64_t on_5xx_ = 0;  // bit s - 500
};

// A worker's retry budget for one upstream, a token bucket in hundredths of a retry: each request
// deposits `percent` (capped at kCap), each retry takes 100; on top, `floor` retries per second
// (a bucket of one second's worth, refilled as time passes) let a quiet upstream be retried at
// all. So a failing upstream sees at most (1 + percent/100) x the requests, plus the floor.
class RetryBudget {
 public:
  static constexpr std::uint64_t kCap = 10 * 100;  // at most 10 retries saved up from traffic
  RetryBudget() = default;
  RetryBudget(unsigned percent, unsigned floor, RetryClock::time_point now);

  void on_request() {
    credit_ += percent_;
    if (credit_ > kCap) {
      credit_ = kCap;
    }
  }
  // Takes one retry's worth if there is one.
  bool try_spend(RetryClock::time_point now);

 private:
  std::uint64_t percent_ = 0;
  std::uint64_t credit_ = 0;        // from traffic, in hundredths
  std::uint64_t floor_ = 0;         // retries per second
  std::uint64_t floor_credit_ = 0;  // in hundredths, at most floor_ * 100
  RetryClock::time_point refilled_{};
};

// Retry-After (RFC 9110 10.2.3): delay-seconds or an HTTP-date (IMF-fixdate, RFC 850 or asctime),
// as a delay from `now` (0 for a date in the past). nullopt when malformed.
std::optional<std::chrono::seconds> parse_retry_after(std::string_view value,
                                                      std::chrono::system_clock::time_point now);

// A Content-Type naming JSON: application/json or any */*+json, parameters ignored.
bool is_json_content_type(std::string_view value);

// Whether `body` is one well-formed JSON text (nlohmann::json::accept).
bool json_parses(std::string_view body);

}  // namespace gatehouse::upstream
