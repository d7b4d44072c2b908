#pragma once
// Upstream failures to Sentry (errors.sentry). Workers build a small Event from the request's
// context and push it into a bounded queue without waiting (a full or contended queue drops and
// counts); one thread of its own, with its own io_context, sends each as an envelope over Beast
// (OpenSSL, certificate verified, for https DSNs), honours Sentry's rate limits, logs failures at
// a bounded rate and shows them in /health/detailed. Nothing here runs on a worker but submit().
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "filters/errors/config.hpp"
#include "observability/health.hpp"
#include "observability/logging.hpp"
#include "observability/sentry.hpp"
#include "pipeline/context.hpp"

namespace gatehouse::server {

class Worker;

class SentryReporter {
 public:
  // `dsn` must parse (checked at load).
  SentryReporter(const filters::errors::SentrySettings& settings, const std::string& version,
                 observability::Logs& logs);
  ~SentryReporter();
  SentryReporter(const SentryReporter&) = delete;
  SentryReporter& operator=(const SentryReporter&) = delete;

  void start();
  // Sends what is queued for at most `bound`, then stops the thread (drain).
  void stop(std::chrono::milliseconds bound);

  // Worker side: whether this failure is reported (sample_rate), then the push. An event that
  // would be dropped (full queue, Sentry's rate limit in force) is counted without being built.
  bool sampled() const;
  bool accepts();
  void submit(observability::sentry::Event&& event);

  void render_metrics(std::string& out) const;
  observability::ComponentReport health() const;

 private:
  struct Answer;
  void run();
  Answer deliver(const std::string& envelope);
  void note_failure(const std::string& why);

  filters::errors::SentrySettings settings_;
  observability::sentry::Dsn dsn_;
  observability::sentry::EnvelopeMeta meta_;
  std::string auth_;
  observability::Logs& logs_;
  observability::sentry::Queue queue_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::int64_t> stop_by_ns_{0};  // steady clock; sending stops past it
  std::atomic<std::uint64_t> sent_{0}, dropped_{0}, failed_{0}, rate_limited_{0};
  // Delivery thread only.
  std::atomic<std::int64_t> blocked_until_ns_{0};  // steady clock; written by the thread
  std::chrono::steady_clock::time_point last_failure_log_{};
  std::uint64_t failures_unlogged_ = 0;
  // Read by /health/detailed (admin thread).
  mutable std::mutex status_mu_;
  bool last_ok_ = true;
  std::string last_error_;
};

// Reports one upstream failure of the request in `x` when errors.sentry is on (no-op otherwise).
// `body` is the upstream's error page (intercepted), attached when it looks like a traceback.
void report_upstream_failure(Worker& w, const pipeline::Context& x,
                             observability::sentry::Failure failure, unsigned status,
                             std::string_view message, std::string_view body = {},
                             bool body_complete = true);

}  // namespace gatehouse::server
