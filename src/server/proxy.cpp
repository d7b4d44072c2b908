// Upstream side of a request: plan, pick a target, send, relay. The heads are built here (the
// upstream request head and the client response head); the bytes move in src/upstream (relay.*),
// targets and connections come from the route's upstream::Cluster, and whether a failed try is
// tried again is upstream::RetryPolicy's call.
#include <array>

#include "http/fields.hpp"
#include "http/json.hpp"
#include "http/request_id.hpp"
#include "pipeline/client_identity.hpp"
#include "pipeline/reply.hpp"
#include "server/exchange.hpp"
#include "upstream/relay.hpp"
#include "upstream/retry_policy.hpp"

namespace gatehouse::server {
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
  if (id.forwarding.trusted_peer) {
    auto chain = ghttp::upstream_forwarded_for(id.lines, cfg.forwarded_headers);
    if (!chain.empty()) {
      out += chain;
      out += ", ";
    }
  }
  out += peer_ip;
  out += kCrlf;
  out += "X-Forwarded-Proto: ";
  out += !id.forwarding.proto.empty() ? std::string_view(id.forwarding.proto)
                                      : std::string_view(tls ? "https" : "http");
  out += kCrlf;
  auto host = !id.forwarding.host.empty() ? std::string_view(id.forwarding.host)
                                          : sv(req[http::field::host]);
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
  ResponseHead head{res.result_int(), &res, out};
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
  upstream::RetryInput::Body body;
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
      // The body is streamed, not kept (no ReplayBuffer yet): a request with one is not replayed.
      .body = has_body ? upstream::RetryInput::Body::not_kept : upstream::RetryInput::Body::none,
      .idempotent = upstream::idempotent_method(sv(req.method_string())),
      .idempotency_key = req.count("Idempotency-Key") > 0,
  };
}

}  // namespace

