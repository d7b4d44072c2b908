#pragma once
// The pure half of the deep dependency checks (health.checks): a check's result, the disk check
// (statvfs, a plain syscall), the HTTP status line and expectations, and the JSON each check
// shows in /health/detailed. Probing over the network is server/dependency_checks.*.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace gatehouse::observability {

struct CheckResult {
  bool ok = false;
  double latency_ms = 0;
  std::string error;       // why it failed; empty when ok
  std::string checked_at;  // RFC 3339 time of the probe
};

// Free space of the file system holding `path` against `min_free` bytes.
CheckResult probe_disk(const std::string& path, std::uint64_t min_free);

// The status code of an HTTP/1.x status line ("HTTP/1.1 200 OK"), or none.
std::optional<unsigned> parse_status_line(std::string_view line);
// Whether an http check's answer counts as healthy: listed, or 200-399 when nothing is listed.
bool expected_status(const std::vector<unsigned>& expect, unsigned status);

// What /health/detailed shows for one check (the component "check:<name>"): status, kind,
// target (a Redis URL's password masked), latency_ms, error, checked_at.
nlohmann::json check_json(const config::DependencyCheck& check, const CheckResult& r);

}  // namespace gatehouse::observability
