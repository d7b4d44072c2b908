#pragma once
// Rate limiting in the chain. With the in-memory store the decision is made in decode_headers;
// with a shared store (Redis) decode_headers lays the checks out and suspends, resume() waits for
// the store (bounded by redis.timeout; at once while its breaker is open) and, when it cannot
// decide, falls back as rate_limit.on_store_failure says. The verdict's headers go on every
// response of a limited route; in-flight slots are released when the exchange ends. The limiter
// itself is rate_limit::RateLimiter (rate_limit_filter.hpp), pure and shared by every worker.
#include <string>

#include "filters/rate_limit/rate_limit_filter.hpp"
#include "filters/rate_limit/store/redis_store_net.hpp"
#include "pipeline/reply.hpp"
#include "pipeline/security_log.hpp"

namespace gatehouse::filters::rate_limit {

class RateLimitFilter {
 public:
  using Store = store::RedisStoreClient;

  template <class Services>
  explicit RateLimitFilter(Services& s)
      : limiter_(s.rate_limiter),
        store_(s.store),
        events_(s.security_events),
        hasher_(s.hasher),
        worker_(s.worker),
        on_failure_(rate_limit::settings(s.cfg).on_store_failure) {}

  pipeline::Next decode_headers(pipeline::Context& ctx) {
    if (!limiter_.route_limited(ctx.route)) {
      return pipeline::Next::Continue;
    }
    info_ = RequestInfo{ctx.route,       ctx.client_ip, ctx.path,
                        &request_header, ctx.request,   &ctx.path_params};
    if (store_ == nullptr) {
      limiter_.check(info_, worker_, verdict_);
      return verdict(ctx);
    }
    if (!limiter_.begin(info_, worker_, verdict_, true)) {
      return verdict(ctx);  // decided without the store (exempt, banned here, in-flight cap)
    }
    return pipeline::Next::Suspend;
  }

  pipeline::net::awaitable<pipeline::Next> resume(pipeline::Context& ctx) {
    const bool decided = co_await store_->decide(verdict_.store);
    if (decided) {
      limiter_.finish(info_, worker_, verdict_, true);
    } else {
      fall_back();
    }
    co_return verdict(ctx);
  }

  void encode_headers(pipeline::Context&, pipeline::ResponseHead& head) const {
    head.lines += verdict_.headers;
  }

  void on_complete(pipeline::Context&) {
    if (!verdict_.held.empty()) {
      limiter_.release(verdict_);
    }
  }

  const Verdict& verdict() const { return verdict_; }

 private:
  static std::string_view request_header(const void* request, std::string_view name) {
    const auto& req = *static_cast<const pipeline::Request*>(request);
    auto v = req[pipeline::beast::string_view(name.data(), name.size())];
    return {v.data(), v.size()};
  }

  // The store could not decide: rate_limit.on_store_failure.
  void fall_back() {
    switch (on_failure_) {
      case OnStoreFailure::local:
        if (!limiter_.refused_by_local_ban(info_, worker_, verdict_)) {
          limiter_.decide_local(verdict_);
          limiter_.finish(info_, worker_, verdict_, false);
        }
        break;
      case OnStoreFailure::allow:
        limiter_.fail_open(verdict_);
        break;
      case OnStoreFailure::deny:
        limiter_.fail_closed(verdict_);
        break;
    }
  }

  // A 429, ban 403 or store 503: the JSON error with retry_after. An unread body is not worth
  // reading: the connection closes after.
  pipeline::Next verdict(pipeline::Context& ctx) {
    if (verdict_.allowed()) {
      return pipeline::Next::Continue;
    }
    if (!verdict_.new_ban.empty() && events_.enabled(config::SecurityEvent::ban) &&
        events_.admit(config::SecurityEvent::ban, verdict_.new_ban,
                      std::chrono::steady_clock::now())) {
      std::string line;
      line.reserve(256);
      line += "{\"time\":\"";
      observability::append_timestamp(line);
      line += "\",\"type\":\"security\",\"event\":\"ban\",\"key\":";
      pipeline::ghttp::append_json_string(line, verdict_.new_ban);
      line += ",\"reason\":";
      pipeline::ghttp::append_json_string(line, verdict_.ban_reason);
      line += ",\"request_id\":";
      pipeline::ghttp::append_json_string(line, ctx.request_id);
      line += '}';
      events_.write(line);
    }
    if (verdict_.status() != 503) {  // 429 or a ban's 403: the limiter refused this client
      pipeline::log_security(events_, hasher_, ctx, config::SecurityEvent::rate_limited,
                             "rate_limited", verdict_.message);
    }
    ctx.reply.status = verdict_.status();
    ctx.reply.body = pipeline::ghttp::error_body(verdict_.code(), verdict_.message,
                                                 verdict_.retry_after_s, ctx.request_id);
    ctx.reply.head_only = ctx.head_request;
    ctx.reply.close = ctx.body_pending;
    ctx.reply.error = true;
    return pipeline::Next::Reply;
  }

  RateLimiter& limiter_;
  Store* store_;
  observability::SecurityEvents& events_;
  const observability::ClientIpHasher& hasher_;
  unsigned worker_;
  OnStoreFailure on_failure_;
  RequestInfo info_;
  Verdict verdict_;
};

}  // namespace gatehouse::filters::rate_limit