net::awaitable<bool> proxy_request(Worker& w, ClientConn& c, FilterChain& chain, RequestParser& p,
                                   Context& x) {
  const auto& route = w.cfg.routes[x.route];
  auto& cluster = *w.clusters[route.upstream_index];
  const auto& ucfg = cluster.config();
  auto& stats = w.metrics.upstreams[route.upstream_index];
  const Plan plan = make_plan(p);
  const bool has_body = plan.framing != Framing::none;
  bool expect_continue = plan.expect_continue;
  const upstream::ClientSide client{c.stream, c.deadline, c.buffer};
  const upstream::RetryPolicy retry_policy;

  std::string& head = c.upstream_head;
  build_upstream_head(w.cfg, c.peer_ip, c.stream.tls(), x.identity, p, upstream_path(w.cfg, x),
                      x.request_id, plan.framing, head);

  // The circuit breaker: while open, a 503 at once; half-open, a few probes pass. Closed costs
  // one relaxed load.
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

  std::optional<ResponseParser> rp;
  upstream::reset_response_parser(rp, plan.head_request);
  std::unique_ptr<upstream::Connection> u;
  Clock::time_point upstream_start{};
  bool fresh = false;
  for (int tries = 1;; ++tries) {
    // Pick a target (and a connection to it).
    auto acquired = co_await cluster.acquire(fresh, x.request_id);
    if (!acquired.conn) {
      if (acquired.unavailable) {
        // Every target is out: nothing was tried, so nothing for the breaker to learn.
        if (probe) {
          shared->breaker()->release_probe();
        }
        pipeline::retry_later_reply(x, 503, "upstream_unavailable",
                                    "No upstream server is available; try again later.",
                                    acquired.retry_after_s, has_body);
        co_await send_reply(w, c, chain, x);
        co_return x.client_keep_alive;
      }
      cluster.report(upstream::UpstreamHealth::kNoTarget, upstream::TryOutcome::connect_failure,
                     probe, Clock::now(), x.request_id);
      stats.failures.add();
      co_await send_local_reply(w, c, chain, x, acquired.status, has_body, acquired.detail);
      co_return x.client_keep_alive;
    }
    u = std::move(acquired.conn);
    x.upstream_address = cluster.address(u->target);
    upstream_start = Clock::now();
    if (expect_continue) {
      expect_continue = false;
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      if ((co_await write_all(c.stream, c.deadline, w.cfg.limits.idle_timeout,
                              net::buffer(kContinue)))
              .ec) {
        co_return false;
      }
    }
    // Send the request.
    auto sent = co_await upstream::send_request(
        w.buffers, client, *u, ucfg.timeout, head,
        {p, plan.framing, w.cfg.limits, x.start, x.bytes_in, nullptr});
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
    error_code ec = sent.ec;
    if (!ec) {
      ec = co_await upstream::read_response_head(*u, rp, ucfg.timeout, plan.head_request);
    }
    if (!ec) {
      cluster.report(u->target,
                     rp->get().result_int() >= 500 ? upstream::TryOutcome::http_5xx
                                                   : upstream::TryOutcome::success,
                     probe, upstream_start, x.request_id);
      break;
    }
    // The try failed before a response head: the retry policy says whether to try again.
    auto failure = upstream::classify_head_failure(ec);
    auto decision = retry_policy.decide({.tries = tries,
                                         .failure = failure,
                                         .reused_connection = u->reused,
                                         .wrote_any = sent.wrote_any,
                                         .body = plan.body,
                                         .idempotent = plan.idempotent,
                                         .idempotency_key = plan.idempotency_key});
    // A reused keep-alive connection the upstream had closed says nothing about the target.
    if (!(decision.retry && u->reused)) {
      cluster.report(u->target,
                     failure == upstream::TryFailure::timed_out ? upstream::TryOutcome::timeout
                                                                : upstream::TryOutcome::reset,
                     probe, upstream_start, x.request_id);
    }
    if (decision.retry) {
      stats.retries.add();
      upstream::reset_response_parser(rp, plan.head_request);
      fresh = decision.fresh_connection;
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
    x.upstream_ms =
        std::chrono::duration<double, std::milli>(Clock::now() - upstream_start).count();
    co_await send_local_reply(w, c, chain, x, timed_out ? 504 : 502,
                              has_body && sent.result != upstream::SendResult::ok, detail);
    co_return x.client_keep_alive;
  }

  // Relay the response.
  auto framing = upstream::response_framing(*rp, plan.head_request, plan.client_http10);
  bool keep = x.client_keep_alive && !w.draining && framing.out != Framing::until_close;
  x.client_keep_alive = keep;
  x.status = rp->get().result_int();
  build_client_head(chain, *rp, x, framing.out, plan.client_http10, keep, c.scratch);
  upstream::BodyObserver observer;
  BodyPieces pieces{chain, x};
  if constexpr (FilterChain::kObservesBody) {
    observer = {&BodyPieces::call, &pieces};
  }
  auto relay = co_await upstream::relay_response(
      w.buffers, client, *u, c.scratch,
      {*rp, framing, ucfg.timeout, w.cfg.limits.idle_timeout, x.bytes_out, observer});
  x.upstream_ms = std::chrono::duration<double, std::milli>(Clock::now() - upstream_start).count();
  if (relay.upstream_ec) {
    bool timed_out = relay.upstream_ec == beast::error::timeout;
    if (timed_out) {
      stats.timeouts.add();
    }
    stats.failures.add();
    if (!relay.head_sent) {
      // Nothing reached the client yet: it gets a clear 502/504 instead of an empty reply.
      log_upstream_failure(w, x, "upstream failed before the response body", relay.upstream_ec);
      x.status = 0;
      co_await send_local_reply(
          w, c, chain, x, timed_out ? 504 : 502, false,
          "response from " + x.upstream_address + " cut off: " + relay.upstream_ec.message());
      co_return x.client_keep_alive;
    }
    // The head is out: closing the connection is the only way to show the client the truncation.
    log_upstream_failure(w, x, "upstream response cut off", relay.upstream_ec);
    x.upstream_error = relay.upstream_ec.message();
    co_return false;
  }
  if (relay.upstream_reusable && framing.in != Framing::until_close && !w.draining) {
    cluster.release(std::move(u));
  }
  co_return keep&& relay.client_ok;
}

}  // namespace gatehouse::server
