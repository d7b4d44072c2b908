#pragma once
// The three log streams (access, error, security) on one asynchronous spdlog thread pool. Workers
// only format a line and enqueue it; when the queue is full the new lines are dropped and counted,
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

  // An exception escaped a task (a bug: the request path reports errors as values). One error
  // line naming the task, the exception and the request id when known; counted for
  // gatehouse_internal_errors_total.
  void internal_error(std::string_view task, std::string_view what,
                      std::string_view request_id = {});
  std::uint64_t internal_errors() const { return internal_errors_.load(); }

  void reopen();  // asynchronous: each file sink reopens before its next write
  void flush();
  // Lines (not queue slots: an access-log slot carries a batch of lines) dropped on a full queue.
  std::uint64_t dropped() const;

  const config::LogConfig& config() const { return cfg_; }

 private:
  std::shared_ptr<spdlog::logger> make(const std::string& name, const std::string& dest);

  config::LogConfig cfg_;
  std::shared_ptr<spdlog::details::thread_pool> pool_;
  std::shared_ptr<spdlog::logger> access_, error_, security_;
  // Enqueues `payload` (one or more lines) unless the queue is full, in which case its lines are
  // counted as dropped.
  void enqueue(spdlog::logger& logger, spdlog::level::level_enum level, std::string_view payload);

  std::shared_ptr<std::atomic<unsigned>> reopen_generation_;
  spdlog::level::level_enum level_;
  std::atomic<std::uint64_t> dropped_lines_{0};
  std::atomic<std::uint64_t> internal_errors_{0};
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
