// errors: the intercept decision, JSON content types, and the section (defaults per environment,
// round trip, rejections with file:line:col).
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "filters/errors/config.hpp"
#include "filters/registry.hpp"

namespace gatehouse::filters::errors {
namespace {

using config::testing::expect_errors;
using config::testing::kBase;

Settings load(const std::string& yaml) {
  return settings(config::load_config_string(kBase + yaml, "t.yaml", config_sections()));
}

TEST(ErrorsIntercept, JsonContentTypes) {
  EXPECT_TRUE(is_json_content_type("application/json"));
  EXPECT_TRUE(is_json_content_type("Application/JSON; charset=utf-8"));
  EXPECT_TRUE(is_json_content_type("application/problem+json"));
  EXPECT_TRUE(is_json_content_type(" application/vnd.api+json ;x=1"));
  EXPECT_FALSE(is_json_content_type("text/html; charset=utf-8"));
  EXPECT_FALSE(is_json_content_type("text/plain"));
  EXPECT_FALSE(is_json_content_type(""));
  EXPECT_FALSE(is_json_content_type("json"));
  EXPECT_FALSE(is_json_content_type("application/jsonp"));
  EXPECT_FALSE(is_json_content_type("application/x-json-stream"));
}

TEST(ErrorsIntercept, Decision) {
  Settings s;  // production
  EXPECT_TRUE(should_intercept(s, 500, false, "text/html"));
  EXPECT_TRUE(should_intercept(s, 502, false, ""));
  EXPECT_TRUE(should_intercept(s, 503, false, "text/plain"));
  EXPECT_TRUE(should_intercept(s, 504, false, "text/html"));
  EXPECT_FALSE(should_intercept(s, 500, false, "application/json"));  // the app's own JSON error
  EXPECT_FALSE(should_intercept(s, 500, true, "text/html"));          // HEAD: no body to replace
  EXPECT_FALSE(should_intercept(s, 501, false, "text/html"));         // not listed
  EXPECT_FALSE(should_intercept(s, 404, false, "text/html"));
  EXPECT_FALSE(should_intercept(s, 429, false, "text/html"));  // rate limits keep their answer
  EXPECT_FALSE(should_intercept(s, 200, false, "text/html"));
  EXPECT_FALSE(should_intercept(s, 304, false, ""));
  EXPECT_FALSE(should_intercept(s, 204, false, ""));
  Settings dev = default_settings(config::Environment::development);
  EXPECT_FALSE(should_intercept(dev, 500, false, "text/html"));
  Settings custom{.intercept = {404}};
  EXPECT_TRUE(should_intercept(custom, 404, false, "text/html"));
  EXPECT_FALSE(should_intercept(custom, 500, false, "text/html"));
}

TEST(ErrorsConfig, DefaultsPerEnvironment) {
  EXPECT_EQ(load("").intercept, (std::vector<unsigned>{500, 502, 503, 504}));
  EXPECT_EQ(load("").log_body, 4096u);
  // A named Config: GCC 12 sees a temporary's strings as maybe-uninitialized here.
  static const config::Config unloaded;
  EXPECT_TRUE(settings(unloaded) == load(""));
  EXPECT_TRUE(load("environment: development\n").intercept.empty());
  EXPECT_TRUE(load("environment: development\nerrors:\n").intercept.empty());
  EXPECT_EQ(load("environment: development\nerrors: {intercept: [500]}\n").intercept,
            (std::vector<unsigned>{500}));
  EXPECT_TRUE(load("errors: {intercept: []}\n").intercept.empty());
  EXPECT_TRUE(load("errors: {intercept: off}\n").intercept.empty());
  EXPECT_EQ(load("errors: {log_body: 1KiB}\n").log_body, 1024u);
  EXPECT_EQ(load("errors: {log_body: 1KiB}\n").intercept.size(), 4u);
}

TEST(ErrorsConfig, RoundTrip) {
  for (std::string yaml : {"", "errors: {intercept: [500, 418], log_body: 0}\n",
                           "environment: development\n", "errors: {intercept: []}\n"}) {
    SCOPED_TRACE(yaml);
    auto c = config::load_config_string(kBase + yaml, "t.yaml", config_sections());
    std::string emitted = config::to_yaml(c, config_sections());
    auto again = config::load_config_string(emitted, "emitted.yaml", config_sections());
    EXPECT_TRUE(settings(again) == settings(c)) << emitted;
    EXPECT_EQ(config::to_yaml(again, config_sections()), emitted);
  }
}

TEST(ErrorsConfig, Rejections) {
  expect_errors({
      {kBase + "errors: {intercept: [200]}\n",
       "t.yaml:4:22: errors.intercept[0]: invalid value \"200\" (expected an integer from 400 to "
       "599)"},
      {kBase + "errors: {intercept: [500, 500]}\n",
       "t.yaml:4:27: errors.intercept[1]: duplicate status 500"},
      {kBase + "errors: {intercept: 500}\n",
       "t.yaml:4:21: errors.intercept: expected a list, got a string"},
      {kBase + "errors: {log_body: 1MiB}\n", "t.yaml:4:20: errors.log_body: must be at most 64KiB"},
      {kBase + "errors: {intercpt: [500]}\n",
       "t.yaml:4:10: errors.intercpt: unknown key \"intercpt\" (did you mean \"intercept\"?); "
       "allowed keys: intercept, log_body, sentry"},
  });
}

// --- errors.sentry (issue 15, sentry-seclog) ---

TEST(SentryConfig, DefaultsAreOff) {
  EXPECT_FALSE(load("").sentry.enabled());
  EXPECT_EQ(load("").sentry.environment, "production");
  EXPECT_EQ(load("environment: development\n").sentry.environment, "development");
  // ${SENTRY_DSN:-} with the variable unset: an empty DSN turns reporting off.
  EXPECT_FALSE(load("errors: {sentry: {dsn: \"\"}}\n").sentry.enabled());
  EXPECT_FALSE(load("errors: {sentry: {dsn: null}}\n").sentry.enabled());
}

TEST(SentryConfig, Values) {
  auto s = load(
               "errors:\n  sentry:\n    dsn: \"https://abc123@o1.ingest.example.com/42\"\n"
               "    environment: staging\n    release: app@1.2.3\n    sample_rate: 0.25\n"
               "    max_queue: 50\n    timeout: 2s\n")
               .sentry;
  EXPECT_TRUE(s.enabled());
  EXPECT_EQ(s.dsn, "https://abc123@o1.ingest.example.com/42");
  EXPECT_EQ(s.environment, "staging");
  EXPECT_EQ(s.release, "app@1.2.3");
  EXPECT_DOUBLE_EQ(s.sample_rate, 0.25);
  EXPECT_EQ(s.max_queue, 50u);
  EXPECT_EQ(s.timeout, std::chrono::seconds(2));
  // A legacy DSN's secret is not kept (nor printed by `gatehouse check`).
  EXPECT_EQ(load("errors: {sentry: {dsn: \"http://k1:s3cret@127.0.0.1:9000/7\"}}\n").sentry.dsn,
            "http://k1@127.0.0.1:9000/7");
}

TEST(SentryConfig, RoundTrip) {
  for (std::string yaml :
       {"errors: {sentry: {dsn: \"http://k@127.0.0.1:9000/sub/7\", sample_rate: 0.5, "
        "release: \"r 1\", max_queue: 3, timeout: 250ms}}\n",
        "environment: development\nerrors: {sentry: {dsn: \"https://k@[::1]/1\", sample_rate: "
        "0}}\n"}) {
    SCOPED_TRACE(yaml);
    auto c = config::load_config_string(kBase + yaml, "t.yaml", config_sections());
    std::string emitted = config::to_yaml(c, config_sections());
    auto again = config::load_config_string(emitted, "emitted.yaml", config_sections());
    EXPECT_TRUE(settings(again) == settings(c)) << emitted;
    EXPECT_EQ(config::to_yaml(again, config_sections()), emitted);
  }
}

TEST(SentryConfig, Rejections) {
  expect_errors({
      {kBase + "errors: {sentry: {dsn: \"ftp://k@h/1\"}}\n",
       "t.yaml:4:24: errors.sentry.dsn: a Sentry DSN starts with https:// or http://"},
      {kBase + "errors: {sentry: {dsn: \"https://h.example/1\"}}\n",
       "t.yaml:4:24: errors.sentry.dsn: a Sentry DSN names its public key: "
       "https://KEY@HOST/PROJECT_ID"},
      {kBase + "errors: {sentry: {dsn: \"https://k@h.example/abc\"}}\n",
       "t.yaml:4:24: errors.sentry.dsn: the DSN's project id (its last path segment) must be a "
       "number"},
      {kBase + "errors: {sentry: {dsn: \"https://k@h.example:99999/1\"}}\n",
       "t.yaml:4:24: errors.sentry.dsn: the DSN's port must be 1-65535"},
      {kBase + "errors: {sentry: {dsn: \"https://k@/1\"}}\n",
       "t.yaml:4:24: errors.sentry.dsn: the DSN has no host"},
      {kBase + "errors: {sentry: {sample_rate: 1.5}}\n",
       "t.yaml:4:32: errors.sentry.sample_rate: invalid sample rate \"1.5\" (expected a number "
       "from 0 to 1, e.g. 0.25)"},
      {kBase + "errors: {sentry: {max_queue: 0}}\n",
       "t.yaml:4:30: errors.sentry.max_queue: invalid value \"0\" (expected an integer from 1 to "
       "100000)"},
      {kBase + "errors: {sentry: {dns: x}}\n",
       "t.yaml:4:19: errors.sentry.dns: unknown key \"dns\" (did you mean \"dsn\"?); allowed keys: "
       "dsn, environment, release, sample_rate, max_queue, timeout"},
  });
}

}  // namespace
}  // namespace gatehouse::filters::errors
