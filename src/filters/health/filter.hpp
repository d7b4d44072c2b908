#pragma once
// The public health endpoints (health.live_path, ready_path, summary_path), answered before any
// access rule or route: load balancers and orchestrators probe them. /health/detailed is on the
// admin listener only.
#include "observability/health.hpp"
#include "pipeline/reply.hpp"

namespace gatehouse::filters::health {

class HealthFilter {
 public:
  template <class Services>
  explicit HealthFilter(Services& s) : health_(s.health), draining_(s.draining) {}

  pipeline::Next decode_headers(pipeline::Context& ctx) const {
    const auto& cfg = ctx.cfg.health;
    const auto verb = ctx.request->method();
    if (verb != pipeline::http::verb::get && verb != pipeline::http::verb::head) {
      return pipeline::Next::Continue;
    }
    if (ctx.path == cfg.live_path) {
      return pipeline::json_reply(ctx, 200, R"({"status":"ok"})");
    }
    if (ctx.path == cfg.ready_path) {
      bool ready = health_.ready() && !draining_;
      return pipeline::json_reply(
          ctx, ready ? 200 : 503,
          ready ? R"({"status":"ready"})"
                : (health_.draining() || draining_ ? R"({"status":"draining"})"
                                                   : R"({"status":"unavailable"})"));
    }
    if (ctx.path == cfg.summary_path) {
      auto s = health_.summary();
      return pipeline::json_reply(ctx, observability::Health::is_down(s) ? 503 : 200,
                                  observability::Health::to_json_text(s));
    }
    return pipeline::Next::Continue;
  }

 private:
  observability::Health& health_;
  const bool& draining_;
};

}  // namespace gatehouse::filters::health
