#include "server/sentry_reporter.hpp"

#include <unistd.h>
#include <boost/asio/ssl.hpp>
#include <boost/beast/ssl.hpp>

#include <optional>
#include <random>

#include "http/fields.hpp"
#include "http/json.hpp"
#include "http/redaction.hpp"
#include "server/worker.hpp"

namespace gatehouse::server {
namespace {

namespace sentry = observability::sentry;
namespace ssl = net::ssl;
using SteadyClock = std::chrono::steady_clock;

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) {
    return "gatehouse";
  }
  return buf;
}

std::int64_t ns(SteadyClock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// Forwarding headers carry the client's address: never sent in production (the client field
// carries the logs' hashed identity instead).
bool is_address_header(std::string_view name) {
  for (std::string_view h : {"x-forwarded-for", "forwarded", "x-real-ip", "true-client-ip",
                             "cf-connecting-ip", "x-client-ip"}) {
    if (ghttp::iequals(name, h)) {
      return true;
    }
  }
  return false;
}

}  // namespace

struct SentryReporter::Answer {
  bool ok = false;  // 2xx
  unsigned status = 0;
  std::string retry_after;
  std::string rate_limits;  // X-Sentry-Rate-Limits
  std::string error;
};

SentryReporter::SentryReporter(const filters::errors::SentrySettings& settings,
                               const std::string& version, observability::Logs& logs)
    : settings_(settings),
      dsn_(*sentry::parse_dsn(settings.dsn).dsn),
      logs_(logs),
      queue_(settings.max_queue) {
  meta_.dsn = dsn_.to_string();
  meta_.environment = settings.environment;
  meta_.release = settings.release;
  meta_.server_name = host_name();
  meta_.client = "gatehouse/" + version;
  auth_ = sentry::auth_header(dsn_, meta_.client);
}

SentryReporter::~SentryReporter() {
  stop(std::chrono::milliseconds(0));
}

void SentryReporter::start() {
  thread_ = std::thread([this] { run(); });
}

void SentryReporter::stop(std::chrono::milliseconds bound) {
  if (!thread_.joinable()) {
    return;
  }
  stop_by_ns_.store(ns(SteadyClock::now() + bound));
  stopping_.store(true);
  queue_.wake();
  thread_.join();
}

bool SentryReporter::sampled() const {
  if (settings_.sample_rate >= 1.0) {
    return true;
  }
  if (settings_.sample_rate <= 0.0) {
    return false;
  }
  thread_local std::minstd_rand rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng) < settings_.sample_rate;
}

