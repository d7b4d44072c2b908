// The cors section: defaults per environment, origin patterns as parsed, and the emitted form
// loading back to the same settings. Rejections: cors_errors_test.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "filters/cors/config.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using namespace std::chrono_literals;
using filters::cors::OriginPattern;
using filters::cors::parse_origin_pattern;
using filters::cors::Settings;
using testing::kBase;
using Kind = OriginPattern::Kind;

Settings load(const std::string& yaml) {
  return filters::cors::settings(
      load_config_string(kBase + yaml, "t.yaml", filters::config_sections()));
}

std::vector<std::string> origin_texts(const Settings& s) {
  std::vector<std::string> out;
  for (const auto& o : s.origins) {
    out.push_back(o.text);
  }
  return out;
}

void expect_round_trip(const std::string& yaml) {
  Config c = load_config_string(kBase + yaml, "t.yaml", filters::config_sections());
  std::string emitted = to_yaml(c, filters::config_sections());
  SCOPED_TRACE(emitted);
  Config again;
  try {
    again = load_config_string(emitted, "emitted.yaml", filters::config_sections());
  } catch (const ConfigError& e) {
    FAIL() << e.what();
  }
  EXPECT_TRUE(filters::cors::settings(c) == filters::cors::settings(again));
  EXPECT_EQ(to_yaml(again, filters::config_sections()), emitted);
}

const std::string kExample = R"(cors:
  origins: ["https://app.example.com", "https://*.example.com"]
  methods: [GET, POST, PUT, DELETE]
  headers: [Authorization, Content-Type, X-Request-ID]
  expose_headers: [X-Request-ID, RateLimit, RateLimit-Policy, Retry-After]
  credentials: true
  max_age: 10m
)";

TEST(CorsConfig, AbsentIsOffInProduction) {
  EXPECT_FALSE(load("").enabled);
  EXPECT_FALSE(load("cors:\n").enabled);
  EXPECT_TRUE(load("") == Settings{});
}

TEST(CorsConfig, AbsentInDevelopmentAllowsLocalhostWithoutCredentials) {
  for (const char* yaml : {"environment: development\n", "environment: development\ncors:\n"}) {
    SCOPED_TRACE(yaml);
    Settings s = load(yaml);
    EXPECT_TRUE(s.enabled);
    EXPECT_EQ(
        origin_texts(s),
        (std::vector<std::string>{"http://localhost:*", "https://localhost:*", "http://127.0.0.1:*",
                                  "https://127.0.0.1:*", "http://[::1]:*", "https://[::1]:*"}));
    EXPECT_EQ(s.methods,
              (std::vector<std::string>{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}));
    EXPECT_EQ(s.headers, std::vector<std::string>{"*"});
    EXPECT_FALSE(s.credentials);
    EXPECT_EQ(s.max_age, 600s);
  }
  EXPECT_FALSE(load("environment: development\ncors: off\n").enabled);
  EXPECT_FALSE(load("environment: development\ncors: false\n").enabled);
}

TEST(CorsConfig, TheIssueExample) {
  Settings s = load(kExample);
  EXPECT_TRUE(s.enabled);
  ASSERT_EQ(s.origins.size(), 2u);
  EXPECT_EQ(s.origins[0], (OriginPattern{Kind::exact, "https://app.example.com", "https",
                                         "app.example.com", ""}));
  EXPECT_EQ(s.origins[1],
            (OriginPattern{Kind::subdomains, "https://*.example.com", "https", "example.com", ""}));
  EXPECT_EQ(s.methods, (std::vector<std::string>{"GET", "POST", "PUT", "DELETE"}));
  EXPECT_EQ(s.headers, (std::vector<std::string>{"Authorization", "Content-Type", "X-Request-ID"}));
  EXPECT_EQ(s.expose_headers, (std::vector<std::string>{"X-Request-ID", "RateLimit",
                                                        "RateLimit-Policy", "Retry-After"}));
  EXPECT_TRUE(s.credentials);
  EXPECT_EQ(s.max_age, 600s);
}

TEST(CorsConfig, DefaultsOfOmittedKeys) {
  Settings s = load("cors: {origins: [\"https://app.example.com\"]}\n");
  EXPECT_TRUE(s.enabled);
  EXPECT_EQ(s.methods, (std::vector<std::string>{"GET", "HEAD", "POST"}));
  EXPECT_TRUE(s.headers.empty());
  EXPECT_TRUE(s.expose_headers.empty());
  EXPECT_FALSE(s.credentials);
  EXPECT_EQ(s.max_age, 600s);
}

