#pragma once
// Routing as a step of the chain: the first route whose host, methods and path (prefix, exact or
// template) match the canonical path (core/router.hpp), else 404. Filters after this one see
// Context::route.
#include "core/router.hpp"
#include "pipeline/reply.hpp"

namespace gatehouse::filters::route {

class RouteFilter {
 public:
  template <class Services>
  explicit RouteFilter(Services& s) : router_(s.router) {}

  pipeline::Next decode_headers(pipeline::Context& ctx) const {
    auto route = router_.match(ctx.method, ctx.path, ctx.host, ctx.path_params);
    if (!route) {
      return pipeline::error_reply(ctx, 404, ctx.body_pending);
    }
    ctx.route = *route;
    ctx.route_config = &ctx.cfg.routes[*route];
    return pipeline::Next::Continue;
  }

 private:
  const core::Router& router_;
};

}  // namespace gatehouse::filters::route
