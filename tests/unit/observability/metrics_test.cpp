#include "observability/metrics.hpp"

#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::observability {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

// The value of the sample whose name-and-labels part is exactly `series`, or "" when absent.
std::string sample(const std::string& text, const std::string& series) {
  for (const auto& line : lines_of(text)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return line.substr(series.size() + 1);
    }
  }
  return "";
}

std::string requests(const std::string& text, const std::string& route, const std::string& cls) {
  return sample(text,
                "gatehouse_requests_total{route=\"" + route + "\",status_class=\"" + cls + "\"}");
}

std::string bucket(const std::string& text, const std::string& route, const std::string& le) {
  return sample(
      text, "gatehouse_request_duration_seconds_bucket{route=\"" + route + "\",le=\"" + le + "\"}");
}

std::string local(const std::string& text, const std::string& status) {
  return sample(text, "gatehouse_local_replies_total{status=\"" + status + "\"}");
}

bool is_name(std::string_view s) {
  return !s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string_view::npos;
}

// `name{label="v",...} value` or `name value` (Prometheus text format 0.0.4), checked by hand:
// std::regex trips GCC 12 warnings in the sanitizer build.
bool is_sample_line(std::string_view line) {
  auto space = line.rfind(' ');
  if (space == std::string_view::npos) {
    return false;
  }
  auto series = line.substr(0, space);
  auto value = line.substr(space + 1);
  if (value.empty() || value.find_first_not_of("0123456789.e+-") != std::string_view::npos) {
    return false;
  }
  auto brace = series.find('{');
  if (brace == std::string_view::npos) {
    return is_name(series);
  }
  if (!is_name(series.substr(0, brace)) || series.back() != '}') {
    return false;
  }
  auto labels = series.substr(brace + 1, series.size() - brace - 2);
  while (true) {
    auto eq = labels.find("=\"");
    if (eq == std::string_view::npos || !is_name(labels.substr(0, eq))) {
      return false;
    }
    auto close = labels.find('"', eq + 2);
    if (close == std::string_view::npos) {
      return false;
    }
    labels.remove_prefix(close + 1);
    if (labels.empty()) {
      return true;
    }
    if (labels.front() != ',') {
      return false;
    }
    labels.remove_prefix(1);
  }
}

// "# HELP name text" or "# TYPE name type".
bool is_comment_line(std::string_view line) {
  if (!line.starts_with("# HELP ") && !line.starts_with("# TYPE ")) {
    return false;
  }
  line.remove_prefix(7);
  auto space = line.find(' ');
  return space != std::string_view::npos && is_name(line.substr(0, space)) &&
         space + 1 < line.size();
}

TEST(Metrics, StatusClasses) {
  Metrics m(1, {"default"}, {});
  auto& w = m.worker(0);
  for (unsigned status : {101u, 200u, 204u, 299u, 302u, 404u, 400u, 499u, 500u, 503u, 599u}) {
    w.record_request(0, status, 1000);
  }
  auto text = m.render();
  EXPECT_EQ(requests(text, "default", "1xx"), "1");
  EXPECT_EQ(requests(text, "default", "2xx"), "3");
  EXPECT_EQ(requests(text, "default", "3xx"), "1");
  EXPECT_EQ(requests(text, "default", "4xx"), "3");
  EXPECT_EQ(requests(text, "default", "5xx"), "3");
}

TEST(Metrics, OutOfRangeStatusCountsInHistogramOnly) {
  Metrics m(1, {"default"}, {});
  m.worker(0).record_request(0, 600, 1000);
  m.worker(0).record_request(0, 99, 1000);
  auto text = m.render();
  for (auto cls : {"1xx", "2xx", "3xx", "4xx", "5xx"}) {
    EXPECT_EQ(requests(text, "default", cls), "0") << cls;
  }
  EXPECT_EQ(sample(text, "gatehouse_request_duration_seconds_count{route=\"default\"}"), "2");
}

