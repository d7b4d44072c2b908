#pragma once
// One background exchange with an upstream, whole: a request held in memory is sent through a
// worker's Cluster (so its pool, max_connections queue, circuit breaker, passive health, outlier
// detection and re-resolved targets apply as for proxied requests), and the response is read
// whole, up to a cap, into memory. No client is involved: async jobs (issue 13) run their
// attempts with it, and a cache refresh can too. A reused keep-alive connection the upstream had
// closed is retried once on a fresh one (nothing was processed); any other failure is returned,
// classified, for the caller's retry policy.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/net.hpp"
#include "upstream/cluster.hpp"

namespace gatehouse::upstream {

struct FetchRequest {
  // The complete request head: request line, fields (Content-Length for a body), blank line.
  std::string_view head;
  std::string_view body;
  std::string_view request_id;                 // logs and target-health reports
  Clock::duration timeout;                     // the response head's wait, and each body read
  std::size_t max_response = 8 * 1024 * 1024;  // body bytes kept; more fails as too_large
  bool head_request = false;                   // a HEAD: the response has no body
};

enum class FetchFailure : std::uint8_t {
  none,            // a response, whole
  connect_failed,  // no target accepted a connection (nothing was sent)
  timed_out,       // no response head (or a body read stalled) within the timeout
  reset,           // the connection failed before the whole response arrived
  too_large,       // the body passed max_response
  busy,            // max_connections reached and the queue full or waited out
  unavailable,     // every target is out, or the circuit breaker is open
};
const char* fetch_failure_name(FetchFailure f);

struct FetchResult {
  FetchFailure failure = FetchFailure::none;
  unsigned status = 0;
  std::vector<std::pair<std::string, std::string>> fields;  // as received, in order
  std::string body;                                         // decoded (chunked) and whole
  std::string address;                                      // the target tried, if any
  std::string detail;                                       // why it failed, for logs
  std::int64_t retry_after_s = 0;                           // busy / unavailable: when again
};

io::net::awaitable<FetchResult> fetch(Cluster& cluster, const FetchRequest& request);

}  // namespace gatehouse::upstream
