#pragma once
// The one JSON shape for every reply gatehouse makes itself (Envoy's sendLocalReply idea):
// {"error": "<code>", "message": "...", "request_id": "..."} plus "detail" in development only.
#include <cstdint>
#include <string>
#include <string_view>

namespace gatehouse::http {

struct LocalReply {
  unsigned status = 500;
  std::string_view code;     // machine-readable, e.g. "bad_gateway"
  std::string_view message;  // human-readable, safe for production
};

// The canonical reply for a status gatehouse emits (400, 404, 413, 414, 431, 502, 503, 504, ...).
LocalReply reply_for_status(unsigned status);

// `detail` is included only when `development` is true and `detail` is non-empty; it may hold
// internal addresses and error texts, which production must never show.
std::string error_body(const LocalReply& reply, std::string_view request_id, bool development,
                       std::string_view detail = {});

// Rejections that tell the client when to come back (429, ban 403):
// {"error":..., "message":..., "retry_after":N, "request_id":...}.
std::string error_body(std::string_view code, std::string_view message, std::int64_t retry_after_s,
                       std::string_view request_id);

}  // namespace gatehouse::http
