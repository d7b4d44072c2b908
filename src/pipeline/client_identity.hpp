#pragma once
// Reads a request's forwarding field lines out of Beast for the pure rules in http/forwarding.
// Used by the session (client ip, HSTS) and the upstream head, so both apply the same rules.
#include <string_view>

#include "config/config.hpp"
#include "http/forwarding.hpp"
#include "pipeline/request.hpp"

namespace gatehouse::pipeline {

struct ClientIdentity {
  ghttp::ForwardingLines lines;  // empty unless the peer is trusted
  ghttp::Forwarding forwarding;
};

inline void collect_lines(const Request& req, std::string_view name,
                          std::vector<std::string_view>& out) {
  auto range = req.equal_range(beast::string_view(name.data(), name.size()));
  for (auto it = range.first; it != range.second; ++it) {
    out.emplace_back(it->value().data(), it->value().size());
  }
}

// `peer_ip`: the connection's peer, or the client a PROXY protocol header named.
inline ClientIdentity identify_client(const config::Config& cfg, std::string_view peer_ip,
                                      const Request& req) {
  ClientIdentity out;
  // Nothing is read from an untrusted peer: no allocation on the common path.
  if (ghttp::is_trusted(peer_ip, cfg.trusted_proxies)) {
    if (cfg.forwarded_headers == ghttp::ForwardedHeaders::x_forwarded) {
      collect_lines(req, "X-Forwarded-For", out.lines.x_forwarded_for);
      collect_lines(req, "X-Forwarded-Proto", out.lines.x_forwarded_proto);
      collect_lines(req, "X-Forwarded-Host", out.lines.x_forwarded_host);
    } else {
      collect_lines(req, "Forwarded", out.lines.forwarded);
    }
  }
  out.forwarding =
      ghttp::resolve_forwarding(peer_ip, out.lines, cfg.trusted_proxies, cfg.forwarded_headers);
  return out;
}

}  // namespace gatehouse::pipeline