bool SentryReporter::accepts() {
  if (ns(SteadyClock::now()) < blocked_until_ns_.load(std::memory_order_relaxed)) {
    rate_limited_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (queue_.full()) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void SentryReporter::submit(sentry::Event&& event) {
  if (stopping_.load(std::memory_order_relaxed) || !queue_.try_push(std::move(event))) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }
}

void SentryReporter::run() {
  for (;;) {
    const bool stopping = stopping_.load();
    if (stopping && ns(SteadyClock::now()) >= stop_by_ns_.load()) {
      // What is left is dropped: the drain does not wait longer for Sentry.
      while (queue_.pop(std::chrono::milliseconds(0))) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
      }
      return;
    }
    auto event = queue_.pop(std::chrono::milliseconds(stopping ? 0 : 200));
    if (!event) {
      if (stopping) {
        return;  // flushed
      }
      continue;
    }
    if (ns(SteadyClock::now()) < blocked_until_ns_.load(std::memory_order_relaxed)) {
      rate_limited_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    auto id = sentry::new_event_id();
    auto envelope = sentry::build_envelope(meta_, *event, id, std::chrono::system_clock::now());
    Answer a = deliver(envelope);
    if (auto delay = sentry::rate_limit_delay(a.status, a.retry_after, a.rate_limits)) {
      blocked_until_ns_.store(ns(SteadyClock::now() + *delay), std::memory_order_relaxed);
    }
    if (a.ok) {
      sent_.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard lock(status_mu_);
      last_ok_ = true;
      continue;
    }
    if (a.status == 429) {
      rate_limited_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    failed_.fetch_add(1, std::memory_order_relaxed);
    note_failure(a.error.empty() ? "HTTP " + std::to_string(a.status) : a.error);
  }
}

void SentryReporter::note_failure(const std::string& why) {
  {
    std::lock_guard lock(status_mu_);
    last_ok_ = false;
    last_error_ = why;
  }
  // One line per 10 s at most: a Sentry outage during an upstream outage must not flood the log.
  auto now = SteadyClock::now();
  if (now - last_failure_log_ < std::chrono::seconds(10) &&
      last_failure_log_ != SteadyClock::time_point{}) {
    ++failures_unlogged_;
    return;
  }
  last_failure_log_ = now;
  std::string extra = "\"error\":";
  ghttp::append_json_string(extra, why);
  extra += ",\"dsn\":";
  ghttp::append_json_string(extra, meta_.dsn);
  extra += fmt::format(",\"failures_not_logged\":{}", failures_unlogged_);
  failures_unlogged_ = 0;
  logs_.error(spdlog::level::warn, "sentry delivery failed", extra);
}

namespace {

// Beast 1.81's streams take no `deferred` token: use_awaitable here (off the request path).
constexpr auto tuple_awaitable = net::as_tuple(net::use_awaitable);

template <class Stream>
net::awaitable<error_code> exchange(Stream& stream, http::request<http::string_body>& req,
                                    http::response<http::string_body>& res) {
  auto [wec, wn] = co_await http::async_write(stream, req, tuple_awaitable);
  if (wec) {
    co_return wec;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);
  auto [rec, rn] = co_await http::async_read(stream, buffer, parser, tuple_awaitable);
  if (rec) {
    co_return rec;
  }
  res = parser.release();
  co_return error_code{};
}

}  // namespace

// One envelope, one connection, on an io_context of this call: run_for(timeout) bounds it all
// (resolve, connect, TLS, request, answer); what is unfinished then is abandoned with the context.
SentryReporter::Answer SentryReporter::deliver(const std::string& envelope) {
  Answer out;
  bool finished = false;
  http::request<http::string_body> req{http::verb::post, dsn_.envelope_path(), 11};
  std::string host = dsn_.host.find(':') != std::string::npos ? "[" + dsn_.host + "]" : dsn_.host;
  if (dsn_.port != (dsn_.https ? 443 : 80)) {
    host += ":" + std::to_string(dsn_.port);
  }
  req.set(http::field::host, host);
  req.set(http::field::user_agent, meta_.client);
  req.set(http::field::content_type, "application/x-sentry-envelope");
  req.set("X-Sentry-Auth", auth_);
  req.set(http::field::connection, "close");
  req.body() = envelope;
  req.prepare_payload();
  http::response<http::string_body> res;
  std::optional<ssl::context> tls;
  if (dsn_.https) {
    tls.emplace(ssl::context::tls_client);
    tls->set_default_verify_paths();
    tls->set_verify_mode(ssl::verify_peer);
  }

  auto task = [&](net::io_context& ioc) -> net::awaitable<void> {
    tcp::resolver resolver(ioc);
    auto [rec, results] =
        co_await resolver.async_resolve(dsn_.host, std::to_string(dsn_.port), tuple_awaitable);
    if (rec) {
      out.error = "resolve " + dsn_.host + ": " + rec.message();
      co_return;
    }
    error_code ec;
    if (!tls) {
      tcp::socket socket(ioc);
      auto [cec, ep] = co_await net::async_connect(socket, results, tuple_awaitable);
      if (cec) {
        out.error = "connect: " + cec.message();
        co_return;
      }
      ec = co_await exchange(socket, req, res);
    } else {
      ssl::stream<tcp::socket> stream(ioc, *tls);
      if (!SSL_set_tlsext_host_name(stream.native_handle(), dsn_.host.c_str())) {
        out.error = "TLS: bad server name";
        co_return;
      }
      stream.set_verify_callback(ssl::host_name_verification(dsn_.host));
      auto [cec, ep] = co_await net::async_connect(stream.next_layer(), results, tuple_awaitable);
      if (cec) {
        out.error = "connect: " + cec.message();
        co_return;
      }
      auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, tuple_awaitable);
      if (hec) {
        out.error = "TLS handshake: " + hec.message();
        co_return;
      }
      ec = co_await exchange(stream, req, res);
    }
    if (ec) {
      out.error = ec.message();
      co_return;
    }
    out.status = res.result_int();
    out.ok = out.status / 100 == 2;
    out.retry_after = std::string(res[http::field::retry_after]);
    out.rate_limits = std::string(res["X-Sentry-Rate-Limits"]);
  };
  {
    // Declared after everything the coroutine refers to: destroyed (with an unfinished
    // coroutine's frame) first.
    net::io_context ioc{1};
    net::co_spawn(ioc, task(ioc), [&](std::exception_ptr e) {
      finished = true;
      if (e) {
        out.error = "internal error";
      }
    });
    ioc.run_for(settings_.timeout);
  }
  if (!finished) {
    out = Answer{};
    out.error = "timed out";
  }
  return out;
}

void SentryReporter::render_metrics(std::string& out) const {
  fmt::format_to(
      std::back_inserter(out),
      "# HELP gatehouse_sentry_events_total Upstream failures reported to Sentry, by outcome: "
      "sent, dropped (queue full or drain), failed (delivery error), rate_limited (by Sentry).\n"
      "# TYPE gatehouse_sentry_events_total counter\n"
      "gatehouse_sentry_events_total{{result=\"sent\"}} {}\n"
      "gatehouse_sentry_events_total{{result=\"dropped\"}} {}\n"
      "gatehouse_sentry_events_total{{result=\"failed\"}} {}\n"
      "gatehouse_sentry_events_total{{result=\"rate_limited\"}} {}\n"
      "# HELP gatehouse_sentry_queue Events waiting for delivery.\n"
      "# TYPE gatehouse_sentry_queue gauge\ngatehouse_sentry_queue {}\n",
      sent_.load(), dropped_.load(), failed_.load(), rate_limited_.load(), queue_.size());
}

observability::ComponentReport SentryReporter::health() const {
  nlohmann::json details{{"dsn", meta_.dsn},         {"environment", meta_.environment},
                         {"sent", sent_.load()},     {"dropped", dropped_.load()},
                         {"failed", failed_.load()}, {"rate_limited", rate_limited_.load()},
                         {"queue", queue_.size()},   {"max_queue", queue_.capacity()}};
  std::lock_guard lock(status_mu_);
  if (!last_ok_) {
    details["last_error"] = last_error_;
  }
  return observability::ComponentReport{
      last_ok_ ? observability::Status::ok : observability::Status::degraded, std::move(details)};
}

void report_upstream_failure(Worker& w, const pipeline::Context& x, sentry::Failure failure,
                             unsigned status, std::string_view message, std::string_view body,
                             bool body_complete) {
  auto* reporter = w.gw.sentry();
  if (reporter == nullptr || !reporter->sampled() || !reporter->accepts()) {
    return;
  }
  const bool development = x.cfg.environment == config::Environment::development;
  sentry::Event e;
  e.failure = failure;
  e.time = std::chrono::system_clock::now();
  e.message = std::string(sentry::failure_name(failure)) + ": " + std::string(message);
  e.status = status;
  e.method = std::string(x.method);
  e.url = x.tls ? "https://" : "http://";
  e.url += x.host.empty() ? std::string_view("-") : x.host;
  e.url += x.path.empty() ? std::string_view("/") : x.path;
  auto redacted = ghttp::redact_target(x.target);
  if (auto q = redacted.find('?'); q != std::string::npos) {
    e.query = redacted.substr(q + 1);
  }
  if (x.route_config != nullptr) {
    e.route = x.route_config->name;
    e.upstream = x.route_config->upstream;
  }
  e.request_id = x.request_id;
  const auto& hasher = w.gw.hasher();
  e.client = hasher.enabled() || development ? hasher(x.client_ip) : std::string("[Filtered]");
  e.upstream_address = x.upstream_address;
  if (x.request != nullptr) {
    for (const auto& f : *x.request) {
      std::string_view name(f.name_string().data(), f.name_string().size());
      std::string_view value(f.value().data(), f.value().size());
      bool hide = ghttp::is_secret_header(name) || (!development && is_address_header(name));
      // Other values go through the free-text redaction: a Referer (or X-Original-URL) can carry
      // a reset link's ?token=...
      e.headers.emplace_back(std::string(name), hide ? std::string("[Filtered]")
                                                     : ghttp::redact_text(value.substr(0, 1024)));
      if (e.headers.size() >= 64) {
        break;
      }
    }
  }
  if (!body.empty() && sentry::looks_like_traceback(body)) {
    std::size_t cap = filters::errors::settings(x.cfg).log_body;
    e.body = ghttp::redact_text(body.substr(0, cap));
    e.body_truncated = body.size() > cap || !body_complete;
  }
  reporter->submit(std::move(e));
}

}  // namespace gatehouse::server
