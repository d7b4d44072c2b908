// Sentry's wire format: DSN parsing, the envelope (header, item header, event), the auth header,
// rate-limit answers and the bounded queue.
#include "observability/sentry.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace gatehouse::observability::sentry {
namespace {

Dsn dsn(const std::string& text) {
  auto r = parse_dsn(text);
  EXPECT_TRUE(r.dsn) << text << ": " << r.error;
  return r.dsn.value_or(Dsn{});
}

std::string error(const std::string& text) {
  auto r = parse_dsn(text);
  EXPECT_FALSE(r.dsn) << text;
  return r.error;
}

TEST(SentryDsn, Parses) {
  auto d = dsn("https://0123abcd@o42.ingest.sentry.io/4505");
  EXPECT_TRUE(d.https);
  EXPECT_EQ(d.public_key, "0123abcd");
  EXPECT_EQ(d.host, "o42.ingest.sentry.io");
  EXPECT_EQ(d.port, 443);
  EXPECT_EQ(d.project_id, "4505");
  EXPECT_EQ(d.envelope_path(), "/api/4505/envelope/");
  EXPECT_EQ(d.to_string(), "https://0123abcd@o42.ingest.sentry.io/4505");

  auto local = dsn("http://key:legacysecret@127.0.0.1:9000/sentry/7/");
  EXPECT_FALSE(local.https);
  EXPECT_EQ(local.port, 9000);
  EXPECT_EQ(local.path, "/sentry");
  EXPECT_EQ(local.envelope_path(), "/sentry/api/7/envelope/");
  EXPECT_EQ(local.to_string(), "http://key@127.0.0.1:9000/sentry/7");  // the secret is dropped

  auto v6 = dsn("http://k@[::1]:8080/3");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.port, 8080);
  EXPECT_EQ(v6.to_string(), "http://k@[::1]:8080/3");
  EXPECT_EQ(dsn("http://k@h:80/1").to_string(), "http://k@h/1");
}

TEST(SentryDsn, Rejects) {
  EXPECT_EQ(error(""), "a Sentry DSN starts with https:// or http://");
  EXPECT_EQ(error("ftp://k@h/1"), "a Sentry DSN starts with https:// or http://");
  EXPECT_EQ(error("https://h/1"), "a Sentry DSN names its public key: https://KEY@HOST/PROJECT_ID");
  EXPECT_EQ(error("https://@h/1"), "the DSN's public key must be letters and digits");
  EXPECT_EQ(error("https://k y@h/1"), "the DSN's public key must be letters and digits");
  EXPECT_EQ(error("https://k@h"),
            "a Sentry DSN ends with its project id: https://KEY@HOST/PROJECT_ID");
  EXPECT_EQ(error("https://k@/1"), "the DSN has no host");
  EXPECT_EQ(error("https://k@h:0/1"), "the DSN's port must be 1-65535");
  EXPECT_EQ(error("https://k@h:/1"), "the DSN's port must be 1-65535");
  EXPECT_EQ(error("https://k@h:x/1"), "the DSN's port must be 1-65535");
  EXPECT_EQ(error("https://k@h/"), "the DSN's project id (its last path segment) must be a number");
  EXPECT_EQ(error("https://k@h/p"),
            "the DSN's project id (its last path segment) must be a number");
  EXPECT_EQ(error("https://k@h/1?x=1"),
            "the DSN's project id (its last path segment) must be a number");
  EXPECT_EQ(error("https://k@ho st/1"), "bad character in the DSN's host");
  EXPECT_EQ(error("https://k@[::1/1"), "unclosed '[' in the DSN's host");
}

TEST(SentryAuth, Header) {
  EXPECT_EQ(auth_header(dsn("https://abc@h/1"), "gatehouse/0.1.0"),
            "Sentry sentry_version=7, sentry_key=abc, sentry_client=gatehouse/0.1.0");
}

Event sample_event() {
  Event e;
  e.failure = Failure::intercepted;
  e.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'764'633'600'123));
  e.message = "error_intercepted: upstream error page";
  e.status = 500;
  e.method = "POST";
  e.url = "https://app.example/api/stories/7";
  e.query = "token=REDACTED&x=1";
  e.route = "api";
  e.request_id = "req-1";
  e.client = "c0ffee";
  e.upstream = "app";
  e.upstream_address = "127.0.0.1:8000";
  e.headers = {{"Host", "app.example"}, {"Authorization", "[Filtered]"}};
  e.body = "Traceback (most recent call last):\n  File \"app.py\"\n\"quoted\"\n";
  e.body_truncated = true;
  return e;
}

std::vector<std::string> lines(const std::string& envelope) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t nl; (nl = envelope.find('\n', start)) != std::string::npos; start = nl + 1) {
    out.push_back(envelope.substr(start, nl - start));
  }
  EXPECT_EQ(start, envelope.size()) << "the envelope ends with a newline";
  return out;
}

