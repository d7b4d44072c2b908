#pragma once
// The pure rules of async jobs (issue 13): what a client asked for (Prefer), what a job is made
// of (id, request digest, the header lines kept), what is answered (202 body, status JSON), and
// what an attempt's outcome means for the job (final, or again after a backoff). No I/O: the
// session (server/jobs_accept.cpp) and the runner (server/jobs_runner.cpp) act on the answers.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "jobs/job.hpp"

namespace gatehouse::filters::jobs {

using gatehouse::jobs::Job;
using EpochMs = gatehouse::jobs::Millis;  // ms since the Unix epoch
using gatehouse::jobs::State;
using gatehouse::jobs::StoredRequest;
using gatehouse::jobs::StoredResponse;

// RFC 7240 Prefer: respond-async and wait=N (seconds), from one or more field values.
struct Preference {
  bool respond_async = false;
  std::optional<std::chrono::seconds> wait;
  // Merges one Prefer field value (a comma-separated list of preferences).
  void add(std::string_view value);
};

// What the session does with a request on a route: proxy it (sync), accept it as a job and answer
// 202 at once, or run its first attempt here and wait up to `wait` for the response.
struct Acceptance {
  enum class Kind : std::uint8_t { proxy, async, wait } kind = Kind::proxy;
  std::chrono::milliseconds wait{0};
  bool preference_applied = false;  // answer with Preference-Applied: respond-async
};
Acceptance decide(config::Route::Mode mode, std::chrono::milliseconds hybrid_wait,
                  const Preference& prefer);

// 32 lowercase hex characters from 128 bits of OpenSSL's CSPRNG; empty if it failed.
std::string new_job_id();
bool valid_job_id(std::string_view id);

// Hex SHA-256 of method, target and body, each length-prefixed: the same Idempotency-Key with
// another request is told apart by it.
std::string request_digest(std::string_view method, std::string_view target, std::string_view body);

// Whether a client request line is kept in the stored request: hop-by-hop, framing, forwarding,
// the request id and traceparent are gatehouse's to write when the job is sent, and Expect and
// Prefer were for the accepting exchange. `request_id_header`: the configured one.
bool keeps_request_field(std::string_view name, std::string_view request_id_header);
// Whether an upstream response line is kept in the stored response (hop-by-hop and framing go).
bool keeps_response_field(std::string_view name);

const char* state_text(State s);  // "queued", "running", ...

// {"job_id", "status", "status_url"}: the 202 body.
std::string accepted_body(const Job& job, std::string_view path);
// GET PATH/<id>: {job_id, status, attempts, max_attempts, created_at, updated_at, finished_at,
// upstream_status, error} (times in RFC 3339 UTC, null when unset).
std::string status_body(const Job& job, std::string_view path);
// Seconds a poller should wait before asking again while the job is queued or running.
std::int64_t poll_after_seconds(const Job& job, EpochMs now);

// One attempt's outcome, as the runner saw it.
struct Attempt {
  enum class Failure : std::uint8_t {
    none,  // a response
    connect_failed,
    timed_out,
    reset,
    too_large,  // the response passed jobs.max_response
  } failure = Failure::none;
  unsigned status = 0;                              // the response's, with Failure::none
  std::optional<std::chrono::seconds> retry_after;  // a 429/503's Retry-After
};

// What becomes of the job after an attempt: final (succeeded, failed, dead) or queued again.
struct Verdict {
  State state = State::succeeded;  // queued: retry_later at `run_at`
  EpochMs run_at = 0;
  std::string error;  // for status and logs; empty on success
};
// `attempts`: attempts started so far, this one included; `random`: bits for the jitter.
// The backoff is upstream::RetryPolicy's (min(max, base * 2^(n-1)), full jitter or none), or the
// response's Retry-After when longer; `on` is jobs.retry.on.
Verdict judge(const Attempt& a, const Job& job, const config::RetryConfig& retry, EpochMs now,
              std::uint64_t random);

}  // namespace gatehouse::filters::jobs
