#include "observability/dependency_checks.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "config/health_checks.hpp"
#include "redis/url.hpp"

namespace gatehouse::observability {

CheckResult probe_disk(const std::string& path, std::uint64_t min_free) {
  CheckResult r;
  struct statvfs st {};
  if (statvfs(path.c_str(), &st) != 0) {
    r.error = path + ": " + std::strerror(errno);
    return r;
  }
  std::uint64_t free_bytes = static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
  if (free_bytes < min_free) {
    r.error = "free space " + std::to_string(free_bytes) + " bytes is below min_free " +
              std::to_string(min_free);
    return r;
  }
  r.ok = true;
  return r;
}

std::optional<unsigned> parse_status_line(std::string_view line) {
  if (!line.starts_with("HTTP/1.") || line.size() < 12 || line[8] != ' ') {
    return std::nullopt;
  }
  unsigned code = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') {
      return std::nullopt;
    }
    code = code * 10 + static_cast<unsigned>(line[i] - '0');
  }
  if (line.size() > 12 && line[12] != ' ' && line[12] != '\r') {
    return std::nullopt;
  }
  return code >= 100 ? std::optional<unsigned>(code) : std::nullopt;
}

bool expected_status(const std::vector<unsigned>& expect, unsigned status) {
  if (expect.empty()) {
    return status >= 200 && status < 400;
  }
  return std::find(expect.begin(), expect.end(), status) != expect.end();
}

nlohmann::json check_json(const config::DependencyCheck& check, const CheckResult& r) {
  std::string target = check.target;
  if (check.kind == config::DependencyCheck::Kind::redis) {
    redis::Url url;
    std::string error;
    if (redis::parse_url(check.target, url, error)) {
      target = url.redacted();
    }
  }
  nlohmann::json j = {
      {"status", r.ok ? "ok" : "down"},
      {"kind", std::string(config::check_kind_name(check.kind))},
      {"target", target},
      {"latency_ms",
       static_cast<double>(static_cast<std::int64_t>(r.latency_ms * 100 + 0.5)) / 100},
      {"error", r.error},
      {"checked_at", r.checked_at}};
  if (check.kind == config::DependencyCheck::Kind::disk) {
    j["min_free_bytes"] = check.min_free;
  }
  return j;
}

}  // namespace gatehouse::observability
