#pragma once
// Typed `jobs` configuration (issue 13): where durable jobs are kept, how many run at once, how
// they are retried, what is accepted, and where their status is served. Route modes (sync, async,
// hybrid) are `config::Route::mode`. docs/configuration.md, "Async jobs".
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "ratelimit/rate.hpp"

namespace gatehouse::config {
class Sections;
}  // namespace gatehouse::config

namespace gatehouse::filters::jobs {

using Millis = std::chrono::milliseconds;

struct Settings {
  bool enabled = false;  // a top-level `jobs:` block
  // sqlite://PATH (relative to the working directory; sqlite:///abs/path) or redis://HOST:PORT/DB.
  std::string store = "sqlite://gatehouse-jobs.db";
  unsigned concurrency = 8;  // upstream calls in flight for jobs, per instance (all workers)
  // attempts, backoff and `on` as an upstream's retry block reads them; `methods`, `budget` and
  // `buffer_body` do not apply (every job is sent again with the same Idempotency-Key).
  config::RetryConfig retry = default_retry();
  std::size_t max_body = 1024 * 1024;          // larger request bodies: 413, never queued
  std::size_t max_response = 8 * 1024 * 1024;  // larger upstream responses: the attempt fails
  Millis result_ttl{std::chrono::hours(24)};   // final jobs and idempotency keys expire
  std::string path = "/jobs";                  // GET PATH/<id>, GET PATH/<id>/result
  std::uint64_t max_queued = 100000;           // queued beyond this: 503 + Retry-After
  std::string owner_header = "Authorization";  // whose job it is (a keyed hash of its value)
  // Status requests (GET PATH/<id>[/result]) per client address and credential, a sliding
  // window checked before the store is read: the status path comes before routing, so no
  // route's rate limit applies to polling. count 0: off.
  ratelimit::Rate poll_rate{50, 1, "second", 1};

  static config::RetryConfig default_retry() {
    config::RetryConfig r;
    r.attempts = 3;
    r.backoff_base = Millis(1'000);
    r.backoff_max = Millis(60'000);
    r.on = config::retry_connect_failure | config::retry_reset | config::retry_timeout;
    r.on_status = {429, 502, 503, 504};
    return r;
  }
};

// The settings (defaults, disabled, when the file has no `jobs`).
const Settings& settings(const config::Config& config);

// Why `next` cannot replace `running` without a restart (the store and the runner's slots are
// built once), or empty.
std::string restart_needed(const config::Config& running, const config::Config& next);

// The `jobs` keys a reload changed (of those that reload: retry, max_body, max_response, path,
// owner_header, poll_rate), in that order, for the reload's summary line.
std::vector<std::string> reload_changes(const config::Config& running, const config::Config& next);

void register_config(config::Sections& sections);

}  // namespace gatehouse::filters::jobs