TEST(CorsConfig, StarWithoutCredentialsAndOtherAcceptedValues) {
  Settings s = load(
      "cors: {origins: [\"*\"], headers: [\"*\"], expose_headers: [\"*\"], "
      "max_age: 0s}\n");
  EXPECT_EQ(s.origins[0].kind, Kind::any);
  EXPECT_EQ(s.headers, std::vector<std::string>{"*"});
  EXPECT_EQ(s.expose_headers, std::vector<std::string>{"*"});
  EXPECT_EQ(s.max_age, 0s);
  EXPECT_EQ(load("cors: {origins: [\"null\"], credentials: true, max_age: 1d}\n").max_age, 24h);
  // headers: ["*"] is echoed back, so it works with credentials too.
  EXPECT_TRUE(
      load("cors: {origins: [\"https://a.example\"], headers: [\"*\"], credentials: true}\n")
          .credentials);
}

TEST(CorsConfig, OriginPatternsAreNormalised) {
  struct Row {
    const char* text;
    OriginPattern expected;
  };
  const std::vector<Row> rows{
      {"*", {Kind::any, "*", "", "", ""}},
      {"null", {Kind::null, "null", "", "", ""}},
      {"HTTPS://App.Example.COM", {Kind::exact, "", "https", "app.example.com", ""}},
      {"https://app.example.com:443", {Kind::exact, "", "https", "app.example.com", ""}},
      {"http://app.example.com:80", {Kind::exact, "", "http", "app.example.com", ""}},
      {"http://app.example.com:443", {Kind::exact, "", "http", "app.example.com", "443"}},
      {"https://app.example.com:08443", {Kind::exact, "", "https", "app.example.com", "8443"}},
      {"http://localhost:*", {Kind::exact, "", "http", "localhost", "*"}},
      {"http://127.0.0.1:3000", {Kind::exact, "", "http", "127.0.0.1", "3000"}},
      {"http://[::1]:3000", {Kind::exact, "", "http", "[::1]", "3000"}},
      {"http://[2001:DB8::1]", {Kind::exact, "", "http", "[2001:db8::1]", ""}},
      {"https://*.Example.com:*", {Kind::subdomains, "", "https", "example.com", "*"}},
      {"https://*.eu.example.com", {Kind::subdomains, "", "https", "eu.example.com", ""}},
      {"chrome-extension://abcdefghij", {Kind::exact, "", "chrome-extension", "abcdefghij", ""}},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.text);
    auto parsed = parse_origin_pattern(row.text);
    ASSERT_TRUE(parsed.pattern.has_value()) << parsed.error;
    OriginPattern expected = row.expected;
    expected.text = row.text;
    EXPECT_EQ(*parsed.pattern, expected);
  }
}

TEST(CorsConfig, EmitsEveryKey) {
  std::string yaml =
      to_yaml(load_config_string(kBase + kExample, "t.yaml", filters::config_sections()),
              filters::config_sections());
  EXPECT_NE(yaml.find("cors:\n"
                      "  origins: [https://app.example.com, https://*.example.com]\n"
                      "  methods: [GET, POST, PUT, DELETE]\n"
                      "  headers: [Authorization, Content-Type, X-Request-ID]\n"
                      "  expose_headers: [X-Request-ID, RateLimit, RateLimit-Policy, Retry-After]\n"
                      "  credentials: true\n"
                      "  max_age: 600s\n"),
            std::string::npos)
      << yaml;
  EXPECT_NE(to_yaml(load_config_string(kBase, "t.yaml", filters::config_sections()),
                    filters::config_sections())
                .find("\ncors: off\n"),
            std::string::npos);
}

TEST(CorsConfig, RoundTrips) {
  expect_round_trip("");
  expect_round_trip("environment: development\n");
  expect_round_trip("environment: development\ncors: off\n");
  expect_round_trip(kExample);
  expect_round_trip(
      "cors: {origins: [\"*\"], headers: [\"*\"], expose_headers: [\"*\"], "
      "max_age: 0s}\n");
  expect_round_trip(
      "cors: {origins: [\"null\", \"HTTP://[::1]:*\", \"https://a.example:443\"], "
      "methods: [M-SEARCH], max_age: 1d}\n");
}

}  // namespace
}  // namespace gatehouse::config
