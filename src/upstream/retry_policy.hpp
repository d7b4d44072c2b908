#pragma once
// Whether, and where, a request is tried again after a try failed. Pure: the proxy describes the
// failed try, the policy answers; no I/O, no clock. Today's one rule: a reused keep-alive
// connection that the upstream had closed (EOF or reset before the response head) is retried once
// on a fresh connection, when sending the request again cannot run it twice.
//
// Issue 12 extends this object, not the proxy: more failure kinds (connect failure, 5xx, 429),
// attempts, backoff and budget become Settings and RetryInput fields; `where` grows "another
// target"; a replayable body (ReplayBuffer in relay.hpp) turns Body::replayable on.
#include <string_view>

namespace gatehouse::upstream {

// RFC 9110 section 9.2.2: requests that may be sent again without changing what they do.
bool idempotent_method(std::string_view method);

// How a try failed before a response head arrived.
enum class TryFailure {
  closed,     // EOF, reset, broken pipe or a partial head: the connection was dead or died
  timed_out,  // no head within the upstream timeout
  other,      // anything else (a malformed head, ...)
};

struct RetryInput {
  int tries = 1;  // tries made so far, the failed one included
  TryFailure failure = TryFailure::closed;
  bool reused_connection = false;  // the failed try ran on an idle keep-alive connection
  bool wrote_any = false;          // some request byte reached the upstream's socket
  enum class Body {
    none,        // the request has no body
    replayable,  // a body that was kept whole and can be sent again
    not_kept,    // a body that was streamed and is gone
  } body = Body::none;
  bool idempotent = false;       // idempotent_method(method)
  bool idempotency_key = false;  // the client sent an Idempotency-Key header
};

struct RetryDecision {
  bool retry = false;
  // Where the next try goes: a new connection (never an idle one, which may be as stale as the
  // one that failed), to the balancer's next pick.
  bool fresh_connection = false;

  friend bool operator==(const RetryDecision&, const RetryDecision&) = default;
};

class RetryPolicy {
 public:
  struct Settings {
    int max_tries = 2;  // the first try and one retry
  };
  RetryPolicy() = default;
  explicit RetryPolicy(Settings s) : settings_(s) {}

  RetryDecision decide(const RetryInput& in) const;

 private:
  Settings settings_;
};

}  // namespace gatehouse::upstream
