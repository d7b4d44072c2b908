#pragma once
// Sentry's wire format, without I/O: the DSN, the envelope an event travels in, the auth header,
// the rate limits Sentry answers with, and the bounded queue between the workers (which only build
// a small Event) and the delivery thread (server/sentry_reporter.cpp), which sends them.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gatehouse::observability::sentry {

// https://PUBLIC_KEY@HOST[:PORT][/PATH]/PROJECT_ID
struct Dsn {
  bool https = true;
  std::string public_key;
  std::string host;  // without brackets for IPv6
  std::uint16_t port = 443;
  std::string path;  // "" or "/prefix" (Sentry behind a sub-path)
  std::string project_id;

  // POST target: PATH/api/PROJECT_ID/envelope/
  std::string envelope_path() const { return path + "/api/" + project_id + "/envelope/"; }
  // The DSN without its secret part (the public key stays: it is what the header names).
  std::string to_string() const;
  bool operator==(const Dsn&) const = default;
};

// The DSN, or why it is not one (scheme, key, host, port, project id).
struct DsnResult {
  std::optional<Dsn> dsn;
  std::string error;
};
DsnResult parse_dsn(std::string_view text);

// X-Sentry-Auth: Sentry sentry_version=7, sentry_key=KEY, sentry_client=CLIENT
std::string auth_header(const Dsn& dsn, std::string_view client);

// What went wrong upstream.
enum class Failure : std::uint8_t {
  status_5xx,   // the upstream answered 5xx (relayed as is)
  intercepted,  // the upstream's error page was replaced (errors.intercept)
  timeout,      // no response head (or body) in time
  connect,      // no connection could be made
  reset,        // the connection failed mid-exchange (reset, bad response)
};
std::string_view failure_name(Failure f);

// One report, built by a worker from the request's context: owned strings, already redacted.
struct Event {
  Failure failure = Failure::status_5xx;
  std::chrono::system_clock::time_point time;
  std::string message;  // "upstream timeout: no response head from 127.0.0.1:9000 ..."
  unsigned status = 0;  // the status the client got (or the upstream's, relayed)
  std::string method;
  std::string url;    // scheme://host + canonical path
  std::string query;  // redacted query string, or empty
  std::string route;  // route name, or empty
  std::string request_id;
  std::string client;    // the logs' client identity (hashed when log.hash_client_ip)
  std::string upstream;  // upstream name
  std::string upstream_address;
  std::vector<std::pair<std::string, std::string>> headers;  // http::is_secret_header: [Filtered]
  std::string body;  // the upstream's body when it looked like a traceback (redacted, truncated)
  bool body_truncated = false;
};

// Whether an error page looks like a stack trace (Python, Java, Node, Go, Ruby, PHP), so it is
// worth attaching.
bool looks_like_traceback(std::string_view body);

// What every event of this process carries.
struct EnvelopeMeta {
  std::string dsn;  // Dsn::to_string()
  std::string environment;
  std::string release;  // empty: omitted
  std::string server_name;
  std::string client;  // "gatehouse/0.1.0"
};

// 32 lower-case hex digits (a UUID v4 without dashes), as Sentry wants event ids.
std::string new_event_id();

// The envelope: a header line, an item header line, the event payload.
std::string build_envelope(const EnvelopeMeta& meta, const Event& event, std::string_view event_id,
                           std::chrono::system_clock::time_point sent_at);

// How long to send nothing after Sentry's answer: X-Sentry-Rate-Limits (the categories that
// cover error events: none listed, "error" or "default"), else a 429's Retry-After (seconds),
// else 60 s for a 429; nullopt when the answer does not limit.
std::optional<std::chrono::seconds> rate_limit_delay(unsigned status, std::string_view retry_after,
                                                     std::string_view sentry_rate_limits);

// The workers' side pushes without waiting: a push that finds the lock taken retries a few times,
// then drops (as a full queue does); the delivery thread pops, waiting at most `wait`.
class Queue {
 public:
  explicit Queue(std::size_t capacity) : capacity_(capacity) {}
  bool try_push(Event&& e);  // false: dropped (full, or contended)
  std::optional<Event> pop(std::chrono::milliseconds wait);
  void wake();  // pop returns now (shutdown)
  std::size_t size() const;
  std::size_t capacity() const { return capacity_; }
  // Without the lock: a worker skips building an event the queue has no room for.
  bool full() const { return count_.load(std::memory_order_relaxed) >= capacity_; }

 private:
  const std::size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  bool woken_ = false;
  std::atomic<std::size_t> count_{0};
  std::atomic<bool> waiting_{false};
};

}  // namespace gatehouse::observability::sentry
