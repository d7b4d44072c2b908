// Upstream side of a request: plan, pick a target, send, relay. The heads are built here (the
// upstream request head and the client response head); the bytes move in src/upstream (relay.*),
// targets and connections come from the route's upstream::Cluster, and whether a failed try is
// tried again is upstream::RetryPolicy's call.
#include <algorithm>
#include <array>
#include <bit>
#include <limits>

#include "http/error_reply.hpp"
#include "http/fields.hpp"
#include "http/json.hpp"
#include "http/request_id.hpp"
#include "pipeline/client_identity.hpp"
#include "pipeline/reply.hpp"
#include "server/error_intercept.hpp"
#include "server/exchange.hpp"
#include "server/sentry_reporter.hpp"
#include "server/websocket.hpp"
#include "upstream/relay.hpp"
#include "upstream/retry_policy.hpp"

namespace gatehouse::server {
namespace sentry = observability::sentry;
namespace {

constexpr std::string_view kCrlf = "\r\n";

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

// Field names listed by every Connection header of a message.
template <class Fields>
std::vector<std::string_view> connection_tokens(const Fields& fields) {
  std::vector<std::string_view> tokens;
  auto range = fields.equal_range(http::field::connection);
  for (auto it = range.first; it != range.second; ++it) {
    for (auto t : ghttp::split_tokens(sv(it->value()))) {
      tokens.push_back(t);
    }
  }
  return tokens;
}

bool skip_forwarded_field(const std::string_view name, http::field f,
                          std::span<const std::string_view> conn_tokens,
                          const std::string& request_id_header) {
  switch (f) {
    case http::field::content_length:
    case http::field::expect:
      return true;
    default:
      break;
  }
  // Forwarding headers are rebuilt below from what was believed; `Forwarded` is never sent, so
  // the app cannot read a client's own claim there.
  return ghttp::is_hop_by_hop(name) || ghttp::iequals(name, "X-Forwarded-For") ||
         ghttp::iequals(name, "X-Forwarded-Proto") || ghttp::iequals(name, "X-Forwarded-Host") ||
         ghttp::iequals(name, "Forwarded") || ghttp::iequals(name, request_id_header) ||
         ghttp::iequals(name, "traceparent") ||
         (!conn_tokens.empty() && ghttp::named_by_connection(name, conn_tokens));
}

}  // namespace

void append_forwarded_for(const config::Config& cfg, std::string_view peer_ip,
                          const ClientIdentity& id, std::string& out) {
  if (id.forwarding.trusted_peer) {
    auto chain = ghttp::upstream_forwarded_for(id.lines, cfg.forwarded_headers);
    if (!chain.empty()) {
      out += chain;
      out += ", ";
    }
  }
  out += peer_ip;
}

void build_upstream_head(const config::Config& cfg, std::string_view peer_ip, bool tls,
                         const ClientIdentity& id, const RequestParser& p, std::string_view path,
                         std::string_view request_id, Framing framing, std::string& out) {
  const auto& req = p.get();
  auto tokens = connection_tokens(req);
  out.clear();
  out += sv(req.method_string());
  out += ' ';
  auto target = sv(req.target());
  out += path;
  out += target.substr(ghttp::target_path(target).size());  // the query, unchanged
  out += " HTTP/1.1\r\n";
  for (const auto& f : req) {
    auto name = sv(f.name_string());
    if (skip_forwarded_field(name, f.name(), tokens, cfg.request_id.header)) {
      continue;
    }
    out += name;
    out += ": ";
    out += sv(f.value());
    out += kCrlf;
  }
  // From a trusted peer: its whole chain (every line, or Forwarded's for= nodes) plus the peer,
  // and the nearest proxy's scheme and host; from anyone else only what this hop saw.
  out += "X-Forwarded-For: ";
  append_forwarded_for(cfg, peer_ip, id, out);
  out += kCrlf;
  out += "X-Forwarded-Proto: ";
  out += forwarded_proto(id, tls);
  out += kCrlf;
  const auto host = forwarded_host(id, sv(req[http::field::host]));
  if (!host.empty()) {
    out += "X-Forwarded-Host: ";
    out += host;
    out += kCrlf;
  }
  out += cfg.request_id.header;
  out += ": ";
  out += request_id;
  out += "\r\ntraceparent: ";
  out += ghttp::next_traceparent(sv(req["traceparent"]), request_id, ghttp::thread_id_generator());
  out += kCrlf;
  if (framing == Framing::length) {
    out += "Content-Length: ";
    out += std::to_string(*p.content_length());
    out += kCrlf;
  } else if (framing == Framing::chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  }
  out += kCrlf;
}

namespace {

// The client's head for the upstream response in `rp`: hop-by-hop and framing fields dropped (and
// those a filter strips), `framing` re-stated, then every filter's lines (encode_headers).
void build_client_head(FilterChain& chain, const ResponseParser& rp, Context& x, Framing framing,
                       bool client_http10, bool keep_alive, std::string& out) {
  const auto& res = rp.get();
  auto tokens = connection_tokens(res);
  out.clear();
  out += "HTTP/1.1 ";
  out += std::to_string(res.result_int());
  out += ' ';
  auto reason = sv(res.reason());
  out += reason.empty() ? sv(http::obsolete_reason(res.result())) : reason;
  out += kCrlf;
  const std::size_t fields_begin = out.size();
  for (const auto& f : res) {
    auto name = sv(f.name_string());
    if (f.name() == http::field::content_length || ghttp::is_hop_by_hop(name) ||
        chain.strips(name) || (!tokens.empty() && ghttp::named_by_connection(name, tokens))) {
      continue;
    }
    out += name;
    out += ": ";
    out += sv(f.value());
    out += kCrlf;
  }
  const std::size_t fields_end = out.size();
  if (framing == Framing::length || (framing == Framing::none && rp.content_length())) {
    // HEAD and 304 keep the length the full response would have had.
    if (res.result_int() != 204 && !(res.result_int() >= 100 && res.result_int() < 200)) {
      out += "Content-Length: ";
      out += std::to_string(*rp.content_length());
      out += kCrlf;
    }
  } else if (framing == Framing::chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  }
  ResponseHead head{res.result_int(), &res, out, fields_begin, fields_end};
  chain.encode_headers(x, head);
  if (!keep_alive && !client_http10) {
    out += "Connection: close\r\n";
  } else if (keep_alive && client_http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += kCrlf;
}

void log_upstream_failure(Worker& w, const Context& x, std::string_view message,
                          const error_code& ec) {
  if (!w.gw.logs().should_log(spdlog::level::warn)) {
    return;
  }
  std::string extra = "\"request_id\":";
  ghttp::append_json_string(extra, x.request_id);
  extra += ",\"upstream\":";
  ghttp::append_json_string(extra, x.upstream_address);
  extra += ",\"error\":";
  ghttp::append_json_string(extra, ec.message());
  if (x.status != 0) {
    fmt::format_to(std::back_inserter(extra), ",\"status\":{},\"bytes_out\":{}", x.status,
                   x.bytes_out);
  }
  w.gw.logs().error(spdlog::level::warn, message, extra);
}

// Hands the relay's response body pieces to the filters that read bodies (encode_data).
struct BodyPieces {
  FilterChain& chain;
  Context& ctx;
  static void call(void* self, std::span<const char> piece, bool last) {
    auto* p = static_cast<BodyPieces*>(self);
    p->chain.encode_data(p->ctx, piece, last);
  }
};

// What the upstream side needs to know about the request, decided once before any try.
struct Plan {
  Framing framing;  // of the request body, as re-stated upstream
  bool expect_continue;
  bool head_request;
  bool client_http10;
  bool idempotent;
  bool idempotency_key;
};

Plan make_plan(const RequestParser& p) {
  const auto& req = p.get();
  Framing framing = p.chunked()                          ? Framing::chunked
                    : p.content_length().value_or(0) > 0 ? Framing::length
                                                         : Framing::none;
  const bool has_body = framing != Framing::none;
  return Plan{
      .framing = framing,
      .expect_continue = has_body && ghttp::iequals(sv(req[http::field::expect]), "100-continue"),
      .head_request = req.method() == http::verb::head,
      .client_http10 = req.version() < 11,
      .idempotent = upstream::idempotent_method(sv(req.method_string())),
      .idempotency_key = req.count("Idempotency-Key") > 0,
  };
}

// The hash balancer's key: the configured header, or the client ip when the request has none.
std::uint64_t balance_key(const config::Balance& b, const Context& x) {
  if (b.policy != config::BalancePolicy::hash) {
    return 0;
  }
  if (b.hash_on == config::HashOn::header) {
    auto v = x.header(b.header);
    if (!v.empty()) {
      return upstream::hash_key(v);
    }
  }
  return upstream::hash_key(x.client_ip);
}

// 503 upstream_busy: max_connections reached and the queue full or waited out. Retry-After 1: a
// connection frees up as soon as any request in flight ends.
void busy_reply(Context& x, bool close) {
  x.reply.status = 503;
  x.reply.body = ghttp::error_body(
      "upstream_busy", "The upstream service is at capacity; retry shortly.", 1, x.request_id);
  x.reply.headers = "Retry-After: 1\r\n";
  x.reply.head_only = x.head_request;
  x.reply.close = close;
  x.reply.error = true;
}

// --- retries (issue 12, i12-retry) ---

// A half-open probe's slot goes back unless a try reported under it: a probe that ends without
// reaching an upstream (queue full or timed out, the client left, a bad body, every target out)
// taught the breaker nothing, and a slot never given back would keep the breaker shut.
struct ProbeSlot {
  upstream::CircuitBreaker* breaker = nullptr;  // null: not a probe, or its outcome was reported
  ProbeSlot() = default;
  ProbeSlot(const ProbeSlot&) = delete;
  ProbeSlot& operator=(const ProbeSlot&) = delete;
  ~ProbeSlot() {
    if (breaker != nullptr) {
      breaker->release_probe();
    }
  }
};

// What a failed try tells target health (outlier detection, the circuit breaker): a response
// below 500 (a 429, a 2xx whose JSON does not parse) means the target is up.
upstream::TryOutcome try_outcome(const upstream::RetryInput& in) {
  switch (in.failure) {
    case upstream::TryFailure::status:
      return in.status >= 500 ? upstream::TryOutcome::http_5xx : upstream::TryOutcome::success;
    case upstream::TryFailure::invalid_json:
      return upstream::TryOutcome::success;
    case upstream::TryFailure::connect_failed:
      return upstream::TryOutcome::connect_failure;
    case upstream::TryFailure::timed_out:
      return upstream::TryOutcome::timeout;
    default:
      return upstream::TryOutcome::reset;
  }
}

bool method_listed(const config::RetryConfig& r, std::string_view method) {
  return std::find(r.methods.begin(), r.methods.end(), method) != r.methods.end();
}

// A 2xx JSON response of known length that fits the hold: its body is read whole before anything
// goes to the client, so that one that does not parse can be retried (retry.on: invalid_json).
bool holds_for_json(const ResponseParser& rp, bool head_request, std::size_t cap) {
  const auto& res = rp.get();
  unsigned status = res.result_int();
  if (head_request || status < 200 || status >= 300 || status == 204 || rp.chunked() ||
      !rp.content_length() || *rp.content_length() > cap) {
    return false;
  }
  return upstream::is_json_content_type(sv(res[http::field::content_type]));
}

void log_retry(Worker& w, const Context& x, int tries, const upstream::RetryDecision& d) {
  if (!w.gw.logs().should_log(spdlog::level::info)) {
    return;
  }
  std::string extra = "\"request_id\":";
  ghttp::append_json_string(extra, x.request_id);
  extra += ",\"upstream\":";
  ghttp::append_json_string(extra, x.upstream_address);
  fmt::format_to(std::back_inserter(extra), ",\"try\":{},\"reason\":\"{}\",\"wait_ms\":{}", tries,
                 upstream::reason_name(d.reason), d.wait.count());
  w.gw.logs().error(spdlog::level::info, "upstream retry", extra);
}

// A failure the retries could have taken but did not, and why (debug: under a failing upstream
// there is one per request).
void log_no_retry(Worker& w, const Context& x, int tries, upstream::NoRetry why) {
  if (!w.gw.logs().should_log(spdlog::level::debug)) {
    return;
  }
  std::string extra = "\"request_id\":";
  ghttp::append_json_string(extra, x.request_id);
  extra += ",\"upstream\":";
  ghttp::append_json_string(extra, x.upstream_address);
  fmt::format_to(std::back_inserter(extra), ",\"try\":{},\"why\":\"{}\"", tries,
                 upstream::why_not_name(why));
  w.gw.logs().error(spdlog::level::debug, "upstream not retried", extra);
}

// A response the client will not see (a stale copy answers instead): its body is read off when
// it is small and comes at once, so that the connection goes back to the pool; otherwise the
// connection is closed (dropped with `u`).
net::awaitable<void> discard_response(Worker& w, upstream::Cluster& cluster,
                                      std::unique_ptr<upstream::Connection> u,
                                      const ResponseParser& rp, bool head_request,
                                      Clock::duration timeout) {
  if (w.draining || !rp.keep_alive()) {
    co_return;
  }
  const unsigned status = rp.get().result_int();
  if (head_request || status == 204 || status == 304) {
    cluster.release(std::move(u));  // no body follows the head
    co_return;
  }
  if (rp.chunked() || !rp.content_length() || *rp.content_length() > io::BufferPool::kSize) {
    co_return;
  }
  auto length = static_cast<std::size_t>(*rp.content_length());
  auto ec = co_await upstream::hold_response_body(*u, length, timeout);
  if (!ec) {
    u->buffer.consume(length);
    cluster.release(std::move(u));
  }
}

}  // namespace

net::awaitable<bool> proxy_request(Worker& w, ClientConn& c, FilterChain& chain, RequestParser& p,
                                   Context& x) {
  const auto& route = x.cfg.routes[x.route];
  auto& cluster = w.cluster(x.cfg, route.upstream_index);
  const auto& ucfg = cluster.config();
  auto& stats = w.metrics.upstreams[cluster.index()];  // by unit (start-up index)
  const Plan plan = make_plan(p);
  const bool has_body = plan.framing != Framing::none;
  // A body already here (sent with the head, or read for the cache key after the session's own
  // 100 Continue) needs no 100 Continue.
  bool expect_continue = plan.expect_continue && x.buffered_body.empty();
  const upstream::ClientSide client{c.stream, c.deadline, c.buffer};
  const upstream::RetryPolicy& retry_policy = cluster.retry_policy();
  const bool retries = retry_policy.configured();
  if (retries) {
    cluster.retry_budget().on_request();
  }

  std::string& head = c.upstream_head;
  build_upstream_head(x.cfg, c.peer_ip, c.stream.tls(), x.identity, p, upstream_path(x.cfg, x),
                      x.request_id, plan.framing, head);
  // WebSocket (server/websocket.cpp): the handshake keeps its Connection and Upgrade.
  const std::string_view upgrade = websocket_upgrade(p);
  if (!upgrade.empty()) {
    add_upgrade_lines(head, upgrade);
  }

  // The circuit breaker: while open, a 503 at once (before any body is read, buffer_request or
  // not); half-open, a few probes pass. Closed costs one relaxed load.
  bool probe = false;
  auto* shared = cluster.shared();
  if (shared != nullptr && shared->breaker() != nullptr &&
      shared->breaker()->state() != upstream::CircuitBreaker::State::closed) {
    auto admission = shared->admit(Clock::now());
    if (!admission.allowed) {
      auto secs = std::max<std::int64_t>(
          1, std::chrono::ceil<std::chrono::seconds>(admission.retry_after).count());
      pipeline::retry_later_reply(x, 503, "circuit_open",
                                  "The upstream service is failing; requests are paused.", secs,
                                  has_body);
      co_await send_reply(w, c, chain, x);
      co_return x.client_keep_alive;
    }
    probe = admission.probe;
  }
  ProbeSlot probe_slot;
  if (probe) {
    probe_slot.breaker = shared->breaker();
  }

  // The request body kept for a replay (retries), or read whole first (buffer_request). Nothing
  // is allocated until a body byte is kept.
  std::optional<upstream::ReplayBuffer> replay;
  bool body_whole = false;  // replay holds the entire body: later tries send it from there
  if (has_body && route.buffer_request) {
    if (expect_continue) {
      expect_continue = false;
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      auto wrote = co_await write_all(c.stream, c.deadline, x.cfg.limits.idle_timeout,
                                      net::buffer(kContinue));
      if (wrote.ec) {
        co_return false;
      }
    }
    replay.emplace(std::numeric_limits<std::size_t>::max());  // max_body_bytes bounds it
    auto read = co_await upstream::read_request_body(
        w.buffers, client, {p, plan.framing, x.cfg.limits, x.start, x.bytes_in, &*replay});
    if (read != upstream::SendResult::ok) {
      if (read == upstream::SendResult::client_failed) {
        co_return false;
      }
      unsigned status = read == upstream::SendResult::too_slow    ? 408
                        : read == upstream::SendResult::too_large ? 413
                                                                  : 400;
      co_await send_local_reply(w, c, chain, x, status, true,
                                status == 408 ? "request body too slow" : "");
      co_return false;
    }
    body_whole = true;
  } else if (has_body && retries && ucfg.retry.buffer_body > 0 &&
             p.content_length().value_or(0) <= ucfg.retry.buffer_body &&
             (plan.idempotency_key || method_listed(ucfg.retry, sv(p.get().method_string())))) {
    // Kept only when a retry could send it: a POST without Idempotency-Key is never copied.
    replay.emplace(ucfg.retry.buffer_body, &w.buffers);
  }
  auto body_state = [&] {
    if (!has_body) {
      return upstream::RetryInput::Body::none;
    }
    return body_whole && replay->data().size() <= ucfg.retry.buffer_body
               ? upstream::RetryInput::Body::replayable
               : upstream::RetryInput::Body::not_kept;
  };

  // The route's deadline covers every try and every wait; it starts once the body is here when
  // gatehouse buffers it.
  std::optional<Clock::time_point> deadline;
  if (route.timeout.count() > 0) {
    // A request that waited for another's cache fill (issue 14) has spent part of it already.
    const auto waited = chain.get<filters::cache::CacheFilter>().waited_since();
    deadline = (waited != Clock::time_point() ? waited : Clock::now()) + route.timeout;
  }
  auto bounded = [&](Clock::duration d) -> Clock::duration {
    if (!deadline) {
      return d;
    }
    return std::clamp<Clock::duration>(*deadline - Clock::now(), Clock::duration::zero(), d);
  };
  const Clock::duration try_timeout =
      ucfg.per_try_timeout.count() > 0 ? Clock::duration(ucfg.per_try_timeout) : ucfg.timeout;

  // One report per try (outlier detection, the breaker), at the time its outcome is known. Only
  // the first try of a probe request reports as the probe.
  auto report_try = [&](std::size_t target, upstream::TryOutcome outcome) {
    cluster.report(target, outcome, probe, Clock::now(), x.request_id);
    probe = false;
    probe_slot.breaker = nullptr;
  };

  std::optional<ResponseParser> rp;
  upstream::reset_response_parser(rp, plan.head_request);
  std::unique_ptr<upstream::Connection> u;
  Clock::time_point upstream_start{};
  bool fresh = false;
  bool stale_retried = false;
  bool reported = false;      // the current try's outcome went to target health already
  bool head_arrived = false;  // the current try got a head, then its held body failed
  const upstream::Pick pick{balance_key(ucfg.balance, x), &c.socket()};
  observability::TargetStats* target_stats = nullptr;  // the current try's target
  std::size_t avoid = upstream::kNoTarget;             // the last failed try's target: offered last
  std::uint64_t refused = 0;  // targets that answered 429: never offered again
  // Asks the policy (and the budget) whether the try that just failed goes again; when it does,
  // counts and logs the retry, waits, and sets where the next try goes.
  auto retry = [&](int& tries, upstream::RetryInput in) -> net::awaitable<bool> {
    in.tries = tries;
    in.stale_retried = stale_retried;
    in.idempotent = plan.idempotent;
    in.idempotency_key = plan.idempotency_key;
    in.body = body_state();
    // Another target that did not answer 429 (the one that just did included).
    in.other_target = cluster.has_other_target(refused | (u ? upstream::target_bit(u->target) : 0));
    if (retries) {
      in.method_listed = method_listed(ucfg.retry, sv(p.get().method_string()));
      in.random = cluster.next_random();
      if (deadline) {
        in.remaining = std::chrono::duration_cast<upstream::Millis>(*deadline - Clock::now());
      }
    }
    auto d = retry_policy.decide(in);
    // The try's outcome for target health (outlier detection, circuit breaker). A reused
    // keep-alive connection the upstream had closed says nothing about the target.
    if (!(d.retry && d.reason == upstream::RetryReason::stale_connection)) {
      reported = true;
      report_try(u ? u->target : upstream::UpstreamHealth::kNoTarget, try_outcome(in));
    }
    // An open breaker stops the retries of requests admitted before it opened.
    if (d.retry && shared != nullptr && shared->breaker() != nullptr &&
        shared->breaker()->state() == upstream::CircuitBreaker::State::open) {
      log_no_retry(w, x, tries, upstream::NoRetry::circuit_open);
      co_return false;
    }
    if (!d.retry) {
      if (retries && d.why_not != upstream::NoRetry::not_listed) {
        log_no_retry(w, x, tries, d.why_not);
      }
      co_return false;
    }
    if (d.reason != upstream::RetryReason::stale_connection &&
        !cluster.retry_budget().try_spend(Clock::now())) {
      stats.retry_budget_exhausted.add();
      log_no_retry(w, x, tries, upstream::NoRetry::budget);
      co_return false;
    }
    stats.retries.add();
    stats.retry_reasons[static_cast<std::size_t>(d.reason)].add();
    log_retry(w, x, tries, d);
    if (d.reason == upstream::RetryReason::stale_connection) {
      stale_retried = true;
    } else {
      ++tries;
    }
    fresh = d.fresh_connection;
    if (d.avoid_target && u) {
      avoid = u->target;
      if (d.avoid_strictly) {
        refused |= upstream::target_bit(u->target);
      }
    }
    // A response retried instead of passed on: when its body is small and comes at once, read it
    // off so the connection serves again (a failing upstream answering 503s fast would otherwise
    // cost a connect per retry).
    const bool answered = in.failure == upstream::TryFailure::status ||
                          in.failure == upstream::TryFailure::invalid_json;
    if (u && answered && !plan.head_request && !w.draining && rp->keep_alive() && !rp->chunked() &&
        rp->content_length() && *rp->content_length() <= io::BufferPool::kSize) {
      auto length = static_cast<std::size_t>(*rp->content_length());
      auto drained = co_await upstream::hold_response_body(
          *u, length, bounded(std::min<Clock::duration>(ucfg.timeout, std::chrono::seconds(1))));
      if (!drained) {
        u->buffer.consume(length);
        cluster.release(std::move(u));
      }
    }
    u.reset();
    upstream::reset_response_parser(rp, plan.head_request);
    if (d.wait.count() > 0) {
      // A timer only on this path: the first try never has one.
      net::steady_timer timer(co_await net::this_coro::executor, d.wait);
      co_await timer.async_wait(nothrow);
    }
    co_return true;
  };

  for (int tries = 1;;) {
    // Pick a target (and a connection to it). A failed try's connection is closed first: it
    // counts against max_connections, and the retry must not queue behind it.
    u.reset();
    reported = false;
    head_arrived = false;
    x.upstream_address.clear();  // a failure reply names only a target that was tried
    auto acquired = co_await cluster.acquire(fresh, x.request_id, avoid, refused, pick);
    if (!acquired.conn) {
      if (acquired.client_gone) {
        co_return false;
      }
      if (acquired.unavailable) {
        // Every target is out: nothing was tried, so nothing for the breaker to learn (a probe's
        // slot goes back with probe_slot).
        pipeline::retry_later_reply(x, 503, "upstream_unavailable",
                                    "No upstream server is available; try again later.",
                                    acquired.retry_after_s, has_body && !body_whole);
        co_await send_reply(w, c, chain, x);
        co_return x.client_keep_alive;
      }
      if (acquired.status == 503) {
        busy_reply(x, has_body && !body_whole);
        co_await send_reply(w, c, chain, x);
        co_return x.client_keep_alive;
      }
      bool again = co_await retry(tries, {.failure = upstream::TryFailure::connect_failed});
      if (again) {
        continue;
      }
      stats.failures.add();
      report_upstream_failure(w, x, sentry::Failure::connect, acquired.status, acquired.detail);
      co_await send_local_reply(w, c, chain, x, acquired.status, has_body && !body_whole,
                                acquired.detail);
      co_return x.client_keep_alive;
    }
    u = std::move(acquired.conn);
    target_stats = stats.target(u->target);
    x.upstream_address = cluster.address(u->target);
    upstream_start = Clock::now();
    if (expect_continue) {
      expect_continue = false;
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      if ((co_await write_all(c.stream, c.deadline, x.cfg.limits.idle_timeout,
                              net::buffer(kContinue)))
              .ec) {
        co_return false;
      }
    }
    // Send the request: the body from the client as it arrives (kept for a replay when it may
    // be), or whole from what was kept.
    auto sent = co_await upstream::send_request(
        w.buffers, client, *u, bounded(ucfg.timeout), head,
        {p, plan.framing, x.cfg.limits, x.start, x.bytes_in,
         body_whole || !replay ? nullptr : &*replay, body_whole ? &*replay : nullptr});
    if (sent.result == upstream::SendResult::client_failed) {
      co_return false;
    }
    if (sent.result == upstream::SendResult::too_slow) {
      // The upstream has part of a body: that connection is not reusable (u is dropped).
      co_await send_local_reply(w, c, chain, x, 408, true, "request body too slow");
      co_return false;
    }
    if (sent.result == upstream::SendResult::too_large ||
        sent.result == upstream::SendResult::bad_body) {
      co_await send_local_reply(w, c, chain, x,
                                sent.result == upstream::SendResult::too_large ? 413 : 400, true);
      co_return false;
    }
    if (sent.result == upstream::SendResult::ok && replay && !replay->overflowed()) {
      body_whole = true;
    }
    error_code ec = sent.ec;
    if (!ec) {
      ec = co_await upstream::read_response_head(*u, rp, bounded(try_timeout), plan.head_request);
    }
    if (!ec && retries) {
      // A response the policy may want to try again instead of passing on.
      unsigned status = rp->get().result_int();
      if (status >= 429 && retry_policy.retries_status(status)) {
        upstream::RetryInput in{.failure = upstream::TryFailure::status, .status = status};
        if (status == 429 || status == 503) {
          auto value = sv(rp->get()[http::field::retry_after]);
          if (!value.empty()) {
            if (auto ra = upstream::parse_retry_after(value, std::chrono::system_clock::now())) {
              in.retry_after = std::chrono::duration_cast<upstream::Millis>(*ra);
            }
          }
        }
        bool again = co_await retry(tries, in);
        if (again) {
          continue;
        }
      } else if (retry_policy.retries_invalid_json() && tries < retry_policy.attempts() &&
                 holds_for_json(*rp, plan.head_request, ucfg.retry.buffer_body) &&
                 (plan.idempotency_key || method_listed(ucfg.retry, sv(p.get().method_string())))) {
        auto length = static_cast<std::size_t>(*rp->content_length());
        ec = co_await upstream::hold_response_body(*u, length, bounded(ucfg.timeout));
        head_arrived = static_cast<bool>(ec);
        if (!ec) {
          auto held = u->buffer.data();
          bool parses = upstream::json_parses(
              {static_cast<const char*>(held.data()), std::min(held.size(), length)});
          if (!parses) {
            bool again = co_await retry(tries, {.failure = upstream::TryFailure::invalid_json});
            if (again) {
              continue;
            }
          }
        }
      }
    }
    if (!ec) {
      if (!reported) {
        report_try(u->target, rp->get().result_int() >= 500 ? upstream::TryOutcome::http_5xx
                                                            : upstream::TryOutcome::success);
      }
      if (target_stats != nullptr) {
        target_stats->record_head(
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - upstream_start)
                .count());
      }
      break;
    }
    if (target_stats != nullptr) {
      target_stats->errors.add();
    }
    // The try failed before a response head: the retry policy says whether to try again.
    auto failure = upstream::classify_head_failure(ec);
    // A body that failed after its head is not a stale keep-alive connection: the upstream
    // answered on it.
    bool again = co_await retry(tries, {.failure = failure,
                                        .reused_connection = u->reused && !head_arrived,
                                        .wrote_any = sent.wrote_any});
    if (again) {
      continue;
    }
    bool timed_out = failure == upstream::TryFailure::timed_out;
    if (timed_out) {
      stats.timeouts.add();
    }
    stats.failures.add();
    std::string detail = (timed_out ? "no response head from " : "bad response from ") +
                         x.upstream_address + ": " + ec.message();
    log_upstream_failure(w, x, timed_out ? "upstream timeout" : "upstream failed", ec);
    report_upstream_failure(w, x, timed_out ? sentry::Failure::timeout : sentry::Failure::reset,
                            timed_out ? 504 : 502, detail);
    x.upstream_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - upstream_start).count();
    co_await send_local_reply(w, c, chain, x, timed_out ? 504 : 502,
                              has_body && !body_whole && sent.result != upstream::SendResult::ok,
                              detail);
    co_return x.client_keep_alive;
  }

