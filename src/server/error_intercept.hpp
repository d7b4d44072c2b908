#pragma once
// Error masking (`errors.intercept`): an upstream error page (a traceback, an HTML 502) is
// replaced by gatehouse's JSON error with the upstream's status, and its body goes to the error
// log, truncated and redacted, with the request id. Called once by proxy_request after the
// response head is read.
#include "server/exchange.hpp"
#include "upstream/connection.hpp"
#include "upstream/relay.hpp"

namespace gatehouse::server {

struct InterceptOutcome {
  bool replied = false;            // the client got the JSON error; the upstream body is consumed
  bool upstream_reusable = false;  // the body ended within errors::kMaxReadBytes on a keep-alive
  bool client_keep_alive = false;
};

// When errors.intercept applies to the response head in `rp`, reads the body (up to
// errors::kMaxReadBytes), logs it and answers the client; otherwise does nothing (replied false).
net::awaitable<InterceptOutcome> intercept_upstream_error(
    Worker& w, ClientConn& c, FilterChain& chain, Context& x, upstream::Connection& u,
    ResponseParser& rp, Framing body_framing, Clock::duration upstream_timeout, bool head_request);

}  // namespace gatehouse::server
