// The security_headers section: defaults per environment, accepted forms, and the emitted form
// loading back to the same settings. Rejections: security_headers_errors_test.cpp.
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "filters/registry.hpp"
#include "filters/security_headers/config.hpp"

namespace gatehouse::config {
namespace {

using namespace std::chrono_literals;
using filters::security_headers::Hsts;
using filters::security_headers::kStrictCsp;
using filters::security_headers::Override;
using filters::security_headers::Preset;
using filters::security_headers::Settings;
using testing::kBase;

Settings load(const std::string& yaml) {
  return filters::security_headers::settings(
      load_config_string(kBase + yaml, "t.yaml", filters::config_sections()));
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
  EXPECT_TRUE(filters::security_headers::settings(c) == filters::security_headers::settings(again));
  EXPECT_EQ(to_yaml(again, filters::config_sections()), emitted);
}

TEST(SecurityHeadersConfig, AbsentIsStrictInProductionAndRelaxedInDevelopment) {
  Settings prod = load("");
  EXPECT_EQ(prod.preset, Preset::strict);
  EXPECT_EQ(prod.content_security_policy, kStrictCsp);
  EXPECT_FALSE(prod.hsts.has_value());
  EXPECT_TRUE(prod.overrides.empty());
  EXPECT_FALSE(prod.force);
  EXPECT_TRUE(prod == Settings{});  // the CLI config (--upstream) gets the same

  Settings dev = load("environment: development\n");
  EXPECT_EQ(dev.preset, Preset::relaxed);
  EXPECT_EQ(dev.content_security_policy, "");
  EXPECT_FALSE(dev.hsts.has_value());

  EXPECT_TRUE(load("environment: development\nsecurity_headers:\n") == dev);
  EXPECT_TRUE(load("environment: development\nsecurity_headers: {}\n") == dev);
  EXPECT_TRUE(load("security_headers: {}\n") == prod);
}

TEST(SecurityHeadersConfig, PresetOverridesTheEnvironmentDefault) {
  EXPECT_EQ(load("environment: development\nsecurity_headers: {preset: strict}\n").preset,
            Preset::strict);
  EXPECT_EQ(load("environment: development\nsecurity_headers: {preset: strict}\n")
                .content_security_policy,
            kStrictCsp);
  Settings relaxed = load("security_headers: {preset: relaxed}\n");
  EXPECT_EQ(relaxed.preset, Preset::relaxed);
  EXPECT_EQ(relaxed.content_security_policy, "");
}

TEST(SecurityHeadersConfig, OffForms) {
  for (const char* yaml : {"security_headers: off\n", "security_headers: false\n",
                           "security_headers: {preset: off}\n"}) {
    SCOPED_TRACE(yaml);
    Settings s = load(yaml);
    EXPECT_EQ(s.preset, Preset::off);
    EXPECT_EQ(s.content_security_policy, "");
    EXPECT_FALSE(s.hsts.has_value());
  }
  // Explicit settings still apply on top of an empty preset.
  Settings s =
      load("security_headers: {preset: off, content_security_policy: \"default-src *\"}\n");
  EXPECT_EQ(s.content_security_policy, "default-src *");
}

TEST(SecurityHeadersConfig, ContentSecurityPolicy) {
  EXPECT_EQ(load("security_headers: {content_security_policy: \"default-src 'self'\"}\n")
                .content_security_policy,
            "default-src 'self'");
  EXPECT_EQ(load("security_headers: {content_security_policy: \"\"}\n").content_security_policy,
            "");
  EXPECT_EQ(load("security_headers: {content_security_policy: null}\n").content_security_policy,
            kStrictCsp);
  EXPECT_EQ(load("security_headers: {preset: relaxed, content_security_policy: \"img-src *\"}\n")
                .content_security_policy,
            "img-src *");
}

TEST(SecurityHeadersConfig, Hsts) {
  EXPECT_EQ(load("security_headers: {hsts: {}}\n").hsts, (Hsts{365 * 24h, true, false}));
  EXPECT_EQ(load("security_headers: {hsts: {max_age: 2y, preload: true}}\n").hsts,
            (Hsts{2 * 365 * 24h, true, true}));
  EXPECT_EQ(load("security_headers: {hsts: {max_age: 1y, include_subdomains: true, "
                 "preload: true}}\n")
                .hsts,
            (Hsts{365 * 24h, true, true}));
  EXPECT_EQ(load("security_headers: {hsts: {max_age: 600s, include_subdomains: false}}\n").hsts,
            (Hsts{600s, false, false}));
  EXPECT_EQ(load("security_headers: {hsts: {max_age: 0s}}\n").hsts, (Hsts{0s, true, false}));
  EXPECT_EQ(load("security_headers: {hsts: {max_age: 1d}}\n").hsts, (Hsts{24h, true, false}));
  EXPECT_FALSE(load("security_headers: {hsts: off}\n").hsts.has_value());
  EXPECT_FALSE(load("security_headers: {hsts: null}\n").hsts.has_value());
}

TEST(SecurityHeadersConfig, OverridesKeepFileOrderAndEmptyMeansRemove) {
  Settings s = load(
      "security_headers:\n"
      "  overrides:\n"
      "    X-Frame-Options: SAMEORIGIN\n"
      "    Cross-Origin-Resource-Policy: same-site\n"
      "    Permissions-Policy: \"\"\n"
      "    Cross-Origin-Opener-Policy: null\n"
      "    X-XSS-Protection:\n"
      "  force: true\n");
  std::vector<Override> expected{{"X-Frame-Options", "SAMEORIGIN"},
                                 {"Cross-Origin-Resource-Policy", "same-site"},
                                 {"Permissions-Policy", ""},
                                 {"Cross-Origin-Opener-Policy", ""},
                                 {"X-XSS-Protection", ""}};
  EXPECT_EQ(s.overrides, expected);
  EXPECT_TRUE(s.force);
}

TEST(SecurityHeadersConfig, EmitsEveryKey) {
  std::string yaml = to_yaml(load_config_string(kBase + "security_headers:\n"
                                                        "  preset: relaxed\n"
                                                        "  hsts: {max_age: 1y, preload: true}\n"
                                                        "  overrides: {X-Frame-Options: DENY, "
                                                        "Permissions-Policy: null}\n"
                                                        "  force: true\n",
                                                "t.yaml", filters::config_sections()),
                             filters::config_sections());
  EXPECT_NE(yaml.find("security_headers:\n"
                      "  preset: relaxed\n"
                      "  content_security_policy: \"\"\n"
                      "  hsts:\n"
                      "    max_age: 1y\n"
                      "    include_subdomains: true\n"
                      "    preload: true\n"
                      "  overrides: {X-Frame-Options: DENY, Permissions-Policy: \"\"}\n"
                      "  force: true\n"),
            std::string::npos)
      << yaml;
}

TEST(SecurityHeadersConfig, RoundTrips) {
  expect_round_trip("");
  expect_round_trip("environment: development\n");
  expect_round_trip("security_headers: off\n");
  expect_round_trip("security_headers: {hsts: {max_age: 90d, include_subdomains: false}}\n");
  expect_round_trip("security_headers: {hsts: {max_age: 3600s}, preset: relaxed}\n");
  expect_round_trip(
      "security_headers:\n"
      "  preset: strict\n"
      "  content_security_policy: \"default-src 'self'; img-src https: data:; "
      "script-src 'self' https://cdn.example.com/$${x}\"\n"
      "  hsts: {max_age: 2y, include_subdomains: true, preload: true}\n"
      "  overrides: {X-Frame-Options: SAMEORIGIN, X-Permitted-Cross-Domain-Policies: none, "
      "X-XSS-Protection: null}\n"
      "  force: true\n");
}

}  // namespace
}  // namespace gatehouse::config
