#pragma once
// CORS in the chain: preflights are answered here (204 or 403; never forwarded, never rate
// limited), and every other response, proxied or local, gets the actual-response lines. The
// policy itself is cors::Cors (cors_filter.hpp), pure and shared by every worker.
#include "filters/cors/cors_filter.hpp"
#include "pipeline/reply.hpp"
#include "pipeline/security_log.hpp"

namespace gatehouse::filters::cors {

class CorsFilter {
 public:
  template <class Services>
  explicit CorsFilter(Services& s) : cors_(s.cors), events_(s.security_events), hasher_(s.hasher) {}

  pipeline::Next decode_headers(pipeline::Context& ctx) {
    if (!cors_.enabled() || ctx.request->method() != pipeline::http::verb::options) {
      return pipeline::Next::Continue;
    }
    auto result =
        cors_.preflight(ctx.method, ctx.origin, ctx.header("Access-Control-Request-Method"),
                        ctx.header("Access-Control-Request-Headers"), ctx.reply.headers);
    if (result.kind == Preflight::not_preflight) {
      ctx.reply.headers.clear();
      return pipeline::Next::Continue;  // an OPTIONS request for the app
    }
    preflight_ = true;  // its reply carries the preflight lines already
    if (result.kind == Preflight::allowed) {
      ctx.reply.status = 204;
      ctx.reply.head_only = true;
      ctx.reply.close = ctx.body_pending;
      return pipeline::Next::Reply;
    }
    pipeline::log_security(events_, hasher_, ctx, config::SecurityEvent::cors_denied,
                           "cors_preflight_denied", result.reason);
    ctx.reply.status = 403;
    ctx.reply.body =
        pipeline::ghttp::error_body({403, kDeniedCode, result.reason}, ctx.request_id,
                                    ctx.cfg.environment == config::Environment::development);
    ctx.reply.close = ctx.body_pending;
    ctx.reply.error = true;
    return pipeline::Next::Reply;
  }

  // gatehouse's answer replaces the app's Access-Control-* fields.
  bool strips(std::string_view name) const { return cors_.strips(name); }

  void encode_headers(pipeline::Context& ctx, pipeline::ResponseHead& head) const {
    if (!preflight_) {
      cors_.append_actual(ctx.origin, head.lines);
    }
  }

 private:
  const Cors& cors_;
  observability::SecurityEvents& events_;
  const observability::ClientIpHasher& hasher_;
  bool preflight_ = false;
};

}  // namespace gatehouse::filters::cors