TEST(Metrics, BucketBoundariesAreInclusive) {
  Metrics m(1, {"r"}, {});
  auto& w = m.worker(0);
  w.record_request(0, 200, 0);           // le 0.0005
  w.record_request(0, 200, 500);         // exactly 0.0005 -> le 0.0005
  w.record_request(0, 200, 501);         // le 0.001
  w.record_request(0, 200, 100'000);     // exactly 0.1 -> le 0.1
  w.record_request(0, 200, 10'000'000);  // exactly 10 -> le 10
  w.record_request(0, 200, 10'000'001);  // +Inf only
  auto text = m.render();
  EXPECT_EQ(bucket(text, "r", "0.0005"), "2");
  EXPECT_EQ(bucket(text, "r", "0.001"), "3");
  EXPECT_EQ(bucket(text, "r", "0.0025"), "3");
  EXPECT_EQ(bucket(text, "r", "0.05"), "3");
  EXPECT_EQ(bucket(text, "r", "0.1"), "4");
  EXPECT_EQ(bucket(text, "r", "5"), "4");
  EXPECT_EQ(bucket(text, "r", "10"), "5");
  EXPECT_EQ(bucket(text, "r", "+Inf"), "6");
  EXPECT_EQ(sample(text, "gatehouse_request_duration_seconds_count{route=\"r\"}"), "6");
  EXPECT_EQ(sample(text, "gatehouse_request_duration_seconds_sum{route=\"r\"}"), "20.101002");
}

TEST(Metrics, ShardsAreSummed) {
  Metrics m(3, {"a", "b"}, {"app"});
  m.worker(0).record_request(0, 200, 1000);
  m.worker(1).record_request(0, 200, 2000);
  m.worker(2).record_request(1, 502, 3'000'000);
  m.worker(0).in_flight.add(2);
  m.worker(1).in_flight.add(1);
  m.worker(1).in_flight.add(-1);
  m.worker(0).connections_total.add(5);
  m.worker(2).connections_total.add(7);
  m.worker(0).connections_active.add(1);
  m.worker(2).connections_active.add(1);
  m.worker(1).upstreams[0].connect_errors.add();
  m.worker(2).upstreams[0].connect_errors.add(2);
  m.worker(0).upstreams[0].timeouts.add();
  m.worker(0).upstreams[0].opened.add(4);
  m.worker(1).upstreams[0].idle.add(3);
  m.worker(2).record_local_reply(404);
  m.worker(0).record_local_reply(404);

  auto text = m.render();
  EXPECT_EQ(requests(text, "a", "2xx"), "2");
  EXPECT_EQ(requests(text, "b", "5xx"), "1");
  EXPECT_EQ(requests(text, "b", "2xx"), "0");
  EXPECT_EQ(bucket(text, "a", "0.001"), "1");
  EXPECT_EQ(bucket(text, "a", "0.0025"), "2");
  EXPECT_EQ(bucket(text, "b", "2.5"), "0");
  EXPECT_EQ(bucket(text, "b", "5"), "1");
  EXPECT_EQ(sample(text, "gatehouse_request_duration_seconds_sum{route=\"a\"}"), "0.003");
  EXPECT_EQ(sample(text, "gatehouse_request_duration_seconds_count{route=\"a\"}"), "2");
  EXPECT_EQ(sample(text, "gatehouse_requests_in_flight"), "2");
  EXPECT_EQ(sample(text, "gatehouse_connections_total"), "12");
  EXPECT_EQ(sample(text, "gatehouse_connections_active"), "2");
  EXPECT_EQ(sample(text, "gatehouse_upstream_connect_errors_total{upstream=\"app\"}"), "3");
  EXPECT_EQ(sample(text, "gatehouse_upstream_timeouts_total{upstream=\"app\"}"), "1");
  EXPECT_EQ(sample(text, "gatehouse_upstream_connections_opened_total{upstream=\"app\"}"), "4");
  EXPECT_EQ(sample(text, "gatehouse_upstream_pool_idle_connections{upstream=\"app\"}"), "3");
  EXPECT_EQ(local(text, "404"), "2");
}

TEST(Metrics, NoneRouteLabel) {
  Metrics m(1, {"default"}, {}, {}, 1);
  EXPECT_EQ(m.none_route(), 1u);
  m.worker(0).record_request(m.none_route(), 404, 100);
  // Indexes past the end are clamped to "none" rather than overflowing.
  m.worker(0).record_request(99, 400, 100);
  auto text = m.render();
  EXPECT_EQ(requests(text, "none", "4xx"), "2");
  EXPECT_EQ(requests(text, "default", "4xx"), "0");
  EXPECT_EQ(bucket(text, "none", "0.0005"), "2");
}

TEST(Metrics, LocalRepliesByStatusIncludingOther) {
  Metrics m(1, {}, {});
  auto& w = m.worker(0);
  for (unsigned status : kLocalReplyStatuses) {
    w.record_local_reply(status);
  }
  w.record_local_reply(413);
  w.record_local_reply(418);
  w.record_local_reply(500);
  auto text = m.render();
  EXPECT_EQ(local(text, "400"), "1");
  EXPECT_EQ(local(text, "404"), "1");
  EXPECT_EQ(local(text, "408"), "1");
  EXPECT_EQ(local(text, "413"), "2");
  EXPECT_EQ(local(text, "414"), "1");
  EXPECT_EQ(local(text, "431"), "1");
  EXPECT_EQ(local(text, "502"), "1");
  EXPECT_EQ(local(text, "503"), "1");
  EXPECT_EQ(local(text, "504"), "1");
  EXPECT_EQ(local(text, "other"), "2");
  EXPECT_EQ(local(text, "418"), "");
}

TEST(Metrics, ExtraCallbackAppendedAtTheEnd) {
  Metrics m(1, {}, {});
  const std::string extra =
      "# HELP gatehouse_draining Draining.\n# TYPE gatehouse_draining gauge\ngatehouse_draining "
      "1\n";
  auto text = m.render([&](std::string& out) { out += extra; });
  ASSERT_GE(text.size(), extra.size());
  EXPECT_EQ(text.substr(text.size() - extra.size()), extra);
  EXPECT_EQ(text.find(extra), text.size() - extra.size());

  auto without = m.render();
  EXPECT_EQ(without + extra, text);
}

TEST(Metrics, EverySampleLineIsWellFormed) {
  // The checkers themselves.
  ASSERT_TRUE(is_sample_line(R"(x_total{a="b",c=""} 1.5)"));
  ASSERT_TRUE(is_sample_line("x_total 0"));
  ASSERT_FALSE(is_sample_line(R"(x_total{a="b" 1)"));
  ASSERT_FALSE(is_sample_line(R"(x_total{a="b"c="d"} 1)"));
  ASSERT_FALSE(is_sample_line("x_total"));
  ASSERT_FALSE(is_sample_line("x_total abc"));
  ASSERT_TRUE(is_comment_line("# TYPE x_total counter"));
  ASSERT_FALSE(is_comment_line("# TYPE x_total"));

  Metrics m(2, {"a", "b"}, {"app", "db"});
  m.worker(0).record_request(0, 200, 1234);
  auto text = m.render();
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  std::map<std::string, int> type_lines;
  for (const auto& line : lines_of(text)) {
    if (line.starts_with("#")) {
      EXPECT_TRUE(is_comment_line(line)) << line;
      if (line.starts_with("# TYPE ")) {
        ++type_lines[line.substr(7, line.find(' ', 7) - 7)];
      }
    } else {
      EXPECT_TRUE(is_sample_line(line)) << line;
    }
  }
  for (const auto& [family, count] : type_lines) {
    EXPECT_EQ(count, 1) << family;
  }
  EXPECT_EQ(type_lines.size(), 24u);
}

TEST(Metrics, ExactRenderingForASmallCase) {
  Metrics m(1, {"api"}, {"app"}, {{"127.0.0.1:8000"}});
  auto& w = m.worker(0);
  w.upstreams[0].queued.add(2);
  w.upstreams[0].target(0)->requests.add();
  w.upstreams[0].target(0)->record_head(30'000);  // 30 ms
  w.record_request(0, 200, 1000);
  w.record_request(m.none_route(), 404, 250);
  w.record_local_reply(404);
  w.in_flight.add();
  w.connections_active.add(2);
  w.connections_total.add(3);
  w.upstreams[0].opened.add();
  w.upstreams[0].idle.add();

  const std::string expected =
      "# HELP gatehouse_requests_total Requests answered, by route and status class.\n"
      "# TYPE gatehouse_requests_total counter\n"
      "gatehouse_requests_total{route=\"api\",status_class=\"1xx\"} 0\n"
      "gatehouse_requests_total{route=\"api\",status_class=\"2xx\"} 1\n"
      "gatehouse_requests_total{route=\"api\",status_class=\"3xx\"} 0\n"
      "gatehouse_requests_total{route=\"api\",status_class=\"4xx\"} 0\n"
      "gatehouse_requests_total{route=\"api\",status_class=\"5xx\"} 0\n"
      "gatehouse_requests_total{route=\"none\",status_class=\"1xx\"} 0\n"
      "gatehouse_requests_total{route=\"none\",status_class=\"2xx\"} 0\n"
      "gatehouse_requests_total{route=\"none\",status_class=\"3xx\"} 0\n"
      "gatehouse_requests_total{route=\"none\",status_class=\"4xx\"} 1\n"
      "gatehouse_requests_total{route=\"none\",status_class=\"5xx\"} 0\n"
      "# HELP gatehouse_request_duration_seconds Time from request head to last response byte.\n"
      "# TYPE gatehouse_request_duration_seconds histogram\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"0.0005\"} 0\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"0.001\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"0.0025\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"0.005\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"0.01\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"0.025\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"0.05\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"0.1\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"0.25\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"0.5\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"1\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"2.5\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"5\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"10\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"api\",le=\"+Inf\"} 1\n"
      "gatehouse_request_duration_seconds_sum{route=\"api\"} 0.001\n"
      "gatehouse_request_duration_seconds_count{route=\"api\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"0.0005\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"0.001\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"0.0025\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"0.005\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"0.01\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"0.025\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"0.05\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"0.1\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"0.25\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"0.5\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"1\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"2.5\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"5\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"10\"} 1\n"
      "gatehouse_request_duration_seconds_bucket{route=\"none\",le=\"+Inf\"} 1\n"
      "gatehouse_request_duration_seconds_sum{route=\"none\"} 0.00025\n"
      "gatehouse_request_duration_seconds_count{route=\"none\"} 1\n"
      "# HELP gatehouse_requests_in_flight Requests being processed.\n"
      "# TYPE gatehouse_requests_in_flight gauge\n"
      "gatehouse_requests_in_flight 1\n"
      "# HELP gatehouse_connections_active Open client connections.\n"
      "# TYPE gatehouse_connections_active gauge\n"
      "gatehouse_connections_active 2\n"
      "# HELP gatehouse_connections_total Client connections accepted.\n"
      "# TYPE gatehouse_connections_total counter\n"
      "gatehouse_connections_total 3\n"
      "# HELP gatehouse_connections_rejected_total Client connections closed at accept: over "
      "max_connections or max_connections_per_ip.\n"
      "# TYPE gatehouse_connections_rejected_total counter\n"
      "gatehouse_connections_rejected_total 0\n"
      "# HELP gatehouse_tls_handshake_errors_total TLS handshakes that failed.\n"
      "# TYPE gatehouse_tls_handshake_errors_total counter\n"
      "gatehouse_tls_handshake_errors_total 0\n"
      "# HELP gatehouse_proxy_protocol_errors_total Connections closed without a reply: PROXY "
      "protocol header missing, malformed, slow, or from a peer not in trusted_proxies.\n"
      "# TYPE gatehouse_proxy_protocol_errors_total counter\n"
      "gatehouse_proxy_protocol_errors_total 0\n"
      "# HELP gatehouse_websocket_upgrades_total WebSocket handshakes the upstream accepted (101); "
      "the tunnel then relays bytes.\n"
      "# TYPE gatehouse_websocket_upgrades_total counter\n"
      "gatehouse_websocket_upgrades_total 0\n"
      "# HELP gatehouse_websockets_open WebSocket tunnels open now.\n"
      "# TYPE gatehouse_websockets_open gauge\n"
      "gatehouse_websockets_open 0\n"
      "# HELP gatehouse_upstream_connect_errors_total Failed upstream connects.\n"
      "# TYPE gatehouse_upstream_connect_errors_total counter\n"
      "gatehouse_upstream_connect_errors_total{upstream=\"app\"} 0\n"
      "# HELP gatehouse_upstream_timeouts_total Upstream connect or response timeouts.\n"
      "# TYPE gatehouse_upstream_timeouts_total counter\n"
      "gatehouse_upstream_timeouts_total{upstream=\"app\"} 0\n"
      "# HELP gatehouse_upstream_connections_opened_total Upstream connections opened.\n"
      "# TYPE gatehouse_upstream_connections_opened_total counter\n"
      "gatehouse_upstream_connections_opened_total{upstream=\"app\"} 1\n"
      "# HELP gatehouse_upstream_pool_idle_connections Idle pooled upstream connections.\n"
      "# TYPE gatehouse_upstream_pool_idle_connections gauge\n"
      "gatehouse_upstream_pool_idle_connections{upstream=\"app\"} 1\n"
      "# HELP gatehouse_upstream_failures_total Requests the upstream failed: no usable response "
      "head (502/504), or a response cut off after its head was sent.\n"
      "# TYPE gatehouse_upstream_failures_total counter\n"
      "gatehouse_upstream_failures_total{upstream=\"app\"} 0\n"
      "# HELP gatehouse_upstream_retries_total Requests sent again after a failed try (every "
      "reason).\n"
      "# TYPE gatehouse_upstream_retries_total counter\n"
      "gatehouse_upstream_retries_total{upstream=\"app\"} 0\n"
      "# HELP gatehouse_upstream_retry_budget_exhausted_total Retries not made because the "
      "upstream's retry budget was spent.\n"
      "# TYPE gatehouse_upstream_retry_budget_exhausted_total counter\n"
      "gatehouse_upstream_retry_budget_exhausted_total{upstream=\"app\"} 0\n"
      "# HELP gatehouse_upstream_queue_length Requests waiting for an upstream connection "
      "(max_connections reached).\n"
      "# TYPE gatehouse_upstream_queue_length gauge\n"
      "gatehouse_upstream_queue_length{upstream=\"app\"} 2\n"
      "# HELP gatehouse_upstream_busy_total Requests answered 503 upstream_busy: queue full or "
      "queue_timeout passed.\n"
      "# TYPE gatehouse_upstream_busy_total counter\n"
      "gatehouse_upstream_busy_total{upstream=\"app\"} 0\n"
      "# HELP gatehouse_upstream_target_requests_total Tries sent to the upstream target (a "
      "connection acquired for a request).\n"
      "# TYPE gatehouse_upstream_target_requests_total counter\n"
      "gatehouse_upstream_target_requests_total{upstream=\"app\",target=\"127.0.0.1:8000\"} 1\n"
      "# HELP gatehouse_upstream_target_errors_total Failed connects, tries without a usable "
      "response head and responses cut off, by upstream target.\n"
      "# TYPE gatehouse_upstream_target_errors_total counter\n"
      "gatehouse_upstream_target_errors_total{upstream=\"app\",target=\"127.0.0.1:8000\"} 0\n"
      "# HELP gatehouse_upstream_target_response_head_seconds Time from sending the request to the "
      "upstream target to its response head.\n"
      "# TYPE gatehouse_upstream_target_response_head_seconds histogram\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"0.0005\"} 0\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"0.001\"} 0\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"0.0025\"} 0\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"0.005\"} 0\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"0.01\"} 0\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"0.025\"} 0\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"0.05\"} 1\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"0.1\"} 1\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"0.25\"} 1\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"0.5\"} 1\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"1\"} 1\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"2.5\"} 1\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"5\"} 1\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"10\"} 1\n"
      "gatehouse_upstream_target_response_head_seconds_bucket{upstream=\"app\",target=\"127.0.0.1:"
      "8000\",le=\"+Inf\"} 1\n"
      "gatehouse_upstream_target_response_head_seconds_sum{upstream=\"app\",target=\"127.0.0.1:"
      "8000\"} 0.03\n"
      "gatehouse_upstream_target_response_head_seconds_count{upstream=\"app\",target=\"127.0.0.1:"
      "8000\"} 1\n"
      "# HELP gatehouse_upstream_retries_by_reason_total Requests sent again, by why the try "
      "before failed.\n"
      "# TYPE gatehouse_upstream_retries_by_reason_total counter\n"
      "gatehouse_upstream_retries_by_reason_total{upstream=\"app\",reason=\"stale_connection\"} 0\n"
      "gatehouse_upstream_retries_by_reason_total{upstream=\"app\",reason=\"connect_failure\"} 0\n"
      "gatehouse_upstream_retries_by_reason_total{upstream=\"app\",reason=\"reset\"} 0\n"
      "gatehouse_upstream_retries_by_reason_total{upstream=\"app\",reason=\"timeout\"} 0\n"
      "gatehouse_upstream_retries_by_reason_total{upstream=\"app\",reason=\"429\"} 0\n"
      "gatehouse_upstream_retries_by_reason_total{upstream=\"app\",reason=\"5xx\"} 0\n"
      "gatehouse_upstream_retries_by_reason_total{upstream=\"app\",reason=\"invalid_json\"} 0\n"
      "# HELP gatehouse_local_replies_total Replies made by gatehouse itself, by status.\n"
      "# TYPE gatehouse_local_replies_total counter\n"
      "gatehouse_local_replies_total{status=\"400\"} 0\n"
      "gatehouse_local_replies_total{status=\"403\"} 0\n"
      "gatehouse_local_replies_total{status=\"404\"} 1\n"
      "gatehouse_local_replies_total{status=\"408\"} 0\n"
      "gatehouse_local_replies_total{status=\"413\"} 0\n"
      "gatehouse_local_replies_total{status=\"414\"} 0\n"
      "gatehouse_local_replies_total{status=\"429\"} 0\n"
      "gatehouse_local_replies_total{status=\"431\"} 0\n"
      "gatehouse_local_replies_total{status=\"502\"} 0\n"
      "gatehouse_local_replies_total{status=\"503\"} 0\n"
      "gatehouse_local_replies_total{status=\"504\"} 0\n"
      "gatehouse_local_replies_total{status=\"other\"} 0\n";
  EXPECT_EQ(m.render(), expected);
}

// Units a reload adds: their target arrays sized on add, units of one name exported as one
// series per label set (a re-targeted upstream's counters continue; a target both units have is
// one series).
TEST(Metrics, UpstreamUnitsAddedByReloadShareTheirNamesSeries) {
  Metrics m(2, {"api"}, {"app"}, {{"127.0.0.1:8000", "127.0.0.1:8001"}}, 0, 3);
  EXPECT_EQ(m.upstream_capacity(), 3u);
  m.worker(0).upstreams[0].opened.add(5);
  m.worker(1).upstreams[0].target(1)->requests.add(7);
  EXPECT_EQ(m.add_upstream("app", {"127.0.0.1:8001", "127.0.0.1:8002"}), 1u);
  EXPECT_EQ(m.add_upstream("extra", {"127.0.0.1:9000"}), 2u);
  EXPECT_THROW(m.add_upstream("more", {}), std::length_error);
  ASSERT_NE(m.worker(1).upstreams[1].target(1), nullptr);
  EXPECT_EQ(m.worker(1).upstreams[1].target(2), nullptr);
  m.worker(1).upstreams[1].opened.add(2);
  m.worker(0).upstreams[1].target(0)->requests.add(3);  // 127.0.0.1:8001 on the new unit
  m.worker(0).upstreams[1].target(1)->requests.add(1);  // 127.0.0.1:8002
  m.worker(0).upstreams[2].opened.add(1);
  const auto out = m.render();
  auto count = [&](const std::string& needle) {
    std::size_t n = 0;
    for (auto p = out.find(needle); p != std::string::npos; p = out.find(needle, p + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(count("gatehouse_upstream_connections_opened_total{upstream=\"app\"} 7\n"), 1u);
  EXPECT_EQ(count("gatehouse_upstream_connections_opened_total{upstream=\"app\"}"), 1u);
  EXPECT_EQ(count("gatehouse_upstream_connections_opened_total{upstream=\"extra\"} 1\n"), 1u);
  EXPECT_EQ(count("gatehouse_upstream_target_requests_total{upstream=\"app\",target=\"127.0.0.1:"
                  "8000\"} 0\n"),
            1u);
  EXPECT_EQ(count("gatehouse_upstream_target_requests_total{upstream=\"app\",target=\"127.0.0.1:"
                  "8001\"} 10\n"),
            1u);
  EXPECT_EQ(count("gatehouse_upstream_target_requests_total{upstream=\"app\",target=\"127.0.0.1:"
                  "8002\"} 1\n"),
            1u);
  EXPECT_EQ(count("gatehouse_upstream_target_response_head_seconds_count{upstream=\"app\","
                  "target=\"127.0.0.1:8001\"}"),
            1u);
  EXPECT_EQ(count("gatehouse_upstream_retries_by_reason_total{upstream=\"app\",reason=\"reset\"}"),
            1u);
}

}  // namespace
}  // namespace gatehouse::observability

namespace gatehouse::observability {
namespace {

std::string route_requests(const std::string& text, const std::string& route) {
  auto key = "gatehouse_requests_total{route=\"" + route + "\",status_class=\"2xx\"} ";
  auto at = text.find(key);
  if (at == std::string::npos) {
    return "absent";
  }
  at += key.size();
  return text.substr(at, text.find('\n', at) - at);
}

// Route series are keyed by name: a reload that reorders, renames, adds or removes routes maps
// each route index to its name's slot; a removed name's series stay (counters never go back).
TEST(MetricsRouteSlots, FollowNamesAcrossReloads) {
  Metrics m(1, {"api", "web"}, {}, {}, 3);
  EXPECT_EQ(m.route_capacity(), 3u);
  EXPECT_EQ(m.none_route(), 3u);
  EXPECT_EQ(*m.route_slots({"api", "web"}), (std::vector<std::size_t>{0, 1}));
  m.worker(0).record_request(0, 200, 10);  // api
  // Reordered, "web" renamed to "site": api keeps slot 0, site takes the next free one.
  auto slots = m.route_slots({"site", "api"});
  ASSERT_TRUE(slots);
  EXPECT_EQ(*slots, (std::vector<std::size_t>{2, 0}));
  // Nothing is registered before add_route_names.
  EXPECT_EQ(m.route_names().size(), 2u);
  m.add_route_names({"site", "api"});
  EXPECT_EQ(m.route_names(), (std::vector<std::string>{"api", "web", "site"}));
  m.worker(0).record_request((*slots)[1], 200, 10);  // api through its new position
  m.worker(0).record_request((*slots)[0], 200, 10);  // site
  auto text = m.render();
  EXPECT_EQ(route_requests(text, "api"), "2");
  EXPECT_EQ(route_requests(text, "site"), "1");
  EXPECT_EQ(route_requests(text, "web"), "0");  // removed, still exported
  EXPECT_EQ(route_requests(text, "none"), "0");
  // A name that comes back finds its slot; a new one past the capacity is refused whole.
  EXPECT_EQ(*m.route_slots({"web"}), (std::vector<std::size_t>{1}));
  EXPECT_FALSE(m.route_slots({"api", "more"}));
  m.add_route_names({"more"});  // ignored past the capacity
  EXPECT_EQ(m.route_names().size(), 3u);
}

TEST(MetricsRouteSlots, DefaultCapacityLeavesRoomToGrow) {
  EXPECT_EQ(Metrics(1, {"a"}, {}).route_capacity(), 65u);
  std::vector<std::string> many(100, "r");
  EXPECT_EQ(Metrics(1, many, {}).route_capacity(), 400u);
  std::vector<std::string> lots(1000, "r");
  EXPECT_EQ(Metrics(1, lots, {}).route_capacity(), 2024u);
}

}  // namespace
}  // namespace gatehouse::observability
