// Cors with configs written as YAML: the origin matching table, preflight answers and denials,
// the headers of actual responses, Vary, "*" without credentials and the development default.
#include "filters/cors/cors_filter.hpp"

#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "filters/cors/config.hpp"
#include "filters/registry.hpp"

namespace gatehouse::filters::cors {
namespace {

const std::string kUpstreams =
    "upstreams:\n"
    "  app: {targets: [\"127.0.0.1:8000\"]}\n";

// The issue's example.
const std::string kExample = R"(cors:
  origins: ["https://app.example.com", "https://*.example.com"]
  methods: [GET, POST, PUT, DELETE]
  headers: [Authorization, Content-Type, X-Request-ID]
  expose_headers: [X-Request-ID, RateLimit, RateLimit-Policy, Retry-After]
  credentials: true
  max_age: 10m
)";

Cors make(const std::string& yaml) {
  return Cors(filters::cors::settings(
      config::load_config_string(kUpstreams + yaml, "t.yaml", filters::config_sections())));
}

struct Answer {
  Preflight kind;
  std::string reason;
  std::string lines;
};

Answer preflight(const Cors& c, std::string_view origin, std::string_view method,
                 std::string_view headers = {}, std::string_view request_method = "OPTIONS") {
  std::string out;
  auto r = c.preflight(request_method, origin, method, headers, out);
  return Answer{r.kind, std::string(r.reason), out};
}

std::string actual(const Cors& c, std::string_view origin) {
  std::string out;
  c.append_actual(origin, out);
  return out;
}

const std::string kVary =
    "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers\r\n";

TEST(CorsOrigins, IssueExampleTable) {
  auto c = make(kExample);
  struct Row {
    const char* origin;
    bool allowed;
  };
  const Row rows[] = {
      {"https://app.example.com", true},
      {"https://api.example.com", true},
      {"https://a.b.example.com", true},  // one or more labels
      {"https://x-1.example.com", true},
      {"HTTPS://APP.EXAMPLE.COM", true},  // scheme and host case-insensitive (RFC 6454)
      {"https://App.Example.Com", true},
      {"https://example.com", false},  // the wildcard needs at least one label
      {"https://evil-example.com", false},
      {"https://example.com.evil.com", false},
      {"https://app.example.com.evil.com", false},
      {"https://evilexample.com", false},
      {"https://.example.com", false},
      {"https://a..example.com", false},
      {"https://app.example.com.", false},
      {"http://app.example.com", false},  // scheme
      {"http://api.example.com", false},
      {"wss://app.example.com", false},
      {"https://app.example.com:443", false},  // port exactly: browsers never send a default port
      {"https://app.example.com:8443", false},
      {"https://api.example.com:8443", false},
      {"https://app.example.com/", false},  // not a serialized origin
      {"https://app.example.com/path", false},
      {" https://app.example.com", false},
      {"https://app.example.com ", false},
      {"https://user@app.example.com", false},
      {"https://app.example.com, https://evil.com", false},
      {"https://app.example.com\r\nX-Evil: 1", false},
      {"app.example.com", false},
      {"null", false},
      {"*", false},
      {"", false},
  };
  for (const auto& row : rows) {
    EXPECT_EQ(c.allows(row.origin), row.allowed) << row.origin;
  }
}

TEST(CorsOrigins, PortsAndAddresses) {
  auto c = make(
      "cors: {origins: [\"http://localhost:3000\", \"https://*.example.com:8443\", "
      "\"http://127.0.0.1:*\", \"http://[::1]:5173\", \"https://a.example:443\"]}\n");
  EXPECT_TRUE(c.allows("http://localhost:3000"));
  EXPECT_FALSE(c.allows("http://localhost:3001"));
  EXPECT_FALSE(c.allows("http://localhost"));
  EXPECT_FALSE(c.allows("http://localhost:03000"));
  EXPECT_TRUE(c.allows("https://api.example.com:8443"));
  EXPECT_FALSE(c.allows("https://api.example.com"));
  EXPECT_TRUE(c.allows("http://127.0.0.1"));
  EXPECT_TRUE(c.allows("http://127.0.0.1:8080"));
  EXPECT_FALSE(c.allows("http://127.0.0.2:8080"));
  EXPECT_FALSE(c.allows("http://127.0.0.1:"));
  EXPECT_TRUE(c.allows("http://[::1]:5173"));
  EXPECT_FALSE(c.allows("http://[::1]"));
  EXPECT_FALSE(c.allows("http://[::2]:5173"));
  EXPECT_TRUE(c.allows("https://a.example"));  // the configured default port was dropped
}

TEST(CorsOrigins, NullOnlyWhenListed) {
  EXPECT_FALSE(make("cors: {origins: [\"*\"]}\n").allows("null"));
  EXPECT_FALSE(make(kExample).allows("null"));
  auto c = make("cors: {origins: [\"null\", \"https://a.example\"]}\n");
  EXPECT_TRUE(c.allows("null"));
  EXPECT_FALSE(c.allows("Null"));
  EXPECT_FALSE(c.allows("NULL"));
  EXPECT_TRUE(c.allows("https://a.example"));
}

TEST(CorsOrigins, StarAllowsEveryWellFormedOrigin) {
  auto c = make("cors: {origins: [\"*\"]}\n");
  EXPECT_TRUE(c.allows("https://anything.example"));
  EXPECT_TRUE(c.allows("http://localhost:1234"));
  EXPECT_FALSE(c.allows("not an origin"));
  EXPECT_FALSE(c.allows(""));
}

TEST(CorsPreflight, AllowedAnswer) {
  auto c = make(kExample);
  auto a = preflight(c, "https://api.example.com", "PUT", "content-type,authorization");
  EXPECT_EQ(a.kind, Preflight::allowed);
  EXPECT_EQ(a.lines, kVary +
                         "Access-Control-Allow-Origin: https://api.example.com\r\n"
                         "Access-Control-Allow-Credentials: true\r\n"
                         "Access-Control-Allow-Methods: GET, POST, PUT, DELETE\r\n"
                         "Access-Control-Max-Age: 600\r\n"
                         "Access-Control-Allow-Headers: Content-Type, Authorization\r\n");
}

TEST(CorsPreflight, EchoesTheOriginAsSent) {
  auto a = preflight(make(kExample), "HTTPS://App.Example.com", "GET");
  EXPECT_EQ(a.kind, Preflight::allowed);
  EXPECT_NE(a.lines.find("Access-Control-Allow-Origin: HTTPS://App.Example.com\r\n"),
            std::string::npos);
}

TEST(CorsPreflight, RequestedHeadersOnlyTheAllowedOnes) {
  auto c = make(kExample);
  // No headers requested: no Allow-Headers line.
  auto none = preflight(c, "https://app.example.com", "POST");
  EXPECT_EQ(none.kind, Preflight::allowed);
  EXPECT_EQ(none.lines.find("Access-Control-Allow-Headers"), std::string::npos);
  // Case-insensitive names, blanks and empty elements tolerated; answered in configured spelling.
  auto some = preflight(c, "https://app.example.com", "POST", " x-request-id ,, AUTHORIZATION\t,");
  EXPECT_EQ(some.kind, Preflight::allowed);
  EXPECT_NE(some.lines.find("Access-Control-Allow-Headers: X-Request-ID, Authorization\r\n"),
            std::string::npos);
  // One header not allowed denies the whole preflight.
  auto denied = preflight(c, "https://app.example.com", "POST", "authorization, x-api-key");
  EXPECT_EQ(denied.kind, Preflight::denied);
  EXPECT_EQ(denied.reason, "request header not allowed by CORS policy");
  EXPECT_EQ(denied.lines, kVary);
  EXPECT_EQ(preflight(c, "https://app.example.com", "POST", "x request id").kind,
            Preflight::denied);
}

TEST(CorsPreflight, Denials) {
  auto c = make(kExample);
  auto origin = preflight(c, "https://evil.com", "GET");
  EXPECT_EQ(origin.kind, Preflight::denied);
  EXPECT_EQ(origin.reason, "origin not allowed by CORS policy");
  EXPECT_EQ(origin.lines, kVary);

  auto method = preflight(c, "https://app.example.com", "PATCH");
  EXPECT_EQ(method.kind, Preflight::denied);
  EXPECT_EQ(method.reason, "method not allowed by CORS policy");
  EXPECT_EQ(method.lines, kVary);
  // Methods are case-sensitive.
  EXPECT_EQ(preflight(c, "https://app.example.com", "put").kind, Preflight::denied);
  // Not listed, even though browsers would not ask for it.
  EXPECT_EQ(preflight(c, "https://app.example.com", "HEAD").kind, Preflight::denied);
  EXPECT_EQ(preflight(c, "null", "GET").kind, Preflight::denied);
}

TEST(CorsPreflight, WhatIsNotAPreflight) {
  auto c = make(kExample);
  EXPECT_EQ(preflight(c, "https://app.example.com", "GET", "", "GET").kind,
            Preflight::not_preflight);
  EXPECT_EQ(preflight(c, "https://app.example.com", "").kind, Preflight::not_preflight);
  EXPECT_EQ(preflight(c, "", "GET").kind, Preflight::not_preflight);
  EXPECT_EQ(preflight(c, "https://app.example.com", "GET", "", "options").kind,
            Preflight::not_preflight);
  auto a = preflight(make(""), "https://app.example.com", "GET");
  EXPECT_EQ(a.kind, Preflight::not_preflight);
  EXPECT_EQ(a.lines, "");
}

TEST(CorsPreflight, StarWithoutCredentials) {
  auto c = make(
      "cors: {origins: [\"*\"], methods: [GET, POST], headers: [Content-Type], "
      "max_age: 0s}\n");
  auto a = preflight(c, "https://anyone.example", "POST", "content-type");
  EXPECT_EQ(a.kind, Preflight::allowed);
  EXPECT_EQ(a.lines, kVary +
                         "Access-Control-Allow-Origin: *\r\n"
                         "Access-Control-Allow-Methods: GET, POST\r\n"
                         "Access-Control-Max-Age: 0\r\n"
                         "Access-Control-Allow-Headers: Content-Type\r\n");
}

TEST(CorsPreflight, AnyRequestHeaderIsEchoed) {
  auto c = make("cors: {origins: [\"https://a.example\"], headers: [\"*\"], credentials: true}\n");
  auto a = preflight(c, "https://a.example", "POST", "x-custom, authorization");
  EXPECT_EQ(a.kind, Preflight::allowed);
  EXPECT_NE(a.lines.find("Access-Control-Allow-Headers: x-custom, authorization\r\n"),
            std::string::npos);
  EXPECT_EQ(preflight(c, "https://a.example", "POST", "bad header\r\nX: y").kind,
            Preflight::denied);
}

TEST(CorsActual, AllowedOrigin) {
  EXPECT_EQ(actual(make(kExample), "https://app.example.com"),
            "Vary: Origin\r\n"
            "Access-Control-Allow-Origin: https://app.example.com\r\n"
            "Access-Control-Allow-Credentials: true\r\n"
            "Access-Control-Expose-Headers: X-Request-ID, RateLimit, RateLimit-Policy, "
            "Retry-After\r\n");
}

TEST(CorsActual, DisallowedOrMissingOriginGetsOnlyVary) {
  auto c = make(kExample);
  EXPECT_EQ(actual(c, "https://evil.com"), "Vary: Origin\r\n");
  EXPECT_EQ(actual(c, ""), "Vary: Origin\r\n");
  EXPECT_EQ(actual(c, "null"), "Vary: Origin\r\n");
}

TEST(CorsActual, MinimalAndStar) {
  EXPECT_EQ(actual(make("cors: {origins: [\"https://a.example\"]}\n"), "https://a.example"),
            "Vary: Origin\r\n"
            "Access-Control-Allow-Origin: https://a.example\r\n");
  auto star = make("cors: {origins: [\"*\"], expose_headers: [\"*\"]}\n");
  EXPECT_EQ(actual(star, "https://b.example"),
            "Vary: Origin\r\n"
            "Access-Control-Allow-Origin: *\r\n"
            "Access-Control-Expose-Headers: *\r\n");
  EXPECT_EQ(actual(star, "null"), "Vary: Origin\r\n");
}

TEST(CorsDisabled, ProductionWithoutBlockDoesNothing) {
  for (const char* yaml : {"", "cors: off\n", "environment: development\ncors: off\n"}) {
    auto c = make(yaml);
    EXPECT_FALSE(c.enabled()) << yaml;
    EXPECT_FALSE(c.allows("http://localhost:3000"));
    EXPECT_FALSE(c.strips("Access-Control-Allow-Origin"));
    EXPECT_EQ(actual(c, "http://localhost:3000"), "");
  }
}

TEST(CorsDisabled, StripsUpstreamCorsHeadersOnlyWhenEnabled) {
  auto c = make(kExample);
  EXPECT_TRUE(c.enabled());
  EXPECT_TRUE(c.strips("Access-Control-Allow-Origin"));
  EXPECT_TRUE(c.strips("access-control-allow-credentials"));
  EXPECT_TRUE(c.strips("Access-Control-Expose-Headers"));
  EXPECT_FALSE(c.strips("Access-Control-"));
  EXPECT_FALSE(c.strips("Access-Control"));
  EXPECT_FALSE(c.strips("Vary"));
  EXPECT_FALSE(c.strips("X-Access-Control-Allow-Origin"));
}

TEST(CorsDevelopment, LocalhostOriginsWithoutCredentials) {
  auto c = make("environment: development\n");
  EXPECT_TRUE(c.enabled());
  for (const char* origin :
       {"http://localhost", "http://localhost:3000", "https://localhost:5173",
        "http://LOCALHOST:8080", "http://127.0.0.1", "http://127.0.0.1:8000",
        "https://127.0.0.1:443", "http://[::1]", "http://[::1]:3000", "https://[::1]:4200"}) {
    EXPECT_TRUE(c.allows(origin)) << origin;
  }
  for (const char* origin : {"http://localhost.evil.com", "http://evil.localhost",
                             "http://127.0.0.2:3000", "http://example.com", "http://[::2]:3000",
                             "ftp://localhost", "null", "http://localhost:3000/"}) {
    EXPECT_FALSE(c.allows(origin)) << origin;
  }
  auto a = preflight(c, "http://localhost:5173", "PATCH", "content-type, x-anything");
  EXPECT_EQ(a.kind, Preflight::allowed);
  EXPECT_EQ(a.lines, kVary +
                         "Access-Control-Allow-Origin: http://localhost:5173\r\n"
                         "Access-Control-Allow-Methods: GET, HEAD, POST, PUT, PATCH, DELETE\r\n"
                         "Access-Control-Max-Age: 600\r\n"
                         "Access-Control-Allow-Headers: content-type, x-anything\r\n");
  EXPECT_EQ(actual(c, "http://localhost:5173"),
            "Vary: Origin\r\n"
            "Access-Control-Allow-Origin: http://localhost:5173\r\n"
            "Access-Control-Expose-Headers: X-Request-ID, RateLimit, RateLimit-Policy, "
            "Retry-After\r\n");
  // A cors block replaces the localhost default entirely.
  EXPECT_FALSE(make("environment: development\ncors: {origins: [\"https://a.example\"]}\n")
                   .allows("http://localhost:3000"));
}

TEST(CorsActual, AppendAllocatesNothingWhenTheBufferHasRoom) {
  auto c = make(kExample);
  std::string out;
  out.reserve(4096);
  const char* data = out.data();
  c.append_actual("https://app.example.com", out);
  c.preflight("OPTIONS", "https://app.example.com", "POST", "content-type, authorization", out);
  EXPECT_EQ(out.data(), data);
}

}  // namespace
}  // namespace gatehouse::filters::cors
