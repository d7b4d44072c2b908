#pragma once
// listen_tls.redirect_http: a routed request that did not come over https gets 308 to the same
// host and target on the TLS port (308 keeps the method and body, unlike 301). "Over https" is
// Context::tls, the nearest trusted proxy's word when there is one: behind a proxy that
// terminated TLS, judging by the connection would loop.
#include <string>

#include "core/router.hpp"
#include "pipeline/reply.hpp"

namespace gatehouse::filters::tls_redirect {

class TlsRedirectFilter {
 public:
  template <class Services>
  explicit TlsRedirectFilter(Services& s)
      : enabled_(s.cfg.listen_tls && s.cfg.listen_tls->redirect_http), port_(s.tls_port) {}

  pipeline::Next decode_headers(pipeline::Context& ctx) const {
    if (!enabled_ || ctx.tls) {
      return pipeline::Next::Continue;
    }
    auto host = core::host_without_port(ctx.host);
    if (host.empty()) {
      // No host to redirect to (HTTP/1.0 without Host, or an empty Host).
      return pipeline::error_reply(ctx, 400, true, "https redirect needs a Host header");
    }
    std::string location = "https://";
    location += host;
    if (port_ != 443) {
      location += ':';
      location += std::to_string(port_);
    }
    location += ctx.target;
    std::string body = R"({"error":"https_required","message":)";
    pipeline::ghttp::append_json_string(body, "Use HTTPS: " + location);
    body += '}';
    ctx.reply.headers = "Location: " + location + "\r\n";
    return pipeline::json_reply(ctx, 308, std::move(body));
  }

 private:
  bool enabled_;
  std::uint16_t port_;
};

}  // namespace gatehouse::filters::tls_redirect
