#pragma once
// Allow/deny rules by client network: the top-level `access` rules before anything else is
// decided (AccessFilter), and a route's own rules once the route is known (RouteAccessFilter).
// The client is the believed one (trusted proxies applied). A refusal is a 403 and a security-log
// line.
#include "http/cidr.hpp"
#include "pipeline/reply.hpp"
#include "pipeline/security_log.hpp"

namespace gatehouse::filters::access {

inline bool admitted_by(const config::AccessRules& rules, const std::string& client_ip) {
  if (rules.empty()) {
    return true;
  }
  auto ip = pipeline::ghttp::parse_ip(client_ip);
  return ip && rules.admits(*ip);
}

class AccessFilter {
 public:
  template <class Services>
  explicit AccessFilter(Services& s) : events_(s.security_events), hasher_(s.hasher) {}

  pipeline::Next decode_headers(pipeline::Context& ctx) const {
    if (admitted_by(ctx.cfg.access, ctx.client_ip)) {
      return pipeline::Next::Continue;
    }
    pipeline::log_security(events_, hasher_, ctx, config::SecurityEvent::access_denied,
                           "access_denied", "access rules");
    return pipeline::error_reply(ctx, 403, ctx.body_pending);
  }

 private:
  observability::SecurityEvents& events_;
  const observability::ClientIpHasher& hasher_;
};

class RouteAccessFilter {
 public:
  template <class Services>
  explicit RouteAccessFilter(Services& s) : events_(s.security_events), hasher_(s.hasher) {}

  pipeline::Next decode_headers(pipeline::Context& ctx) const {
    if (admitted_by(ctx.route_config->access, ctx.client_ip)) {
      return pipeline::Next::Continue;
    }
    pipeline::log_security(events_, hasher_, ctx, config::SecurityEvent::access_denied,
                           "access_denied", "route access rules");
    return pipeline::error_reply(ctx, 403, ctx.body_pending);
  }

 private:
  observability::SecurityEvents& events_;
  const observability::ClientIpHasher& hasher_;
};

}  // namespace gatehouse::filters::access
