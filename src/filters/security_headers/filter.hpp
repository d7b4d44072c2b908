#pragma once
// Security headers in the chain: the upstream's Server and X-Powered-By (and, with `force`, every
// header we set) are dropped, and our lines are added to every response, proxied or local. The
// header set itself is security_headers::SecurityHeaders, built once and shared by every worker.
#include "filters/security_headers/security_headers_filter.hpp"
#include "pipeline/context.hpp"

namespace gatehouse::filters::security_headers {

class SecurityHeadersFilter {
 public:
  template <class Services>
  explicit SecurityHeadersFilter(Services& s) : headers_(s.security_headers) {}

  bool strips(std::string_view name) const { return headers_.strips(name); }

  void encode_headers(pipeline::Context& ctx, pipeline::ResponseHead& head) const {
    // A cached answer gets what its miss got: the app's own lines win (stored ones count).
    if (head.local() && !head.stored()) {
      headers_.append_local(head.lines, ctx.tls);
      return;
    }
    headers_.append(head.lines, ctx.tls, [&](std::string_view name) {
      return !headers_.strips(name) && head.upstream_has(name);
    });
  }

 private:
  const SecurityHeaders& headers_;
};

}  // namespace gatehouse::filters::security_headers
