// The active HTTP check's pure parts: request, status line, expected statuses, hysteresis.
#include "upstream/active_check.hpp"

#include <gtest/gtest.h>

namespace gatehouse::upstream {
namespace {

using Change = Hysteresis::Change;

TEST(CheckRequest, GetWithHostAndUserAgent) {
  config::HealthCheckConfig cfg;
  cfg.path = "/healthz";
  EXPECT_EQ(check_request(cfg, "10.0.0.5:8000", "1.2.3"),
            "GET /healthz HTTP/1.1\r\nHost: 10.0.0.5:8000\r\n"
            "User-Agent: gatehouse-health-check/1.2.3\r\nAccept: */*\r\nConnection: close\r\n\r\n");
  cfg.host = "app.internal";
  EXPECT_NE(check_request(cfg, "10.0.0.5:8000", "1").find("\r\nHost: app.internal\r\n"),
            std::string::npos);
}

TEST(StatusLine, Parses) {
  EXPECT_EQ(parse_status_line("HTTP/1.1 200 OK\r\n"), 200u);
  EXPECT_EQ(parse_status_line("HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n"), 503u);
  EXPECT_EQ(parse_status_line("HTTP/1.1 204\r\n"), 204u);
  EXPECT_EQ(parse_status_line("HTTP/1.1 200 "), std::nullopt);  // incomplete
  EXPECT_EQ(parse_status_line("HTTP/1."), std::nullopt);
  EXPECT_EQ(parse_status_line("SSH-2.0-OpenSSH_9.2\r\n"), 0u);
  EXPECT_EQ(parse_status_line("garbage that never ends"), 0u);
  EXPECT_EQ(parse_status_line("HTTP/1.1 2x0 OK\r\n"), 0u);
  EXPECT_EQ(parse_status_line("HTTP/1.1 700 Odd\r\n"), 0u);
  EXPECT_EQ(parse_status_line("HTTP/1.1 2000 OK\r\n"), 0u);
  // A reason phrase that never ends is not waited for until the timeout.
  EXPECT_EQ(parse_status_line("HTTP/1.1 200 " + std::string(1100, 'k')), 0u);
  EXPECT_EQ(parse_status_line("HTTP/1.1 200 " + std::string(900, 'k')), std::nullopt);
}

TEST(StatusExpected, ExactAndClasses) {
  config::HealthCheckConfig cfg;  // [200]
  EXPECT_TRUE(status_expected(cfg, 200));
  EXPECT_FALSE(status_expected(cfg, 204));
  cfg.expect = {{200, 299}, {301, 301}};
  EXPECT_TRUE(status_expected(cfg, 204));
  EXPECT_TRUE(status_expected(cfg, 301));
  EXPECT_FALSE(status_expected(cfg, 302));
  EXPECT_FALSE(status_expected(cfg, 500));
}

TEST(Hysteresis, StartsHealthyAndLeavesAfterUnhealthyAfterFailures) {
  Hysteresis h(2, 3);
  EXPECT_TRUE(h.healthy());
  EXPECT_EQ(h.record(false), Change::none);
  EXPECT_EQ(h.record(false), Change::none);
  EXPECT_EQ(h.failures(), 2u);
  EXPECT_EQ(h.record(false), Change::became_unhealthy);
  EXPECT_FALSE(h.healthy());
  EXPECT_EQ(h.record(false), Change::none);  // once
}

TEST(Hysteresis, APassInBetweenStartsTheCountAgain) {
  Hysteresis h(2, 3);
  h.record(false);
  h.record(false);
  h.record(true);
  EXPECT_EQ(h.record(false), Change::none);
  EXPECT_EQ(h.record(false), Change::none);
  EXPECT_TRUE(h.healthy());
  EXPECT_EQ(h.record(false), Change::became_unhealthy);
}

TEST(Hysteresis, ComesBackAfterHealthyAfterPasses) {
  Hysteresis h(2, 1);
  EXPECT_EQ(h.record(false), Change::became_unhealthy);
  EXPECT_EQ(h.record(true), Change::none);
  EXPECT_EQ(h.record(false), Change::none);  // flapping does not bring it back
  EXPECT_EQ(h.record(true), Change::none);
  EXPECT_EQ(h.passes(), 1u);
  EXPECT_EQ(h.record(true), Change::became_healthy);
  EXPECT_TRUE(h.healthy());
  EXPECT_EQ(h.record(true), Change::none);
}

TEST(Hysteresis, OneAndOneFollowsEachResult) {
  Hysteresis h(1, 1);
  EXPECT_EQ(h.record(false), Change::became_unhealthy);
  EXPECT_EQ(h.record(true), Change::became_healthy);
}

}  // namespace
}  // namespace gatehouse::upstream
