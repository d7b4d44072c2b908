#pragma once
// The end of every exchange: one access-log line (JSON) and the request metrics. Last in the
// chain, so the line sees what every other filter decided.
#include <chrono>
#include <string>

#include "observability/access_batch.hpp"
#include "observability/metrics.hpp"
#include "pipeline/context.hpp"

namespace gatehouse::filters::access_log {

// The JSON line for one exchange (shared with requests that never reached the chain).
void append_access_line(std::string& line, const pipeline::Context& ctx,
                        const observability::ClientIpHasher& hasher, std::int64_t duration_us);

class AccessLogFilter {
 public:
  template <class Services>
  explicit AccessLogFilter(Services& s)
      : metrics_(s.metrics),
        none_route_(s.none_route),
        route_slots_(s.route_slots),
        batch_(s.access_batch),
        hasher_(s.hasher) {}

  void on_complete(pipeline::Context& ctx) {
    auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(pipeline::Clock::now() - ctx.start)
            .count();
    metrics_.record_request(ctx.routed() ? route_slots_[ctx.route] : none_route_, ctx.status, us);
    if (!batch_.enabled()) {
      return;
    }
    thread_local std::string line;  // reused: no allocation per request
    line.clear();
    append_access_line(line, ctx, hasher_, us);
    batch_.add(line);
  }

 private:
  observability::WorkerMetrics& metrics_;
  std::size_t none_route_;
  const std::size_t* route_slots_;  // route index -> metrics slot (series are keyed by name)
  observability::AccessBatch& batch_;
  const observability::ClientIpHasher& hasher_;
};

}  // namespace gatehouse::filters::access_log
