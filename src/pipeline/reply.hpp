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

}  // namespace gatehouse::pipeline
