#pragma once
// One line of the security log for a request a filter refused or found malformed, when its event
// type is on (log.security_events) and its sample admits it (log.security_sample).
#include <chrono>
#include <string>
#include <string_view>

#include "http/json.hpp"
#include "observability/logging.hpp"
#include "observability/security_events.hpp"
#include "pipeline/context.hpp"

namespace gatehouse::pipeline {

// `event` is the line's name (kept from before log.security_events: "malformed_request" for
// bad_request, "cors_preflight_denied" for cors_denied); `key` samples instead of the client
// (a rate-limit key) and is written when given.
inline void log_security(observability::SecurityEvents& events,
                         const observability::ClientIpHasher& hasher, const Context& ctx,
                         config::SecurityEvent type, std::string_view event,
                         std::string_view reason, std::string_view key = {}) {
  if (!events.enabled(type) ||
      !events.admit(type, key.empty() ? std::string_view(ctx.client_ip) : key,
                    std::chrono::steady_clock::now())) {
    return;
  }
  std::string line;
  line.reserve(256);
  line += "{\"time\":\"";
  observability::append_timestamp(line);
  line += "\",\"type\":\"security\",\"event\":";
  ghttp::append_json_string(line, event);
  line += ",\"client_ip\":";
  ghttp::append_json_string(line, hasher(ctx.client_ip));
  line += ",\"reason\":";
  ghttp::append_json_string(line, reason);
  if (!key.empty()) {
    line += ",\"key\":";
    ghttp::append_json_string(line, key);
  }
  if (ctx.route_config != nullptr) {
    line += ",\"route\":";
    ghttp::append_json_string(line, ctx.route_config->name);
  }
  if (!ctx.path.empty()) {
    line += ",\"path\":";
    ghttp::append_json_string(line, ctx.path);
  }
  line += ",\"request_id\":";
  ghttp::append_json_string(line, ctx.request_id);
  line += '}';
  events.write(line);
}

}  // namespace gatehouse::pipeline
