// response_headers: the X-Process-Time value, and the section (defaults, round trip, rejections).
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "filters/registry.hpp"
#include "filters/response_headers/config.hpp"

namespace gatehouse::filters::response_headers {
namespace {

using namespace std::chrono_literals;
using config::testing::expect_errors;
using config::testing::kBase;

std::string line(std::chrono::nanoseconds d) {
  std::string out;
  append_process_time(out, d);
  return out;
}

TEST(ProcessTime, SecondsWithThreeDecimalsRounded) {
  EXPECT_EQ(line(31ms), "X-Process-Time: 0.031\r\n");
  EXPECT_EQ(line(0ns), "X-Process-Time: 0.000\r\n");
  EXPECT_EQ(line(-5ms), "X-Process-Time: 0.000\r\n");  // a clock that went back
  EXPECT_EQ(line(499us), "X-Process-Time: 0.000\r\n");
  EXPECT_EQ(line(500us), "X-Process-Time: 0.001\r\n");
  EXPECT_EQ(line(1999600us), "X-Process-Time: 2.000\r\n");
  EXPECT_EQ(line(1s + 5ms), "X-Process-Time: 1.005\r\n");
  EXPECT_EQ(line(90s + 120ms), "X-Process-Time: 90.120\r\n");
  EXPECT_EQ(line(std::chrono::hours(30)), "X-Process-Time: 108000.000\r\n");
}

TEST(ProcessTime, AppendsWithoutAllocatingWhenTheHeadHasRoom) {
  std::string out = "HTTP/1.1 200 OK\r\n";
  out.reserve(256);
  const char* data = out.data();
  append_process_time(out, 12ms);
  EXPECT_EQ(out.data(), data);
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nX-Process-Time: 0.012\r\n");
}

Settings load(const std::string& yaml) {
  return settings(config::load_config_string(kBase + yaml, "t.yaml", config_sections()));
}

TEST(ResponseHeadersConfig, OffByDefaultAndRoundTrips) {
  EXPECT_FALSE(load("").process_time);
  EXPECT_FALSE(load("response_headers:\n").process_time);
  EXPECT_FALSE(load("response_headers: {process_time: false}\n").process_time);
  EXPECT_FALSE(settings(config::Config{}).process_time);
  EXPECT_TRUE(load("response_headers: {process_time: true}\n").process_time);

  auto c = config::load_config_string(kBase + "response_headers: {process_time: true}\n", "t.yaml",
                                      config_sections());
  std::string emitted = config::to_yaml(c, config_sections());
  EXPECT_NE(emitted.find("response_headers:\n  process_time: true\n"), std::string::npos)
      << emitted;
  auto again = config::load_config_string(emitted, "emitted.yaml", config_sections());
  EXPECT_TRUE(settings(again).process_time);
  EXPECT_EQ(config::to_yaml(again, config_sections()), emitted);
}

TEST(ResponseHeadersConfig, Rejections) {
  expect_errors({
      {kBase + "response_headers: {process_time: yes}\n",
       "t.yaml:4:34: response_headers.process_time: expected true or false, got \"yes\""},
      {kBase + "response_headers: {process_times: true}\n",
       "t.yaml:4:20: response_headers.process_times: unknown key \"process_times\" (did you mean "
       "\"process_time\"?); allowed keys: process_time"},
      {kBase + "response_headers: [process_time]\n",
       "t.yaml:4:19: response_headers: expected a map, got a list"},
  });
}

}  // namespace
}  // namespace gatehouse::filters::response_headers
