#pragma once
// One line of the security log for a request a filter refused or found malformed.
#include <string>
#include <string_view>

#include "http/json.hpp"
#include "observability/logging.hpp"
#include "pipeline/context.hpp"

namespace gatehouse::pipeline {

inline void log_security(observability::Logs& logs, const observability::ClientIpHasher& hasher,
                         const Context& ctx, std::string_view event, std::string_view reason) {
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
  line += ",\"request_id\":";
  ghttp::append_json_string(line, ctx.request_id);
  line += '}';
  logs.security(line);
}

}  // namespace gatehouse::pipeline
