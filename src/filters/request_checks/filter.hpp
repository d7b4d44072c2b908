#pragma once
// The checks a parsed head must pass before any rule judges it (pipeline/request_checks.hpp: what
// Beast's parser does not enforce), and the canonical path every later filter compares
// (http/canonical_path.hpp). A refused request gets 400 (or 414, 501, ...) and a closed connection.
#include <string>

#include "pipeline/reply.hpp"
#include "pipeline/request_checks.hpp"
#include "pipeline/security_log.hpp"

namespace gatehouse::filters::request_checks {

class RequestChecksFilter {
 public:
  template <class Services>
  explicit RequestChecksFilter(Services& s) : events_(s.security_events), hasher_(s.hasher) {}

  pipeline::Next decode_headers(pipeline::Context& ctx) const {
    std::string why;
    if (unsigned status = pipeline::validate_head(ctx.cfg.limits, *ctx.parser, why); status != 0) {
      pipeline::log_security(events_, hasher_, ctx, config::SecurityEvent::bad_request,
                             "malformed_request", why);
      return pipeline::error_reply(ctx, status, true, why);
    }
    ctx.raw_path = pipeline::ghttp::target_path(ctx.target);
    ctx.canonical = pipeline::ghttp::canonical_target_path(ctx.target, ctx.cfg.paths.merge_slashes);
    if (!ctx.canonical.reason.empty()) {
      pipeline::log_security(events_, hasher_, ctx, config::SecurityEvent::bad_request,
                             "malformed_request", ctx.canonical.reason);
      return pipeline::error_reply(ctx, 400, true, ctx.canonical.reason);
    }
    ctx.path = ctx.canonical.view(ctx.raw_path);
    return pipeline::Next::Continue;
  }

 private:
  observability::SecurityEvents& events_;
  const observability::ClientIpHasher& hasher_;
};

}  // namespace gatehouse::filters::request_checks
