// SecurityHeaders with configs written as YAML: the lines of each preset, HSTS by environment and
// transport, upstream values winning unless force, overrides, and what is stripped.
#include "filters/security_headers/security_headers_filter.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "config/config.hpp"
#include "filters/registry.hpp"
#include "filters/security_headers/config.hpp"
#include "http/fields.hpp"

namespace gatehouse::filters::security_headers {
namespace {

const std::string kUpstreams =
    "upstreams:\n"
    "  app: {targets: [\"127.0.0.1:8000\"]}\n";

SecurityHeaders make(const std::string& yaml) {
  auto cfg = config::load_config_string(kUpstreams + yaml, "t.yaml", filters::config_sections());
  return SecurityHeaders(filters::security_headers::settings(cfg), cfg.environment);
}

std::string local(const SecurityHeaders& h, bool tls) {
  std::string out;
  h.append_local(out, tls);
  return out;
}

// Upstream response headers, compared case-insensitively as a real header map would.
struct Upstream {
  std::set<std::string> names;
  bool operator()(std::string_view name) const {
    for (const auto& n : names) {
      if (http::iequals(n, name)) {
        return true;
      }
    }
    return false;
  }
};

std::string proxied(const SecurityHeaders& h, bool tls, const Upstream& upstream) {
  std::string out;
  h.append(out, tls, upstream);
  return out;
}

const std::string kStrict =
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: strict-origin-when-cross-origin\r\n"
    "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; object-src 'none'; "
    "base-uri 'self'\r\n"
    "Permissions-Policy: camera=(), microphone=(), geolocation=(), payment=(), usb=()\r\n"
    "Cross-Origin-Opener-Policy: same-origin\r\n"
    "X-XSS-Protection: 0\r\n";

const std::string kRelaxed =
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: SAMEORIGIN\r\n"
    "Referrer-Policy: strict-origin-when-cross-origin\r\n"
    "X-XSS-Protection: 0\r\n";

const std::string kHsts = "Strict-Transport-Security: max-age=31536000; includeSubDomains\r\n";

TEST(SecurityHeaders, StrictIsTheProductionDefault) {
  auto h = make("");
  EXPECT_TRUE(h.enabled());
  EXPECT_EQ(local(h, false), kStrict);
  EXPECT_EQ(local(h, true), kStrict);  // no HSTS unless configured
  EXPECT_EQ(proxied(h, false, {}), kStrict);
}

TEST(SecurityHeaders, RelaxedIsTheDevelopmentDefault) {
  auto h = make("environment: development\n");
  EXPECT_EQ(local(h, false), kRelaxed);
  EXPECT_EQ(local(make("security_headers: {preset: relaxed}\n"), true), kRelaxed);
}

TEST(SecurityHeaders, ConfiguredCspInEveryPreset) {
  const std::string csp =
      "security_headers: {preset: %s, content_security_policy: \"img-src *\"}\n";
  auto with = [&](const char* preset) {
    std::string yaml = csp;
    yaml.replace(yaml.find("%s"), 2, preset);
    return local(make(yaml), false);
  };
  EXPECT_NE(with("strict").find("Content-Security-Policy: img-src *\r\n"), std::string::npos);
  EXPECT_EQ(with("strict").find("frame-ancestors"), std::string::npos);
  EXPECT_EQ(with("relaxed"),
            "X-Content-Type-Options: nosniff\r\n"
            "X-Frame-Options: SAMEORIGIN\r\n"
            "Referrer-Policy: strict-origin-when-cross-origin\r\n"
            "Content-Security-Policy: img-src *\r\n"
            "X-XSS-Protection: 0\r\n");
  EXPECT_EQ(with("off"), "Content-Security-Policy: img-src *\r\n");
  // An empty policy removes the strict one.
  EXPECT_EQ(local(make("security_headers: {content_security_policy: \"\"}\n"), false)
                .find("Content-Security-Policy"),
            std::string::npos);
}

TEST(SecurityHeaders, OffSendsAndStripsNothing) {
  auto h = make("security_headers: off\n");
  EXPECT_FALSE(h.enabled());
  EXPECT_EQ(local(h, true), "");
  EXPECT_FALSE(h.strips("Server"));
  EXPECT_FALSE(h.strips("X-Powered-By"));
  EXPECT_FALSE(make("security_headers: {preset: off, force: true}\n").enabled());
}

TEST(SecurityHeaders, HstsOnlyInProductionOverTls) {
  auto prod = make("security_headers: {hsts: {max_age: 1y}}\n");
  EXPECT_EQ(local(prod, true), kStrict + kHsts);
  EXPECT_EQ(local(prod, false), kStrict);
  EXPECT_EQ(proxied(prod, true, {}), kStrict + kHsts);
  EXPECT_EQ(proxied(prod, false, {}), kStrict);

  auto dev = make("environment: development\nsecurity_headers: {hsts: {max_age: 1y}}\n");
  EXPECT_EQ(local(dev, true), kRelaxed);
  EXPECT_FALSE(make("environment: development\nsecurity_headers: {hsts: {}, force: true}\n")
                   .strips("Strict-Transport-Security"));

  // With preset off, a configured HSTS is still sent.
  EXPECT_EQ(local(make("security_headers: {preset: off, hsts: {}}\n"), true), kHsts);
}

TEST(SecurityHeaders, HstsValue) {
  using namespace std::chrono_literals;
  EXPECT_EQ(hsts_value({kYear, true, false}), "max-age=31536000; includeSubDomains");
  EXPECT_EQ(hsts_value({2 * kYear, true, true}), "max-age=63072000; includeSubDomains; preload");
  EXPECT_EQ(hsts_value({600s, false, false}), "max-age=600");
  EXPECT_EQ(hsts_value({0s, false, false}), "max-age=0");
  EXPECT_EQ(
      local(make("security_headers: {preset: off, hsts: {max_age: 2y, preload: true}}\n"), true),
      "Strict-Transport-Security: max-age=63072000; includeSubDomains; preload\r\n");
}

TEST(SecurityHeaders, UpstreamValuesWinWithoutForce) {
  auto h = make("security_headers: {hsts: {}}\n");
  Upstream upstream{{"x-frame-options", "Content-Security-Policy", "STRICT-TRANSPORT-SECURITY"}};
  EXPECT_EQ(proxied(h, true, upstream),
            "X-Content-Type-Options: nosniff\r\n"
            "Referrer-Policy: strict-origin-when-cross-origin\r\n"
            "Permissions-Policy: camera=(), microphone=(), geolocation=(), payment=(), usb=()\r\n"
            "Cross-Origin-Opener-Policy: same-origin\r\n"
            "X-XSS-Protection: 0\r\n");
  EXPECT_FALSE(h.strips("X-Frame-Options"));
  EXPECT_FALSE(h.strips("Content-Security-Policy"));
}

TEST(SecurityHeaders, ForceReplacesTheUpstreamsValues) {
  auto h = make("security_headers: {force: true, hsts: {}}\n");
  for (const char* name :
       {"X-Content-Type-Options", "x-frame-options", "Referrer-Policy", "Content-Security-Policy",
        "Permissions-Policy", "Cross-Origin-Opener-Policy", "X-XSS-Protection",
        "Strict-Transport-Security", "Server", "X-Powered-By"}) {
    EXPECT_TRUE(h.strips(name)) << name;
  }
  EXPECT_FALSE(h.strips("Content-Type"));
  EXPECT_FALSE(h.strips("Set-Cookie"));
  // The session drops what strips() says, so the callback would answer false; even if it did not,
  // force sends every line.
  Upstream everything{{"X-Frame-Options", "Content-Security-Policy", "X-XSS-Protection"}};
  EXPECT_EQ(proxied(h, true, everything), kStrict + kHsts);
}

TEST(SecurityHeaders, StripsServerAndPoweredByCaseInsensitively) {
  for (const char* yaml : {"", "environment: development\n"}) {
    auto h = make(yaml);
    EXPECT_TRUE(h.strips("Server"));
    EXPECT_TRUE(h.strips("server"));
    EXPECT_TRUE(h.strips("X-POWERED-BY"));
    EXPECT_FALSE(h.strips("X-Frame-Options"));
    EXPECT_FALSE(h.strips("Serve"));
    EXPECT_FALSE(h.strips("Servers"));
    EXPECT_FALSE(h.strips(""));
  }
}

TEST(SecurityHeaders, OverridesReplaceRemoveAndAdd) {
  auto h = make(
      "security_headers:\n"
      "  hsts: {}\n"
      "  overrides:\n"
      "    x-frame-options: SAMEORIGIN\n"
      "    Cross-Origin-Resource-Policy: same-site\n"
      "    Permissions-Policy: null\n"
      "    Cross-Origin-Opener-Policy: \"\"\n"
      "    X-Permitted-Cross-Domain-Policies: none\n");
  // Replaced in place (keeping the preset's spelling), removed, added in file order, HSTS last.
  EXPECT_EQ(local(h, true),
            "X-Content-Type-Options: nosniff\r\n"
            "X-Frame-Options: SAMEORIGIN\r\n"
            "Referrer-Policy: strict-origin-when-cross-origin\r\n"
            "Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; object-src "
            "'none'; base-uri 'self'\r\n"
            "X-XSS-Protection: 0\r\n"
            "Cross-Origin-Resource-Policy: same-site\r\n"
            "X-Permitted-Cross-Domain-Policies: none\r\n" +
                kHsts);
  // A removed header is the upstream's business, even with force.
  auto forced = make("security_headers: {force: true, overrides: {X-XSS-Protection: null}}\n");
  EXPECT_FALSE(forced.strips("X-XSS-Protection"));
  EXPECT_TRUE(forced.strips("X-Frame-Options"));
  // Overrides apply on top of preset off too.
  EXPECT_EQ(
      local(make("security_headers: {preset: off, overrides: {X-Frame-Options: DENY}}\n"), false),
      "X-Frame-Options: DENY\r\n");
}

TEST(SecurityHeaders, LinesExposeNamesAndTlsOnly) {
  auto h = make("security_headers: {hsts: {}}\n");
  ASSERT_EQ(h.lines().size(), 8u);
  EXPECT_EQ(h.lines().front().name, "X-Content-Type-Options");
  EXPECT_FALSE(h.lines().front().tls_only);
  EXPECT_EQ(h.lines().back().name, "Strict-Transport-Security");
  EXPECT_TRUE(h.lines().back().tls_only);
}

TEST(SecurityHeaders, AppendAllocatesNothingWhenTheBufferHasRoom) {
  auto h = make("security_headers: {hsts: {}}\n");
  std::string out;
  out.reserve(4096);
  const char* data = out.data();
  h.append(out, true, [](std::string_view) { return false; });
  h.append_local(out, true);
  EXPECT_EQ(out.data(), data);
  EXPECT_EQ(out, kStrict + kHsts + kStrict + kHsts);
}

}  // namespace
}  // namespace gatehouse::filters::security_headers
