#include "http/error_reply.hpp"

#include "http/json.hpp"

namespace gatehouse::http {

LocalReply reply_for_status(unsigned status) {
  switch (status) {
    case 400:
      return {400, "bad_request", "The request is malformed."};
    case 403:
      return {403, "forbidden", "Access denied."};
    case 404:
      return {404, "not_found", "No route matches this request."};
    case 408:
      return {408, "request_timeout", "The request was not received in time."};
    case 413:
      return {413, "payload_too_large", "The request body is too large."};
    case 414:
      return {414, "uri_too_long", "The request URI is too long."};
    case 431:
      return {431, "request_header_fields_too_large", "The request headers are too large."};
    case 502:
      return {502, "bad_gateway", "The upstream service could not be reached."};
    case 503:
      return {503, "service_unavailable", "The service is temporarily unavailable."};
    case 504:
      return {504, "gateway_timeout", "The upstream service did not answer in time."};
    default:
      return {status, status >= 500 ? "internal_error" : "error", "The request failed."};
  }
}

std::string error_body(const LocalReply& reply, std::string_view request_id, bool development,
                       std::string_view detail) {
  std::string out;
  out.reserve(128 + detail.size());
  out += "{\"error\":";
  append_json_string(out, reply.code);
  out += ",\"message\":";
  append_json_string(out, reply.message);
  out += ",\"request_id\":";
  append_json_string(out, request_id);
  if (development && !detail.empty()) {
    out += ",\"detail\":";
    append_json_string(out, detail);
  }
  out += '}';
  return out;
}

std::string error_body(std::string_view code, std::string_view message, std::int64_t retry_after_s,
                       std::string_view request_id) {
  std::string out;
  out.reserve(160);
  out += "{\"error\":";
  append_json_string(out, code);
  out += ",\"message\":";
  append_json_string(out, message);
  out += ",\"retry_after\":";
  out += std::to_string(retry_after_s);
  out += ",\"request_id\":";
  append_json_string(out, request_id);
  out += '}';
  return out;
}

}  // namespace gatehouse::http
