// log.security_events and log.security_sample: which events are on, the per-key and per-type
// budgets a minute, the summary of what was left out, bounded state under a spray.
#include "observability/security_events.hpp"

#include <gtest/gtest.h>

#include <string>

namespace gatehouse::observability {
namespace {

using config::SecurityEvent;
using Clock = SecurityEvents::Clock;

config::LogConfig log_config(unsigned per_key, unsigned events = config::kDefaultSecurityEvents) {
  config::LogConfig c;
  c.security_per_key_per_minute = per_key;
  c.security_events = events;
  return c;
}

TEST(SecurityEvents, DefaultsKeepTodaysLines) {
  SecurityEvents s(nullptr, config::LogConfig{});
  EXPECT_TRUE(s.enabled(SecurityEvent::ban));
  EXPECT_TRUE(s.enabled(SecurityEvent::ban_lifted));
  EXPECT_TRUE(s.enabled(SecurityEvent::access_denied));
  EXPECT_TRUE(s.enabled(SecurityEvent::cors_denied));
  EXPECT_TRUE(s.enabled(SecurityEvent::bad_request));
  EXPECT_FALSE(s.enabled(SecurityEvent::rate_limited));
  EXPECT_FALSE(s.enabled(SecurityEvent::tls_error));
  SecurityEvents none(nullptr, log_config(10, 0));
  EXPECT_FALSE(none.enabled(SecurityEvent::ban));
}

TEST(SecurityEvents, PerKeyPerMinute) {
  SecurityEvents s(nullptr, log_config(3));
  auto t = Clock::now();
  int logged = 0;
  for (int i = 0; i < 100; ++i) {
    logged += s.admit(SecurityEvent::rate_limited, "203.0.113.7", t) ? 1 : 0;
  }
  EXPECT_EQ(logged, 3);
  EXPECT_EQ(s.count(SecurityEvent::rate_limited, true), 3u);
  EXPECT_EQ(s.count(SecurityEvent::rate_limited, false), 97u);
  // Another key, and the same key under another event type, have budgets of their own.
  EXPECT_TRUE(s.admit(SecurityEvent::rate_limited, "203.0.113.8", t));
  EXPECT_TRUE(s.admit(SecurityEvent::access_denied, "203.0.113.7", t));
  // The next minute starts afresh.
  EXPECT_TRUE(s.admit(SecurityEvent::rate_limited, "203.0.113.7", t + std::chrono::seconds(61)));
}

TEST(SecurityEvents, ZeroMeansEveryLine) {
  SecurityEvents s(nullptr, log_config(0));
  auto t = Clock::now();
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(s.admit(SecurityEvent::bad_request, "k", t));
  }
}

TEST(SecurityEvents, SprayIsBoundedPerType) {
  SecurityEvents s(nullptr, log_config(2));
  auto t = Clock::now();
  unsigned logged = 0;
  for (unsigned i = 0; i < 100'000; ++i) {
    logged += s.admit(SecurityEvent::rate_limited, "10.0." + std::to_string(i), t) ? 1 : 0;
  }
  EXPECT_EQ(logged, 2 * SecurityEvents::kTypeCapFactor);
  EXPECT_EQ(s.count(SecurityEvent::rate_limited, false), 100'000u - logged);
}

TEST(SecurityEvents, SummaryOncePerMinute) {
  SecurityEvents s(nullptr, log_config(1));
  auto t = Clock::now();
  EXPECT_EQ(s.summarize(t, true), 0u);  // nothing left out yet
  s.admit(SecurityEvent::rate_limited, "k", t);
  s.admit(SecurityEvent::rate_limited, "k", t);
  s.admit(SecurityEvent::bad_request, "k", t);
  s.admit(SecurityEvent::bad_request, "k", t);
  EXPECT_EQ(s.summarize(t + std::chrono::seconds(1)), 0u);    // not a minute yet
  EXPECT_EQ(s.summarize(t + std::chrono::seconds(61)), 2u);   // one line per type
  EXPECT_EQ(s.summarize(t + std::chrono::seconds(200)), 0u);  // reported already
}

TEST(SecurityEvents, Metrics) {
  SecurityEvents s(nullptr, log_config(1, config::security_event_bit(SecurityEvent::rate_limited)));
  auto t = Clock::now();
  s.admit(SecurityEvent::rate_limited, "k", t);
  s.admit(SecurityEvent::rate_limited, "k", t);
  std::string out;
  s.render_metrics(out);
  EXPECT_NE(out.find("gatehouse_security_events_total{event=\"rate_limited\",logged=\"true\"} 1\n"),
            std::string::npos)
      << out;
  EXPECT_NE(
      out.find("gatehouse_security_events_total{event=\"rate_limited\",logged=\"false\"} 1\n"),
      std::string::npos);
  EXPECT_EQ(out.find("event=\"ban\""), std::string::npos);  // off: not listed
}

}  // namespace
}  // namespace gatehouse::observability
