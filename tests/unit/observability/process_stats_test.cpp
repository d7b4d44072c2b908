// /health/detailed's process figures and dependency-check pieces: statm parsing, the loop-lag
// window, the http check's status line and expectations, the disk check, a check's JSON.
#include <gtest/gtest.h>

#include "observability/dependency_checks.hpp"
#include "observability/process_stats.hpp"

namespace gatehouse::observability {
namespace {

TEST(ProcessStats, StatmResidentPages) {
  EXPECT_EQ(parse_statm_rss("5263 1234 456 100 0 900 0\n", 4096), 1234u * 4096);
  EXPECT_EQ(parse_statm_rss("1 0 0 0 0 0 0", 4096), 0u);
  EXPECT_EQ(parse_statm_rss("12 34", 65536), 34u * 65536);
  EXPECT_FALSE(parse_statm_rss("", 4096));
  EXPECT_FALSE(parse_statm_rss("5263", 4096));
  EXPECT_FALSE(parse_statm_rss("5263 x 1", 4096));
  EXPECT_FALSE(parse_statm_rss("5263 12x 1", 4096));
}

TEST(ProcessStats, ReadsThisProcess) {
  auto s = read_process_stats();
  ASSERT_TRUE(s.rss_bytes);
  EXPECT_GT(*s.rss_bytes, 0u);
  ASSERT_TRUE(s.open_files);
  EXPECT_GE(*s.open_files, 3u);  // stdin, stdout, stderr
  ASSERT_TRUE(s.max_open_files);
  EXPECT_GE(*s.max_open_files, *s.open_files);
}

TEST(LoopLagWindow, KeepsTheMaxForAtLeastOneWholeWindow) {
  LoopLag lag;
  EXPECT_EQ(lag.max_us(), 0);
  lag.record(-3);  // a timer that woke early counts as no lag
  EXPECT_EQ(lag.max_us(), 0);
  lag.record(40'000);
  for (unsigned i = 0; i < LoopLag::kSweepsPerWindow; ++i) {
    lag.record(100);
    EXPECT_EQ(lag.max_us(), 40'000) << i;  // still in this window or the previous one
  }
  for (unsigned i = 0; i < LoopLag::kSweepsPerWindow; ++i) {
    lag.record(100);
  }
  EXPECT_EQ(lag.max_us(), 100);  // two windows later the spike is gone
}

TEST(DependencyChecks, StatusLine) {
  EXPECT_EQ(parse_status_line("HTTP/1.1 200 OK"), 200u);
  EXPECT_EQ(parse_status_line("HTTP/1.0 503 Service Unavailable"), 503u);
  EXPECT_EQ(parse_status_line("HTTP/1.1 204"), 204u);
  EXPECT_FALSE(parse_status_line("HTTP/2 200"));
  EXPECT_FALSE(parse_status_line("SSH-2.0-OpenSSH_9.2"));
  EXPECT_FALSE(parse_status_line("HTTP/1.1 20x OK"));
  EXPECT_FALSE(parse_status_line("HTTP/1.1 2000 OK"));
  EXPECT_FALSE(parse_status_line("+PONG"));
}

TEST(DependencyChecks, ExpectedStatus) {
  EXPECT_TRUE(expected_status({}, 200));
  EXPECT_TRUE(expected_status({}, 302));
  EXPECT_FALSE(expected_status({}, 404));
  EXPECT_FALSE(expected_status({}, 500));
  EXPECT_TRUE(expected_status({200, 204}, 204));
  EXPECT_FALSE(expected_status({200}, 302));
}

TEST(DependencyChecks, Disk) {
  EXPECT_TRUE(probe_disk("/", 0).ok);
  auto full = probe_disk("/", ~std::uint64_t{0});
  EXPECT_FALSE(full.ok);
  EXPECT_NE(full.error.find("below min_free"), std::string::npos) << full.error;
  auto missing = probe_disk("/nonexistent/gatehouse", 0);
  EXPECT_FALSE(missing.ok);
  EXPECT_NE(missing.error.find("No such file"), std::string::npos) << missing.error;
}

TEST(DependencyChecks, JsonMasksTheRedisPassword) {
  config::DependencyCheck c{.name = "redis",
                            .kind = config::DependencyCheck::Kind::redis,
                            .target = "redis://:s3cret@127.0.0.1:6379/0"};
  auto j = check_json(c, CheckResult{.ok = false, .latency_ms = 1.234567, .error = "refused"});
  EXPECT_EQ(j["status"], "down");
  EXPECT_EQ(j["kind"], "redis");
  EXPECT_EQ(j["error"], "refused");
  EXPECT_DOUBLE_EQ(j["latency_ms"].get<double>(), 1.23);
  EXPECT_EQ(j["target"].get<std::string>().find("s3cret"), std::string::npos) << j.dump();
}

}  // namespace
}  // namespace gatehouse::observability
