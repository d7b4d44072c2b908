#pragma once
// A durable job (issue 13): a request accepted with 202 and run later against its route's
// upstream. Plain data: what the stores persist (src/jobs/sqlite_store.*, redis_store.*) and
// what the gateway side (src/jobs/runner.*, the jobs filter, /jobs/<id>) reads and writes.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gatehouse::jobs {

// queued → running → succeeded | failed | (queued again, after a retryable failure) | dead.
// - succeeded: the upstream answered and its status is not an error the job retries on, and is
//   below 400 (the stored response is the result);
// - failed: the upstream answered an error that is not retried (e.g. 400, 422): final, with
//   the stored response as the result;
// - dead: every attempt failed retryably (or the job could not be run at all): the dead-letter
//   queue; the last response, if any, is kept as the result. An admin retry re-queues it.
enum class State : std::uint8_t { queued, running, succeeded, failed, dead };
const char* state_name(State s);
std::optional<State> parse_state(std::string_view name);
inline bool final_state(State s) {
  return s == State::succeeded || s == State::failed || s == State::dead;
}

using Fields = std::vector<std::pair<std::string, std::string>>;

// The request as the upstream is to receive it: method, target (canonical path + query), the
// end-to-end header lines (hop-by-hop, framing and forwarding lines dropped; gatehouse adds
// X-Forwarded-*, the request id, `Idempotency-Key: <job id>` and Content-Length when it sends)
// and the whole body.
struct StoredRequest {
  std::string method;
  std::string target;
  Fields headers;
  std::string body;
};

// An upstream response kept whole: status, end-to-end header lines, body.
struct StoredResponse {
  unsigned status = 0;
  Fields headers;
  std::string body;
};

using Millis = std::int64_t;  // milliseconds since the Unix epoch (system clock)

struct Job {
  std::string id;          // 32 lowercase hex chars: 128 random bits
  std::string owner;       // hex hash of the creating credential; empty: created without one
  std::string route;       // route name (the generation may have changed by the time it runs)
  std::string request_id;  // the accepting request's id (logs, X-Request-ID upstream)
  std::string client_ip;   // as the accepting request saw it (X-Forwarded-For upstream)
  // Idempotency-Key given by the client (empty: none) and a digest of the request it came
  // with (method, target, body), so the same key with another request is told apart (422).
  std::string idempotency_key;
  std::string request_digest;
  StoredRequest request;
  State state = State::queued;
  int attempts = 0;      // attempts started so far (a claim increments it)
  int max_attempts = 1;  // from jobs.retry.attempts when accepted
  Millis created_at = 0;
  Millis updated_at = 0;
  Millis run_at = 0;       // queued: not before this (backoff); running: lease expiry
  Millis finished_at = 0;  // final states
  std::optional<StoredResponse> response;  // the last upstream response (final states)
  std::string last_error;                  // the last failed attempt, for status and logs
};

}  // namespace gatehouse::jobs
