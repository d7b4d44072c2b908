#pragma once
// The three log streams (access, error, security) on one asynchronous spdlog thread pool. Workers
// only format a line and enqueue it; when the queue is full the oldest line is dropped and counted,
// so logging never blocks a worker. File sinks are re-opened on request (SIGUSR1, logrotate).
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace spdlog::details {
class thread_pool;
}

namespace gatehouse::observability {

class Logs {
 public:
  // Throws std::runtime_error naming the file when a log file cannot be opened.
  explicit Logs(const config::LogConfig& cfg);
  ~Logs();
  Logs(const Logs&) = delete;
  Logs& operator=(const Logs&) = delete;

  bool access_enabled() const { return access_ != nullptr; }
  void access(std::string_view json_line);
  void security(std::string_view json_line);

  // {"time":..,"type":"error","level":..,"message":.., <extra_json_fields>}
  // `extra` is either empty or a sequence of `"key":value` pairs without braces.
  void error(spdlog::level::level_enum level, std::string_view message,
             std::string_view extra = {});
  bool should_log(spdlog::level::level_enum level) const;

  void reopen();  // asynchronous: each file sink reopens before its next write
  void flush();
  std::uint64_t dropped() const;

  const config::LogConfig& config() const { return cfg_; }

 private:
  std::shared_ptr<spdlog::logger> make(const std::string& name, const std::string& dest);

  config::LogConfig cfg_;
  std::shared_ptr<spdlog::details::thread_pool> pool_;
  std::shared_ptr<spdlog::logger> access_, error_, security_;
  std::shared_ptr<std::atomic<unsigned>> reopen_generation_;
  spdlog::level::level_enum level_;
};

// "2026-11-23T10:00:00.123Z" for the current time; cached per second per thread.
void append_timestamp(std::string& out);

// Log-safe client identity: the address itself, or the first 32 hex chars of
// HMAC-SHA256(key, ip) when hashing is on.
class ClientIpHasher {
 public:
  ClientIpHasher(bool enabled, std::string key);
  std::string operator()(std::string_view ip) const;
  bool enabled() const { return enabled_; }

 private:
  bool enabled_;
  std::string key_;
};

}  // namespace gatehouse::observability
