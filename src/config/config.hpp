#pragma once
// The typed, validated configuration. Built once by load_config*(), then shared immutable as
// std::shared_ptr<const Config>; runtime code never sees YAML. Defaults live next to each field and
// are documented in docs/configuration.md.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/filter_settings.hpp"
#include "http/cidr.hpp"
#include "http/forwarding.hpp"

namespace gatehouse::config {

using Millis = std::chrono::milliseconds;

enum class Environment { development, production };

// "0.0.0.0:8080", "127.0.0.1:9901", "[::1]:8080", "localhost:8000", ":8080" (all interfaces).
struct Endpoint {
  std::string host;  // literal address or name; "0.0.0.0" when omitted
  std::uint16_t port = 0;
  std::string to_string() const;  // re-parsable form, IPv6 bracketed
};

// TLS termination (`listen_tls`): OpenSSL through Asio, TLS 1.2 and 1.3, ALPN http/1.1.
struct TlsListen {
  Endpoint address{"0.0.0.0", 8443};
  std::string cert;            // PEM certificate chain; re-read on SIGHUP
  std::string key;             // PEM private key; re-read on SIGHUP
  bool redirect_http = false;  // the plain listener answers every request with 308 to https
};

struct Limits {
  std::size_t max_header_bytes = 16 * 1024;       // whole request head; 431 beyond
  std::size_t max_body_bytes = 10 * 1024 * 1024;  // 413 beyond; 0 = unlimited
  std::size_t max_uri_bytes = 8 * 1024;           // request target; 414 beyond
  Millis header_timeout{10'000};                  // time to receive a complete request head
  Millis idle_timeout{60'000};                    // keep-alive idle time and stalled I/O
  // Request bodies must arrive at this average rate (bytes/second) after a grace of
  // header_timeout (Apache mod_reqtimeout's MinRate); slower is 408. 0 = no minimum.
  std::size_t min_body_rate = 1024;
  std::size_t max_connections = 0;         // open client connections per process; 0 = no cap
  std::size_t max_connections_per_ip = 0;  // per peer address (not X-Forwarded-For); 0 = no cap
};

// `access`: deny wins; a non-empty allow list admits only its networks. Top level and per route
// (a request must pass both).
struct AccessRules {
  std::vector<http::Cidr> allow;
  std::vector<http::Cidr> deny;
  bool empty() const { return allow.empty() && deny.empty(); }
  bool admits(const http::IpBytes& ip) const {
    if (http::any_contains(deny, ip)) {
      return false;
    }
    return allow.empty() || http::any_contains(allow, ip);
  }
};

// --- upstream balancing and backpressure (issue 12, i12-balance) ---
// `upstreams.<name>.balance`: `round_robin`, `least_request`, or a map `{hash: client_ip}` /
// `{hash: header, header: NAME}`. A request without the header is hashed by its client ip.
enum class BalancePolicy { round_robin, least_request, hash };
enum class HashOn { client_ip, header };
struct Balance {
  BalancePolicy policy = BalancePolicy::round_robin;
  HashOn hash_on = HashOn::client_ip;  // policy == hash only
  std::string header;                  // hash_on == header: the request header hashed
  bool operator==(const Balance&) const = default;
};

// --- retries (issue 12, i12-retry) ---
// What a failed try may be retried on (`upstreams.<name>.retry.on`): failure kinds as bits, plus
// response statuses. See docs/configuration.md, "Retries".
enum RetryKind : std::uint32_t {
  retry_connect_failure = 1u << 0,  // no target accepted a connection
  retry_reset = 1u << 1,            // the connection closed or was reset before a response head
  retry_timeout = 1u << 2,          // no response head within per_try_timeout
  retry_invalid_json = 1u << 3,     // a 2xx JSON body (of known length, held) that does not parse
};

enum class Jitter { full, none };

struct RetryConfig {
  // Tries per request, the first included: 1 without a retry block (only the stale keep-alive
  // retry happens, as before issue 12); 3 when a retry block leaves it out.
  unsigned attempts = 1;
  Millis backoff_base{100};  // the n-th retry waits up to min(max, base * 2^(n-1))
  Millis backoff_max{1'000};
  Jitter jitter = Jitter::full;  // full: uniform in [0, that bound]; none: exactly the bound
  std::uint32_t on = retry_connect_failure | retry_reset;  // RetryKind bits
  std::vector<unsigned> on_status{502, 503, 504};          // 429 or 500..599
  // Methods retried once a request may have reached the app; any other needs Idempotency-Key.
  std::vector<std::string> methods{"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
  unsigned budget_percent = 20;         // retries per worker stay under this share of requests ...
  unsigned budget_floor = 3;            // ... plus this many retries per second per worker
  std::size_t buffer_body = 64 * 1024;  // request bodies up to this size are kept for a replay
};

// --- issue 12, target health: active HTTP checks, outlier ejection, circuit breaker ------------
// (docs/configuration.md, "Target health"). Each block is off when left out.

// A status or a class of statuses a health check accepts: 200 is {200, 200}, "2xx" {200, 299}.
struct StatusRange {
  unsigned lo = 200;
  unsigned hi = 200;
  bool operator==(const StatusRange&) const = default;
};

// `upstreams.<name>.health_check`: GET `path` on every target each `interval` (admin thread).
struct HealthCheckConfig {
  std::string path = "/health";
  std::vector<StatusRange> expect{StatusRange{200, 200}};
  Millis interval{5'000};
  Millis timeout{1'000};         // connect + request + status line
  unsigned healthy_after = 2;    // consecutive passes that bring an unhealthy target back
  unsigned unhealthy_after = 3;  // consecutive failures that take a healthy target out
  std::string host;              // Host header; empty = the target's address
  bool operator==(const HealthCheckConfig&) const = default;
};

// `upstreams.<name>.outlier`: passive ejection from real traffic. A count of 0 turns its trigger
// off.
struct OutlierConfig {
  unsigned consecutive_5xx = 5;
  unsigned consecutive_connect_failures = 3;
  Millis eject_for{30'000};           // times the number of recent ejections, at most 10x
  unsigned max_ejected_percent = 50;  // of the upstream's targets at once (at least one of 2+)
  bool operator==(const OutlierConfig&) const = default;
};

// `upstreams.<name>.circuit_breaker`: closed -> open -> half-open over a sliding window.
struct CircuitBreakerConfig {
  double failure_ratio = 0.5;  // failed tries / tries over `window`, at least min_requests
  std::size_t min_requests = 20;
  Millis window{10'000};
  Millis open_for{15'000};
  unsigned half_open_probes = 1;  // tries let through while half-open
  bool operator==(const CircuitBreakerConfig&) const = default;
};

struct Upstream {
  std::string name;
  std::vector<Endpoint> targets;  // at least one
  Millis connect_timeout{2'000};
  Millis timeout{60'000};                // wait for response head, and max gap between body reads
  std::size_t max_idle_per_target = 64;  // idle keep-alive connections kept per worker
  Millis keepalive_timeout{30'000};      // idle pooled connections older than this are closed
  // --- balancing and backpressure (issue 12, i12-balance) ---
  Balance balance;
  // Per worker: connections open to the upstream (in use + idle); 0 = no cap. Requests beyond it
  // wait (FIFO, at most max_queued per worker) up to queue_timeout, then get 503 upstream_busy.
  std::size_t max_connections = 0;
  Millis queue_timeout{5'000};
  std::size_t max_queued = 1024;
  // --- retries (issue 12, i12-retry) ---
  RetryConfig retry;
  Millis per_try_timeout{0};  // each try's wait for the response head; 0 = `timeout`
  // issue 12, target health (none of them = the TCP check of health.check_interval only)
  std::optional<HealthCheckConfig> health_check;
  std::optional<OutlierConfig> outlier;
  std::optional<CircuitBreakerConfig> circuit_breaker;
  // --- DNS re-resolution (issue 12, i12-resolve; docs/configuration.md, "Re-resolving host
  // names") ---
  // Host-name targets are resolved again every resolve_interval on the admin thread, and every
  // address they resolve to is a target. 0 = resolved once at start-up, first address only.
  Millis resolve_interval{0};
  std::size_t max_addresses = 16;  // per host-name target when resolve_interval is set
  // Target slots config target i takes: max_addresses for a re-resolved host name, else 1.
  std::size_t slots_of(std::size_t i) const;
  std::size_t slot_count() const;  // all targets' slots: the size of every per-target table
};

struct RouteMatch {
  std::string path_prefix = "/";
  // --- issue 15, route matching (routes) ---
  // An exact path or a template ("/api/stories/{id}/revise", config/path_template.hpp), canonical
  // literals; when set it replaces path_prefix.
  std::string path;
  std::vector<std::string> methods;  // upper-case; empty = any method
  std::string host;                  // exact Host (without port); empty = any
};

struct Route {
  std::string name;
  RouteMatch match;
  std::string upstream;
  std::size_t upstream_index = 0;  // index into Config::upstreams, resolved at load
  AccessRules access;              // in addition to the top-level rules
  FilterSettings filters;  // the filters' per-route blocks (routes[].rate_limit), see sections.hpp
  // --- retries (issue 12, i12-retry) ---
  Millis timeout{0};  // the request's total deadline upstream, all tries and waits; 0 = none
  bool buffer_request = false;  // read the whole body before taking an upstream connection
  // --- cache invalidation (issue 14, cache-invalidation) ---
  // Canonical path prefixes that a 2xx upstream response on this route purges from the response
  // cache, on this instance at once and, with cache.shared, on every instance (filters/cache_bus).
  std::vector<std::string> invalidates;
  static constexpr std::size_t kMaxInvalidates = 32;        // prefixes per route
  static constexpr std::size_t kMaxInvalidatePrefix = 512;  // bytes per prefix (canonical)
  // --- async jobs (issue 13, jobs-gw) ---
  // sync: proxied as always; async: every request becomes a job (202 at once); hybrid: the first
  // attempt runs at once and its response is answered when it comes within hybrid_wait, else
  // 202. On async and hybrid routes a client may ask with `Prefer: respond-async[, wait=N]`.
  // Anything but sync needs the top-level `jobs` section (filters/jobs/config.hpp).
  enum class Mode : std::uint8_t { sync, async, hybrid };
  Mode mode = Mode::sync;
  Millis hybrid_wait{5'000};
};

enum class LogFormat { json, text };

// --- security log events (issue 15, sentry-seclog) ---
// The events the security log may record (log.security_events); a bit each in
// LogConfig::security_events.
enum class SecurityEvent : unsigned {
  ban,
  ban_lifted,
  rate_limited,
  access_denied,
  cors_denied,
  bad_request,
  tls_error,
};
inline constexpr unsigned kSecurityEventCount = 7;
constexpr unsigned security_event_bit(SecurityEvent e) {
  return 1U << static_cast<unsigned>(e);
}
constexpr std::string_view security_event_name(SecurityEvent e) {
  constexpr std::string_view kNames[kSecurityEventCount] = {
      "ban",         "ban_lifted",  "rate_limited", "access_denied",
      "cors_denied", "bad_request", "tls_error"};
  return kNames[static_cast<unsigned>(e)];
}
// The index of a name security_event_name gives; kSecurityEventCount for any other.
constexpr unsigned security_event_index(std::string_view name) {
  for (unsigned i = 0; i < kSecurityEventCount; ++i) {
    if (security_event_name(static_cast<SecurityEvent>(i)) == name) {
      return i;
    }
  }
  return kSecurityEventCount;
}
// The lines written before the list existed: bans, lifted bans, refused access, refused CORS
// preflights, malformed requests (rate_limited and tls_error are high-volume: opt in).
inline constexpr unsigned kDefaultSecurityEvents =
    security_event_bit(SecurityEvent::ban) | security_event_bit(SecurityEvent::ban_lifted) |
    security_event_bit(SecurityEvent::access_denied) |
    security_event_bit(SecurityEvent::cors_denied) | security_event_bit(SecurityEvent::bad_request);

struct LogConfig {
  LogFormat format = LogFormat::json;
  std::string access = "stdout";  // "stdout", "stderr", "off" or a file path
  std::string error = "stderr";
  std::string security = "stderr";
  std::string level = "info";  // trace|debug|info|warn|error|critical|off
  bool hash_client_ip = false;
  // --- security log events (issue 15, sentry-seclog) ---
  unsigned security_events = kDefaultSecurityEvents;  // bits of SecurityEvent
  // Lines per event type and key (client, rate-limit key) per minute; the rest are counted and
  // summed up in one line a minute. 0 = no sampling.
  unsigned security_per_key_per_minute = 10;
};

// issue 12, deep health (i12-edge): a dependency /health/detailed probes (health.checks).
struct DependencyCheck {
  enum class Kind { tcp, redis, http, disk };
  std::string name;  // component "check:<name>"
  Kind kind = Kind::tcp;
  std::string target;            // tcp: host:port; redis, http: the URL; disk: the path
  std::vector<unsigned> expect;  // http: statuses that count as healthy (empty: 200-399)
  std::uint64_t min_free = 0;    // disk: free bytes below which the check fails
  Millis timeout{2'000};         // a probe slower than this fails
};

struct HealthConfig {
  std::string live_path = "/health/live";
  std::string ready_path = "/health/ready";
  std::string summary_path = "/health";
  Millis cache_ttl{1'000};       // /health and /health/detailed are recomputed at most this often
  Millis check_interval{5'000};  // active TCP checks of every upstream target
  std::vector<DependencyCheck> checks;  // i12-edge: probed by /health/detailed, cached cache_ttl
};

// `paths`: how request paths are canonicalised (http/canonical_path.hpp) and what goes upstream.
enum class PathForward { canonical, original };

struct PathsConfig {
  bool merge_slashes = true;  // "/a//b" is "/a/b" to every rule
  // The request line sent upstream: the canonical path (what the rules judged) or the target as
  // received. The query is forwarded unchanged either way.
  PathForward forward = PathForward::canonical;
};

struct RequestIdConfig {
  std::string header = "X-Request-ID";
  bool trust_incoming = true;  // keep a well-formed incoming id
};

struct Config {
  std::string source;  // file name the config came from ("<cli>" for --upstream)
  Environment environment = Environment::production;
  Endpoint listen{"0.0.0.0", 8080};
  std::optional<TlsListen> listen_tls;
  std::optional<Endpoint> admin_listen = Endpoint{"127.0.0.1", 9901};  // null/"off" disables
  unsigned workers = 0;                                                // 0 = one per core ("auto")
  std::vector<http::Cidr> trusted_proxies;
  // Which forwarding headers trusted proxies write and gatehouse believes (never both).
  http::ForwardedHeaders forwarded_headers = http::ForwardedHeaders::x_forwarded;
  // Every connection on `listen` and `listen_tls` starts with a PROXY protocol v1/v2 header from
  // a peer in trusted_proxies (an L4 load balancer); its client address replaces the peer.
  bool proxy_protocol = false;
  AccessRules access;
  Limits limits;
  Millis drain_timeout{30'000};
  // After SIGTERM, how long the listeners keep accepting (answering with Connection: close) while
  // readiness is already 503: the time a load balancer needs to see it and stop sending.
  Millis drain_delay{0};
  std::vector<Upstream> upstreams;
  std::vector<Route> routes;  // first match wins, in file order
  LogConfig log;
  HealthConfig health;
  PathsConfig paths;
  RequestIdConfig request_id;
  // The sections filters own (rate_limit, security_headers, cors): read through each filter's
  // accessor (filters::cors::settings(config)), which answers its defaults when unset.
  FilterSettings filters;
  // --- issue 15, frictions (routes) ---
  // Settings accepted but ignored ("FILE:LINE:COLUMN: KEY: ..."): `gatehouse check` prints them
  // on stderr, `run` logs them at start-up.
  std::vector<std::string> notes;
};

// Thrown by the loaders; what() is "FILE:LINE:COLUMN: KEY.PATH: message".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Sections;

// Parses and validates; interpolates ${VAR} and ${VAR:-default} from the environment first.
// `sections` are the filters' keys (filters::config_sections()).
Config load_config_file(const std::string& path, const Sections& sections);
Config load_config_string(const std::string& yaml, const std::string& source_name,
                          const Sections& sections);

// The configuration `gatehouse run --upstream URL [--listen ADDR]` uses: production defaults, one
// upstream "app", one route "default" for "/".
Config config_for_upstream(const std::string& url, const std::string& listen);

// The effective configuration as YAML (every key, defaults included), for `gatehouse check`.
std::string to_yaml(const Config& config, const Sections& sections);

// Helpers shared with tests and other config sections.
std::optional<Millis> parse_duration(const std::string& text);  // "250ms", "10s", "1m", "1h", "1d"
std::optional<std::size_t> parse_size(
    const std::string& text);  // "512", "16KiB", "10MiB", "1GiB", "16KB"
std::optional<Endpoint> parse_endpoint(const std::string& text);

}  // namespace gatehouse::config
