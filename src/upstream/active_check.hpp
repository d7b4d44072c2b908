#pragma once
// The pure parts of the active HTTP health check (upstream/health_checker.* does the I/O): the
// request it sends, how it reads the status line, which statuses pass, and the hysteresis that
// turns single results into a healthy/unhealthy verdict.
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace gatehouse::upstream {

// "GET <path> HTTP/1.1" with Host (the check's host, else the target's address), a User-Agent
// naming gatehouse and Connection: close.
std::string check_request(const config::HealthCheckConfig& cfg, std::string_view target_address,
                          std::string_view version);

// The status of a response whose status line is complete in `received` ("HTTP/1.1 200 OK\r\n"),
// 0 when the line is complete but not a valid status line (or longer than kMaxStatusLine bytes
// without its end), nullopt while it is incomplete.
inline constexpr std::size_t kMaxStatusLine = 1024;
std::optional<unsigned> parse_status_line(std::string_view received);

bool status_expected(const config::HealthCheckConfig& cfg, unsigned status);

// Consecutive check results -> a verdict that changes only after `unhealthy_after` failures in a
// row (while healthy) or `healthy_after` passes in a row (while unhealthy). A target starts
// healthy: it takes traffic from the start, and a dead one is out after unhealthy_after intervals.
class Hysteresis {
 public:
  enum class Change { none, became_healthy, became_unhealthy };
  Hysteresis(unsigned healthy_after, unsigned unhealthy_after)
      : healthy_after_(healthy_after), unhealthy_after_(unhealthy_after) {}

  Change record(bool passed);
  bool healthy() const { return healthy_; }
  unsigned passes() const { return passes_; }      // in a row
  unsigned failures() const { return failures_; }  // in a row

 private:
  unsigned healthy_after_;
  unsigned unhealthy_after_;
  bool healthy_ = true;
  unsigned passes_ = 0;
  unsigned failures_ = 0;
};

}  // namespace gatehouse::upstream
