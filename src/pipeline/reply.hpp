#pragma once
// How filters answer a request themselves: they fill Context::reply and return Next::Reply. Every
// gatehouse-made error has the one JSON shape of http/error_reply.hpp.
#include <string>
#include <string_view>

#include "http/error_reply.hpp"
#include "pipeline/context.hpp"

namespace gatehouse::pipeline {

// A JSON document (health endpoints, redirects). A body left unread closes the connection after.
inline Next json_reply(Context& ctx, unsigned status, std::string body) {
  ctx.reply.status = status;
  ctx.reply.body = std::move(body);
  ctx.reply.head_only = ctx.head_request;
  ctx.reply.close = ctx.reply.close || ctx.body_pending;
  return Next::Reply;
}

// The standard error reply for `status`; `detail` is shown in development only. `close`: the
// connection closes after it (a body left unread, a request that cannot be trusted to end where
// the parser thinks, a body too slow or too large).
inline Next error_reply(Context& ctx, unsigned status, bool close, std::string_view detail = {}) {
  ctx.reply.status = status;
  ctx.reply.body =
      ghttp::error_body(ghttp::reply_for_status(status), ctx.request_id,
                        ctx.cfg.environment == config::Environment::development, detail);
  ctx.reply.head_only = false;
  ctx.reply.close = close;
  ctx.reply.error = true;
  return Next::Reply;
}

// A refusal that tells the client when to come back (the upstream's circuit breaker is open, every
// target is out): the JSON error with retry_after, and a Retry-After header.
inline Next retry_later_reply(Context& ctx, unsigned status, std::string_view code,
                              std::string_view message, std::int64_t retry_after_s, bool close) {
  ctx.reply.status = status;
  ctx.reply.body = ghttp::error_body(code, message, retry_after_s, ctx.request_id);
  ctx.reply.headers = "Retry-After: " + std::to_string(retry_after_s) + "\r\n";
  ctx.reply.head_only = ctx.head_request;
  ctx.reply.close = close;
  ctx.reply.error = true;
  return Next::Reply;
}

}  // namespace gatehouse::pipeline
