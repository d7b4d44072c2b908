// Async jobs (issue 13): the session's branch for requests on async and hybrid routes. The body
// is read whole (jobs.max_body), the request is stored durably, and only then is 202 sent; in
// hybrid mode (or with `Prefer: respond-async, wait=N`) the first attempt runs at once on this
// worker and its response is answered when it comes in time.
#include <sys/socket.h>

#include <cerrno>

#include "filters/jobs/filter.hpp"
#include "http/canonical_path.hpp"
#include "http/fields.hpp"
#include "http/json.hpp"
#include "jobs/await_store.hpp"
#include "server/jobs.hpp"
#include "upstream/relay.hpp"

namespace gatehouse::server {
namespace {

namespace fj = filters::jobs;

constexpr std::size_t kMaxIdempotencyKey = 255;

std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

net::awaitable<bool> reply(Worker& w, ClientConn& c, FilterChain& chain, Context& x) {
  co_await send_reply(w, c, chain, x);
  co_return x.client_keep_alive;
}

void accepted_reply(Context& x, const gjobs::Job& job, const fj::Settings& s, bool preference) {
  pipeline::json_reply(x, 202, fj::accepted_body(job, s.path));
  x.reply.headers = "Location: " + s.path + "/" + job.id +
                    "\r\nRetry-After: " + std::to_string(fj::poll_after_seconds(job, now_ms())) +
                    "\r\n";
  if (preference) {
    x.reply.headers += "Preference-Applied: respond-async\r\n";
  }
}

void error_json(Context& x, unsigned status, std::string_view code, std::string_view message) {
  pipeline::json_reply(x, status, ghttp::error_body(code, message, 0, x.request_id));
  x.reply.error = true;
}

}  // namespace

net::awaitable<bool> serve_job_request(Worker& w, ClientConn& c, FilterChain& chain,
                                       RequestParser& p, Context& x) {
  const auto& route = x.cfg.routes[x.route];
  const auto& req = p.get();
  fj::Preference prefer;
  for (const auto& f : req) {
    if (ghttp::iequals(sv(f.name_string()), "Prefer")) {
      prefer.add(sv(f.value()));
    }
  }
  const fj::Acceptance how = fj::decide(route.mode, route.hybrid_wait, prefer);
  if (how.kind == fj::Acceptance::Kind::proxy || w.jobs == nullptr) {
    co_return co_await proxy_request(w, c, chain, p, x);
  }
  JobsService& service = w.gw.jobs_service();
  const auto& s = fj::settings(x.cfg);
  if (w.draining) {
    // No new job while draining: another instance (or this one's successor) takes it.
    pipeline::retry_later_reply(x, 503, "draining", "This instance is shutting down; retry.", 1,
                                p.chunked() || p.content_length().value_or(0) > 0);
    co_return co_await reply(w, c, chain, x);
  }

  // The body, whole, before any job exists: larger than max_body is 413 at once.
  const bool has_body = p.chunked() || p.content_length().value_or(0) > 0;
  if (p.content_length() && *p.content_length() > s.max_body) {
    service.count_refused(413);
    co_await send_local_reply(w, c, chain, x, 413, true, "larger than jobs.max_body");
    co_return false;
  }
  std::string body;
  if (has_body) {
    if (ghttp::iequals(sv(req[http::field::expect]), "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      auto wrote = co_await write_all(c.stream, c.deadline, x.cfg.limits.idle_timeout,
                                      net::buffer(kContinue));
      if (wrote.ec) {
        co_return false;
      }
    }
    upstream::ReplayBuffer kept(s.max_body);
    const Framing framing = p.chunked() ? Framing::chunked : Framing::length;
    auto read = co_await upstream::read_request_body(
        w.buffers, {c.stream, c.deadline, c.buffer},
        {p, framing, x.cfg.limits, x.start, x.bytes_in, &kept});
    if (read != upstream::SendResult::ok) {
      if (read == upstream::SendResult::client_failed) {
        co_return false;
      }
      const unsigned status = read == upstream::SendResult::too_slow    ? 408
                              : read == upstream::SendResult::too_large ? 413
                                                                        : 400;
      if (status == 413) {
        service.count_refused(413);
      }
      co_await send_local_reply(w, c, chain, x, status, true,
                                status == 413 ? "larger than jobs.max_body" : "");
      co_return false;
    }
    body.assign(kept.data().data(), kept.data().size());
  }
  x.body_pending = false;  // read: the connection may carry another request

  auto key = ghttp::trim_ows(sv(req["Idempotency-Key"]));
  if (key.size() > kMaxIdempotencyKey) {
    error_json(x, 400, "invalid_idempotency_key", "Idempotency-Key is longer than 255 characters.");
    co_return co_await reply(w, c, chain, x);
  }

  gjobs::Job job;
  job.id = fj::new_job_id();
  if (job.id.empty()) {
    pipeline::retry_later_reply(x, 503, "job_store_unavailable",
                                "No job id could be made; try again shortly.", 1, false);
    co_return co_await reply(w, c, chain, x);
  }
  job.owner = fj::owner_of(x, service.owner_hasher());
  job.route = route.name;
  job.request_id = x.request_id;
  job.client_ip = x.client_ip;
  job.idempotency_key = key;
  job.request.method = sv(req.method_string());
  const auto target = sv(req.target());
  job.request.target = std::string(upstream_path(x.cfg, x)) +
                       std::string(target.substr(ghttp::target_path(target).size()));
  for (const auto& f : req) {
    auto name = sv(f.name_string());
    if (fj::keeps_request_field(name, x.cfg.request_id.header)) {
      job.request.headers.emplace_back(std::string(name), std::string(sv(f.value())));
    }
  }
  // What build_upstream_head would send as X-Forwarded-*: the same chain for a job as for the
  // request proxied (a trusted proxy's list, then the peer), whatever attempt sends it. The
  // request id and Idempotency-Key are added when the job is sent.
  std::string forwarded_for;
  append_forwarded_for(x.cfg, c.peer_ip, x.identity, forwarded_for);
  job.request.headers.emplace_back("X-Forwarded-For", std::move(forwarded_for));
  job.request.headers.emplace_back("X-Forwarded-Proto",
                                   std::string(forwarded_proto(x.identity, c.stream.tls())));
  const auto host = forwarded_host(x.identity, sv(req[http::field::host]));
  if (!host.empty()) {
    job.request.headers.emplace_back("X-Forwarded-Host", std::string(host));
  }
  job.request_digest = fj::request_digest(job.request.method, job.request.target, body);
  job.request.body = std::move(body);
  job.max_attempts = static_cast<int>(s.retry.attempts);
  job.created_at = job.updated_at = job.run_at = now_ms();

  const bool run_here = how.kind == fj::Acceptance::Kind::wait;
  const auto lease = job_lease(x.cfg.upstreams[route.upstream_index]);
  gjobs::Job copy = run_here ? job : gjobs::Job{};
  auto result = co_await gjobs::await_store<gjobs::EnqueueResult>(
      [&](auto cb) { service.store().enqueue(std::move(job), run_here, lease, std::move(cb)); });

  if (result.status == gjobs::StoreStatus::unavailable) {
    service.count_refused(503);
    pipeline::retry_later_reply(x, 503, "job_store_unavailable",
                                "The job store cannot take the request; try again shortly.", 5,
                                false);
    co_return co_await reply(w, c, chain, x);
  }
  if (result.status == gjobs::StoreStatus::full) {
    service.count_refused(503);
    pipeline::retry_later_reply(x, 503, "job_queue_full",
                                "Too many jobs are queued; try again later.", 10, false);
    co_return co_await reply(w, c, chain, x);
  }
  using Idem = gjobs::EnqueueResult::Idempotency;
  if (result.idempotency == Idem::mismatch) {
    error_json(x, 422, "idempotency_key_reused",
               "This Idempotency-Key was used with a different request.");
    co_return co_await reply(w, c, chain, x);
  }
  if (result.idempotency == Idem::in_progress) {
    error_json(x, 409, "idempotency_key_in_use",
               "A request with this Idempotency-Key is still being accepted; retry shortly.");
    x.reply.headers = "Retry-After: 1\r\n";
    co_return co_await reply(w, c, chain, x);
  }
  if (result.idempotency == Idem::existing && result.job) {
    // The same request again: the same job, and once it is done the same response.
    const gjobs::Job& existing = *result.job;
    if (gjobs::final_state(existing.state) && existing.response) {
      fj::stored_reply(x, *existing.response);
    } else {
      accepted_reply(x, existing, s, how.preference_applied);
    }
    co_return co_await reply(w, c, chain, x);
  }
  service.count_accepted();
  if (!run_here) {
    gjobs::Job shown;
    shown.id = result.job ? result.job->id : copy.id;
    shown.state = gjobs::State::queued;
    accepted_reply(x, result.job ? *result.job : shown, s, how.preference_applied);
    co_return co_await reply(w, c, chain, x);
  }
  // The first attempt, here and now; the client waits for it at most how.wait.
  copy.state = gjobs::State::running;
  copy.attempts = 1;
  auto waiter = std::make_shared<AttemptWaiter>(w.ioc.get_executor());
  waiter->timer.expires_after(how.wait);
  w.jobs->run(copy, waiter);
  // A client that leaves while it waits ends the wait (and its connection) at once; the attempt
  // goes on as the job it already is. Readable with nothing to read is EOF or a reset; bytes (a
  // pipelined request, a TLS alert) say nothing and end the watch, so such a client is noticed
  // only when the reply is written.
  auto gone = std::make_shared<bool>(false);
  c.deadline.disarm();  // the read's deadline would cancel the watch (the wait is bounded itself)
  tcp::socket& client = c.socket();
  client.async_wait(tcp::socket::wait_read, [gone, waiter, &client](error_code ec) {
    if (ec || waiter->done || *gone) {
      return;
    }
    char probe;
    const ssize_t n = ::recv(client.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      *gone = true;
      waiter->timer.cancel();
    }
  });
  co_await waiter->timer.async_wait(nothrow);
  if (!*gone) {
    *gone = true;  // the watch, if it still runs, finds the wait over
    error_code ignore;
    client.cancel(ignore);
  } else {
    co_return false;  // nothing to answer: the job is the client's to poll, if it comes back
  }
  if (waiter->done && gjobs::final_state(waiter->job.state) && waiter->job.response) {
    // The upstream's response as it came (its own Location, if any, is the app's to give).
    fj::stored_reply(x, *waiter->job.response);
    co_return co_await reply(w, c, chain, x);
  }
  accepted_reply(x, waiter->done ? waiter->job : copy, s, how.preference_applied);
  co_return co_await reply(w, c, chain, x);
}

}  // namespace gatehouse::server
