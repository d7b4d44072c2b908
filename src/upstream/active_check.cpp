#include "upstream/active_check.hpp"

namespace gatehouse::upstream {

std::string check_request(const config::HealthCheckConfig& cfg, std::string_view target_address,
                          std::string_view version) {
  std::string out;
  out.reserve(128 + cfg.path.size());
  out += "GET ";
  out += cfg.path;
  out += " HTTP/1.1\r\nHost: ";
  out += cfg.host.empty() ? target_address : std::string_view(cfg.host);
  out += "\r\nUser-Agent: gatehouse-health-check/";
  out += version;
  out += "\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  return out;
}

std::optional<unsigned> parse_status_line(std::string_view received) {
  auto eol = received.find("\r\n");
  if (eol == std::string_view::npos) {
    // A line that cannot be a status line however it ends is not worth waiting for.
    if ((received.size() >= 8 && received.substr(0, 5) != "HTTP/") ||
        received.size() > kMaxStatusLine) {
      return 0u;
    }
    return std::nullopt;
  }
  auto line = received.substr(0, eol);
  // "HTTP/1.x SSS" then a space and a reason (possibly empty) or the end of the line.
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ' ||
      (line.size() > 12 && line[12] != ' ')) {
    return 0u;
  }
  unsigned status = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') {
      return 0u;
    }
    status = status * 10 + static_cast<unsigned>(line[i] - '0');
  }
  return status >= 100 && status <= 599 ? status : 0u;
}

bool status_expected(const config::HealthCheckConfig& cfg, unsigned status) {
  for (const auto& r : cfg.expect) {
    if (status >= r.lo && status <= r.hi) {
      return true;
    }
  }
  return false;
}

Hysteresis::Change Hysteresis::record(bool passed) {
  if (passed) {
    failures_ = 0;
    ++passes_;
    if (!healthy_ && passes_ >= healthy_after_) {
      healthy_ = true;
      return Change::became_healthy;
    }
    return Change::none;
  }
  passes_ = 0;
  ++failures_;
  if (healthy_ && failures_ >= unhealthy_after_) {
    healthy_ = false;
    return Change::became_unhealthy;
  }
  return Change::none;
}

}  // namespace gatehouse::upstream
