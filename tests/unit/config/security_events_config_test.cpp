// log.security_events and log.security_sample (issue 15, sentry-seclog): defaults, values,
// rejections with file:line:col and key.
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using testing::expect_errors;
using testing::kBase;

LogConfig load(const std::string& yaml) {
  return load_config_string(kBase + yaml, "t.yaml", filters::config_sections()).log;
}

TEST(SecurityEventsConfig, Defaults) {
  auto l = load("");
  EXPECT_EQ(l.security_events, kDefaultSecurityEvents);
  EXPECT_EQ(l.security_per_key_per_minute, 10u);
}

TEST(SecurityEventsConfig, Values) {
  auto l = load(
      "log: {security_events: [rate_limited, tls_error], "
      "security_sample: {per_key_per_minute: 3}}\n");
  EXPECT_EQ(l.security_events, security_event_bit(SecurityEvent::rate_limited) |
                                   security_event_bit(SecurityEvent::tls_error));
  EXPECT_EQ(l.security_per_key_per_minute, 3u);
  EXPECT_EQ(load("log: {security_events: []}\n").security_events, 0u);
  EXPECT_EQ(load("log: {security_events: off}\n").security_events, 0u);
  EXPECT_EQ(load("log: {security_events: [ban, ban_lifted, rate_limited, access_denied, "
                 "cors_denied, bad_request, tls_error]}\n")
                .security_events,
            (1u << kSecurityEventCount) - 1);
}

TEST(SecurityEventsConfig, Rejections) {
  expect_errors({
      {kBase + "log: {security_events: [ban, 429]}\n",
       "t.yaml:4:30: log.security_events[1]: invalid value \"429\" (expected one of: ban, "
       "ban_lifted, rate_limited, access_denied, cors_denied, bad_request, tls_error)"},
      {kBase + "log: {security_events: [ban, ban]}\n",
       "t.yaml:4:30: log.security_events[1]: duplicate event \"ban\""},
      {kBase + "log: {security_events: ban}\n",
       "t.yaml:4:24: log.security_events: expected a list, got a string"},
      {kBase + "log: {security_sample: {per_key_per_minute: -1}}\n",
       "t.yaml:4:45: log.security_sample.per_key_per_minute: invalid value \"-1\" "
       "(expected an integer from 0 to 1000000)"},
      {kBase + "log: {security_sample: {per_key: 1}}\n",
       "t.yaml:4:25: log.security_sample.per_key: unknown key \"per_key\"; "
       "allowed keys: per_key_per_minute"},
  });
}

}  // namespace
}  // namespace gatehouse::config