TEST(SentryEnvelope, HeaderItemAndEvent) {
  EnvelopeMeta meta{.dsn = "https://abc@h/1",
                    .environment = "production",
                    .release = "app@1.0",
                    .server_name = "gw-1",
                    .client = "gatehouse/0.1.0"};
  auto sent = std::chrono::system_clock::time_point(std::chrono::seconds(1'764'633'601));
  std::string id = new_event_id();
  auto env = build_envelope(meta, sample_event(), id, sent);
  auto l = lines(env);
  ASSERT_EQ(l.size(), 3u);
  auto header = nlohmann::json::parse(l[0]);
  EXPECT_EQ(header["event_id"], id);
  EXPECT_EQ(header["dsn"], "https://abc@h/1");
  EXPECT_EQ(header["sent_at"], "2025-12-02T00:00:01.000Z");
  EXPECT_EQ(header["sdk"]["version"], "0.1.0");
  auto item = nlohmann::json::parse(l[1]);
  EXPECT_EQ(item["type"], "event");
  EXPECT_EQ(item["content_type"], "application/json");
  EXPECT_EQ(item["length"], l[2].size());  // bytes of the payload line
  auto ev = nlohmann::json::parse(l[2]);
  EXPECT_EQ(ev["event_id"], id);
  EXPECT_EQ(ev["timestamp"], "2025-12-02T00:00:00.123Z");
  EXPECT_EQ(ev["platform"], "other");
  EXPECT_EQ(ev["level"], "error");
  EXPECT_EQ(ev["logger"], "gatehouse");
  EXPECT_EQ(ev["message"]["formatted"], "error_intercepted: upstream error page");
  EXPECT_EQ(ev["exception"]["values"][0]["type"], "UpstreamErrorPage");
  EXPECT_EQ(ev["request"]["method"], "POST");
  EXPECT_EQ(ev["request"]["url"], "https://app.example/api/stories/7");
  EXPECT_EQ(ev["request"]["query_string"], "token=REDACTED&x=1");
  EXPECT_EQ(ev["request"]["headers"]["Authorization"], "[Filtered]");
  EXPECT_EQ(ev["tags"]["route"], "api");
  EXPECT_EQ(ev["tags"]["request_id"], "req-1");
  EXPECT_EQ(ev["tags"]["upstream"], "app");
  EXPECT_EQ(ev["tags"]["status"], "500");
  EXPECT_EQ(ev["tags"]["failure"], "error_intercepted");
  EXPECT_EQ(ev["user"]["id"], "c0ffee");
  EXPECT_EQ(ev["extra"]["upstream_body"], sample_event().body);
  EXPECT_EQ(ev["extra"]["upstream_body_truncated"], true);
  EXPECT_EQ(ev["environment"], "production");
  EXPECT_EQ(ev["release"], "app@1.0");
  EXPECT_EQ(ev["server_name"], "gw-1");
}

TEST(SentryEnvelope, OptionalFieldsLeftOut) {
  Event e;
  e.failure = Failure::connect;
  e.method = "GET";
  e.url = "http://h/";
  auto l = lines(build_envelope(EnvelopeMeta{.environment = "dev"}, e, new_event_id(),
                                std::chrono::system_clock::now()));
  auto ev = nlohmann::json::parse(l[2]);
  EXPECT_FALSE(ev.contains("release"));
  EXPECT_FALSE(ev["request"].contains("query_string"));
  EXPECT_FALSE(ev["extra"].contains("upstream_body"));
  EXPECT_FALSE(ev["tags"].contains("route"));
  EXPECT_EQ(ev["exception"]["values"][0]["type"], "UpstreamConnectFailure");
}

TEST(SentryEnvelope, EventIds) {
  auto a = new_event_id();
  auto b = new_event_id();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(a[12], '4');  // UUID v4
}

TEST(SentryRateLimits, Answers) {
  using std::chrono::seconds;
  EXPECT_EQ(rate_limit_delay(200, "", ""), std::nullopt);
  EXPECT_EQ(rate_limit_delay(500, "30", ""), std::nullopt);
  EXPECT_EQ(rate_limit_delay(429, "", ""), seconds(60));
  EXPECT_EQ(rate_limit_delay(429, "7", ""), seconds(7));
  EXPECT_EQ(rate_limit_delay(429, "soon", ""), seconds(60));
  // Categories: none (all), error, default apply to events; transaction does not.
  EXPECT_EQ(rate_limit_delay(200, "", "60:transaction:key"), std::nullopt);
  EXPECT_EQ(rate_limit_delay(200, "", "60::organization"), seconds(60));
  EXPECT_EQ(
      rate_limit_delay(429, "5", "60:transaction:key, 2700:default;error;security:organization"),
      seconds(2700));
  EXPECT_EQ(rate_limit_delay(429, "", "1.5:error:project:quota_exceeded"), seconds(2));
}

TEST(SentryTraceback, Recognised) {
  EXPECT_TRUE(looks_like_traceback("Traceback (most recent call last):\n  File \"x.py\""));
  EXPECT_TRUE(looks_like_traceback("java.lang.NullPointerException\n\tat Foo.bar(Foo.java:1)"));
  EXPECT_TRUE(looks_like_traceback("panic: runtime error\n\ngoroutine 1 [running]:"));
  EXPECT_FALSE(looks_like_traceback("<html><body>502 Bad Gateway</body></html>"));
  EXPECT_FALSE(looks_like_traceback(""));
}

TEST(SentryQueue, BoundedAndOrdered) {
  Queue q(2);
  Event a;
  a.request_id = "a";
  Event b;
  b.request_id = "b";
  Event c;
  c.request_id = "c";
  EXPECT_TRUE(q.try_push(std::move(a)));
  EXPECT_TRUE(q.try_push(std::move(b)));
  EXPECT_TRUE(q.full());
  EXPECT_FALSE(q.try_push(std::move(c)));  // full: dropped
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(q.pop(std::chrono::milliseconds(0))->request_id, "a");
  EXPECT_FALSE(q.full());
  EXPECT_EQ(q.pop(std::chrono::milliseconds(0))->request_id, "b");
  EXPECT_FALSE(q.pop(std::chrono::milliseconds(0)));
  q.wake();
  EXPECT_FALSE(q.pop(std::chrono::hours(1)));  // woken: returns at once
}

}  // namespace
}  // namespace gatehouse::observability::sentry
