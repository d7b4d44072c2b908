#pragma once
// Per-request state shared by the session (client side) and the proxy (upstream side), and the
// I/O helpers both use. Internal to src/server.
#include <optional>
#include <string>

#include "http/canonical_path.hpp"
#include "io/http_io.hpp"
#include "pipeline/client_identity.hpp"
#include "pipeline/context.hpp"
#include "pipeline/request_checks.hpp"
#include "server/filter_chain.hpp"
#include "server/worker.hpp"

namespace gatehouse::server {

using pipeline::ClientIdentity;
using pipeline::Context;
using pipeline::Request;
using pipeline::RequestParser;
using pipeline::ResponseHead;
using pipeline::status_for_parse_error;
using pipeline::validate_head;

// The head of the reply in ctx.reply (a Connection: close when ctx.client_keep_alive is false),
// with every filter's lines (encode_headers).
void build_reply_head(FilterChain& chain, Context& ctx, std::string& head);

// Writes the reply a filter (or the proxy) put in ctx.reply, with every filter's response lines.
net::awaitable<void> send_reply(Worker& w, ClientConn& c, FilterChain& chain, Context& ctx);

// Sends the standard JSON error for `status` made by gatehouse itself (counted in metrics).
net::awaitable<void> send_local_reply(Worker& w, ClientConn& c, FilterChain& chain, Context& ctx,
                                      unsigned status, bool close, std::string_view detail = {});

// The head sent upstream for the request in `p`: hop-by-hop and framing fields dropped,
// X-Forwarded-*, the request id and traceparent added, and `framing` re-stated.
// `peer_ip`: the connection's peer; `tls`: whether the client connection is TLS; `path`: the path
// of the request line (upstream_path()), followed by the query as received.
void build_upstream_head(const config::Config& cfg, std::string_view peer_ip, bool tls,
                         const ClientIdentity& id, const RequestParser& p, std::string_view path,
                         std::string_view request_id, Framing framing, std::string& out);

// The X-Forwarded-For value build_upstream_head sends, appended to `out`: a trusted peer's chain
// (forwarded_headers) then `peer_ip`, else `peer_ip` alone. Jobs store it when they accept.
void append_forwarded_for(const config::Config& cfg, std::string_view peer_ip,
                          const ClientIdentity& id, std::string& out);
// The X-Forwarded-Proto value build_upstream_head sends: a trusted proxy's scheme, else this
// hop's.
inline std::string_view forwarded_proto(const ClientIdentity& id, bool tls) {
  return !id.forwarding.proto.empty() ? std::string_view(id.forwarding.proto)
                                      : std::string_view(tls ? "https" : "http");
}
// The X-Forwarded-Host value it sends (none when empty): a trusted proxy's host, else the
// request's `Host`.
inline std::string_view forwarded_host(const ClientIdentity& id, std::string_view host) {
  return !id.forwarding.host.empty() ? std::string_view(id.forwarding.host) : host;
}

// The path the upstream is sent (`paths.forward`): the canonical one or the one received.
inline std::string_view upstream_path(const config::Config& cfg, const Context& x) {
  return cfg.paths.forward == config::PathForward::canonical ? x.path : x.raw_path;
}

// Forwards the request whose head `parser` holds to the route's upstream and relays the answer.
// Returns whether the client connection may carry another request.
net::awaitable<bool> proxy_request(Worker& w, ClientConn& c, FilterChain& chain,
                                   RequestParser& parser, Context& x);

void append_date_header(std::string& out);

}  // namespace gatehouse::server