  if (rp->get().result_int() == 101) {
    // A tunnel only when it answers a handshake we forwarded (server/websocket.cpp).
    bool kept = co_await relay_upgrade(w, c, chain, x, std::move(u), *rp, !upgrade.empty());
    x.upstream_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - upstream_start).count();
    co_return kept;
  }

  // Relay the response. No try follows: the kept body's buffer goes back to the pool now rather
  // than after a long stream.
  replay.reset();
  if (rp->get().result_int() >= 500 &&
      chain.get<filters::cache::CacheFilter>().stale_for_status(x, rp->get().result_int())) {
    // stale_if_error (issue 14): the app failed and an expired copy is still within the window.
    // The client gets the copy; the upstream's error body is read off (a small one that comes at
    // once: the connection serves again) or its connection closed.
    co_await discard_response(
        w, cluster, std::move(u), *rp, plan.head_request,
        bounded(std::min<Clock::duration>(ucfg.timeout, std::chrono::seconds(1))));
    x.upstream_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - upstream_start).count();
    co_await send_reply(w, c, chain, x);
    co_return x.client_keep_alive;
  }
  auto framing = upstream::response_framing(*rp, plan.head_request, plan.client_http10);
  if (rp->get().result_int() >= 400) {
    // errors.intercept: an error page becomes gatehouse's JSON error (server/error_intercept.cpp).
    auto masked = co_await intercept_upstream_error(w, c, chain, x, *u, *rp, framing.in,
                                                    ucfg.timeout, plan.head_request);
    if (masked.replied) {
      x.upstream_ms =
          std::chrono::duration<double, std::milli>(Clock::now() - upstream_start).count();
      if (masked.upstream_reusable && !w.draining) {
        cluster.release(std::move(u));
      }
      co_return masked.client_keep_alive;
    }
  }
  if (rp->get().result_int() >= 500) {
    report_upstream_failure(w, x, sentry::Failure::status_5xx, rp->get().result_int(),
                            "upstream answered " + std::to_string(rp->get().result_int()) +
                                " from " + x.upstream_address);
  }
  bool keep = x.client_keep_alive && !w.draining && framing.out != Framing::until_close;
  x.client_keep_alive = keep;
  x.status = rp->get().result_int();
  build_client_head(chain, *rp, x, framing.out, plan.client_http10, keep, c.scratch);
  upstream::BodyObserver observer;
  BodyPieces pieces{chain, x};
  if constexpr (FilterChain::kObservesBody) {
    if (chain.wants_body(x)) {
      observer = {&BodyPieces::call, &pieces};
    }
  }
  auto relay = co_await upstream::relay_response(
      w.buffers, client, *u, c.scratch,
      {*rp, framing, ucfg.timeout, x.cfg.limits.idle_timeout, x.bytes_out, observer,
       deadline.value_or(Clock::time_point::max())});
  x.upstream_ms = std::chrono::duration<double, std::milli>(Clock::now() - upstream_start).count();
  if (relay.upstream_ec) {
    if (target_stats != nullptr) {
      target_stats->errors.add();
    }
    bool timed_out = relay.upstream_ec == beast::error::timeout;
    if (timed_out) {
      stats.timeouts.add();
    }
    stats.failures.add();
    if (!relay.head_sent) {
      // Nothing reached the client yet: it gets a clear 502/504 instead of an empty reply.
      log_upstream_failure(w, x, "upstream failed before the response body", relay.upstream_ec);
      report_upstream_failure(
          w, x, timed_out ? sentry::Failure::timeout : sentry::Failure::reset,
          timed_out ? 504 : 502,
          "response from " + x.upstream_address + " cut off: " + relay.upstream_ec.message());
      x.status = 0;
      co_await send_local_reply(
          w, c, chain, x, timed_out ? 504 : 502, false,
          "response from " + x.upstream_address + " cut off: " + relay.upstream_ec.message());
      co_return x.client_keep_alive;
    }
    // The head is out: closing the connection is the only way to show the client the truncation.
    log_upstream_failure(w, x, "upstream response cut off", relay.upstream_ec);
    report_upstream_failure(
        w, x, timed_out ? sentry::Failure::timeout : sentry::Failure::reset, x.status,
        "response from " + x.upstream_address + " cut off: " + relay.upstream_ec.message());
    x.upstream_error = relay.upstream_ec.message();
    co_return false;
  }
  if (relay.upstream_reusable && framing.in != Framing::until_close && !w.draining) {
    cluster.release(std::move(u));
  }
  co_return keep&& relay.client_ok;
}

}  // namespace gatehouse::server
