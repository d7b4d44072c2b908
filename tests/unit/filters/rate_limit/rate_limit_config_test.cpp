// The rate_limit section: accepted forms, inheritance into route blocks, and the emitted form
// loading back to the same configuration. Rejections: rate_limit_errors_test.cpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "filters/rate_limit/config.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using namespace std::chrono_literals;
using filters::rate_limit::Ban;
using filters::rate_limit::Block;
using filters::rate_limit::KeyPart;
using filters::rate_limit::RouteLimits;
using ratelimit::Algorithm;
using ratelimit::Rate;
using testing::cidr_texts;
using testing::expect_same_rate_limits;
using testing::kBase;

Config load(const std::string& yaml) {
  return load_config_string(yaml, "t.yaml", filters::config_sections());
}

std::vector<std::string> rate_texts(const Block& b) {
  std::vector<std::string> out;
  for (const auto& r : b.limits) {
    out.push_back(r.text());
  }
  return out;
}

std::vector<std::string> key_texts(const Block& b) {
  std::vector<std::string> out;
  for (const auto& k : b.key) {
    out.push_back(k.text());
  }
  return out;
}

void expect_round_trip(const Config& c) {
  std::string yaml = to_yaml(c, filters::config_sections());
  SCOPED_TRACE(yaml);
  Config again;
  try {
    again = load_config_string(yaml, "emitted.yaml", filters::config_sections());
  } catch (const ConfigError& e) {
    FAIL() << e.what();
  }
  expect_same_rate_limits(c, again);
  EXPECT_EQ(to_yaml(again, filters::config_sections()), yaml);
}

// The example from the issue.
const std::string kExample = R"(upstreams:
  app: {targets: ["127.0.0.1:8000"]}
rate_limit:
  algorithm: sliding_window
  key: ip
  limits: "200/day; 50/hour"
  headers: [ietf, x-ratelimit]
  exempt_paths: [/health, /static/]
  exempt_ips: [127.0.0.1/32, ::1/128]
  ban: {after: 20, within: 1m, for: 15m}
  max_in_flight: 5
  max_keys: 1000000
routes:
  - {name: generate, match: {path_prefix: /api/generate, methods: [POST]}, upstream: app,
     rate_limit: {limits: "10/minute", key: ip}}
  - {name: revise, match: {path_prefix: /api/revise}, upstream: app, rate_limit: {limits: "20/hour"}}
  - {name: static, match: {path_prefix: /static}, upstream: app, rate_limit: off}
  - {name: both, match: {path_prefix: /v2}, upstream: app,
     rate_limit: [{key: "header:X-API-Key", limits: "100/minute"}, {key: global, limits: "1000/minute"}]}
  - {name: default, upstream: app}
)";

TEST(RateLimitConfig, AbsentMeansNoDefaultsAndRoutesInherit) {
  auto c = load(kBase);
  EXPECT_FALSE(filters::rate_limit::settings(c).defaults.has_value());
  EXPECT_EQ(filters::rate_limit::settings(c).max_keys, 1'000'000u);
  ASSERT_EQ(c.routes.size(), 1u);
  EXPECT_EQ(filters::rate_limit::route_limits(c.routes[0]).mode, RouteLimits::Mode::inherit);
  EXPECT_TRUE(filters::rate_limit::route_limits(c.routes[0]).blocks.empty());

  for (auto text :
       {"rate_limit:\n", "rate_limit: null\n", "rate_limit: off\n", "rate_limit: false\n"}) {
    SCOPED_TRACE(text);
    EXPECT_FALSE(filters::rate_limit::settings(load(kBase + text)).defaults.has_value());
  }
}

TEST(RateLimitConfig, BlockDefaults) {
  auto c = load(kBase + "rate_limit: {limits: 10/minute}\n");
  ASSERT_TRUE(filters::rate_limit::settings(c).defaults.has_value());
  const Block& b = *filters::rate_limit::settings(c).defaults;
  EXPECT_EQ(b.algorithm, Algorithm::sliding_window);
  EXPECT_EQ(key_texts(b), std::vector<std::string>{"ip"});
  EXPECT_EQ(b.limits, (std::vector<Rate>{Rate{10, 1, "minute", 60}}));
  EXPECT_EQ(b.burst, 0u);
  EXPECT_TRUE(b.ietf_headers);
  EXPECT_TRUE(b.x_headers);
  EXPECT_TRUE(b.exempt_paths.empty());
  EXPECT_TRUE(b.exempt_ips.empty());
  EXPECT_FALSE(b.ban.has_value());
  EXPECT_EQ(b.max_in_flight, 0u);
  EXPECT_EQ(filters::rate_limit::settings(c).max_keys, 1'000'000u);
  EXPECT_EQ(filters::rate_limit::settings(c).ipv6_prefix, 64u);
  EXPECT_TRUE(filters::rate_limit::settings(c).applies);
}

TEST(RateLimitConfig, TheIssueExample) {
  auto c = load(kExample);
  ASSERT_TRUE(filters::rate_limit::settings(c).defaults.has_value());
  const Block& d = *filters::rate_limit::settings(c).defaults;
  EXPECT_TRUE(filters::rate_limit::settings(c).applies);
  EXPECT_EQ(rate_texts(d), (std::vector<std::string>{"200/day", "50/hour"}));
  EXPECT_EQ(d.exempt_paths, (std::vector<std::string>{"/health", "/static/"}));
  EXPECT_EQ(cidr_texts(d), (std::vector<std::string>{"127.0.0.1/32", "::1/128"}));
  EXPECT_EQ(d.ban, (Ban{20, 60s, 15min}));
  EXPECT_EQ(d.max_in_flight, 5u);

  ASSERT_EQ(c.routes.size(), 5u);
  const auto& generate = filters::rate_limit::route_limits(c.routes[0]);
  ASSERT_EQ(generate.mode, RouteLimits::Mode::own);
  ASSERT_EQ(generate.blocks.size(), 1u);
  // Own limits; max_in_flight is not inherited; everything else is.
  EXPECT_EQ(rate_texts(generate.blocks[0]), std::vector<std::string>{"10/minute"});
  EXPECT_EQ(generate.blocks[0].max_in_flight, 0u);
  EXPECT_EQ(generate.blocks[0].exempt_paths, d.exempt_paths);
  EXPECT_EQ(cidr_texts(generate.blocks[0]), cidr_texts(d));
  EXPECT_EQ(generate.blocks[0].ban, d.ban);

  EXPECT_EQ(filters::rate_limit::route_limits(c.routes[1]).mode, RouteLimits::Mode::own);
  EXPECT_EQ(rate_texts(filters::rate_limit::route_limits(c.routes[1]).blocks.at(0)),
            std::vector<std::string>{"20/hour"});
  EXPECT_EQ(filters::rate_limit::route_limits(c.routes[2]).mode, RouteLimits::Mode::off);
  EXPECT_TRUE(filters::rate_limit::route_limits(c.routes[2]).blocks.empty());

  const auto& both = filters::rate_limit::route_limits(c.routes[3]);
  ASSERT_EQ(both.mode, RouteLimits::Mode::own);
  ASSERT_EQ(both.blocks.size(), 2u);
  EXPECT_EQ(both.blocks[0].key, (std::vector<KeyPart>{{KeyPart::Kind::header, "X-API-Key"}}));
  EXPECT_EQ(key_texts(both.blocks[0]), std::vector<std::string>{"header:X-API-Key"});
  EXPECT_EQ(rate_texts(both.blocks[0]), std::vector<std::string>{"100/minute"});
  EXPECT_EQ(key_texts(both.blocks[1]), std::vector<std::string>{"global"});
  EXPECT_EQ(rate_texts(both.blocks[1]), std::vector<std::string>{"1000/minute"});
  // The header block inherits the ban; the global block has no client to ban, so it does not.
  EXPECT_EQ(both.blocks[0].ban, d.ban);
  EXPECT_FALSE(both.blocks[1].ban.has_value());

  EXPECT_EQ(filters::rate_limit::route_limits(c.routes[4]).mode, RouteLimits::Mode::inherit);
}

TEST(RateLimitConfig, EveryFieldOfABlock) {
  auto c = load(kBase + R"(rate_limit:
  algorithm: gcra
  key: [ip, route, "header:x-tenant"]
  limits: "10 per 5 minutes | 1000/DAY"
  burst: 3
  headers: x-ratelimit
  exempt_paths: [/a]
  exempt_ips: ["10.0.0.0/8"]
  ban: {after: 1000000, within: 365d, for: 1ms}
  max_in_flight: 1000000
  max_keys: 100000000
)");
  const Block& b = *filters::rate_limit::settings(c).defaults;
  EXPECT_EQ(b.algorithm, Algorithm::gcra);
  EXPECT_EQ(b.key, (std::vector<KeyPart>{{KeyPart::Kind::ip, ""},
                                         {KeyPart::Kind::route, ""},
                                         {KeyPart::Kind::header, "x-tenant"}}));
  EXPECT_EQ(b.limits, (std::vector<Rate>{Rate{10, 5, "minute", 300}, Rate{1000, 1, "day", 86400}}));
  EXPECT_EQ(b.burst, 3u);
  EXPECT_FALSE(b.ietf_headers);
  EXPECT_TRUE(b.x_headers);
  EXPECT_EQ(b.ban, (Ban{1'000'000, 365 * 24h, 1ms}));
  EXPECT_EQ(b.max_in_flight, 1'000'000u);
  EXPECT_EQ(filters::rate_limit::settings(c).max_keys, 100'000'000u);
}

TEST(RateLimitConfig, AlgorithmsAndHeaders) {
  struct Case {
    std::string snippet;
    Algorithm algorithm;
    bool ietf;
    bool x;
  };
  const std::vector<Case> cases{
      {"{limits: 1/second, algorithm: fixed_window, headers: ietf}", Algorithm::fixed_window, true,
       false},
      {"{limits: 1/second, algorithm: token_bucket, headers: none}", Algorithm::token_bucket, false,
       false},
      {"{limits: 1/second, algorithm: sliding_window, headers: []}", Algorithm::sliding_window,
       false, false},
      {"{limits: 1/second, headers: [x-ratelimit, ietf]}", Algorithm::sliding_window, true, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.snippet);
    auto b =
        *filters::rate_limit::settings(load(kBase + "rate_limit: " + c.snippet + "\n")).defaults;
    EXPECT_EQ(b.algorithm, c.algorithm);
    EXPECT_EQ(b.ietf_headers, c.ietf);
    EXPECT_EQ(b.x_headers, c.x);
  }
}

TEST(RateLimitConfig, DefaultsWithoutLimitsOnlySupplyFields) {
  auto c = load(kBase + R"(rate_limit: {algorithm: token_bucket, burst: 5, key: "header:X-Key"}
routes:
  - {name: a, upstream: app, rate_limit: {limits: 10/minute}}
  - {name: b, upstream: app}
)");
  ASSERT_TRUE(filters::rate_limit::settings(c).defaults.has_value());
  EXPECT_FALSE(filters::rate_limit::settings(c).applies);
  EXPECT_TRUE(filters::rate_limit::settings(c).defaults->limits.empty());
  const Block& a = filters::rate_limit::route_limits(c.routes[0]).blocks.at(0);
  EXPECT_EQ(a.algorithm, Algorithm::token_bucket);
  EXPECT_EQ(a.burst, 5u);
  EXPECT_EQ(key_texts(a), std::vector<std::string>{"header:X-Key"});
  EXPECT_EQ(filters::rate_limit::route_limits(c.routes[1]).mode, RouteLimits::Mode::inherit);

  EXPECT_FALSE(
      filters::rate_limit::settings(load(kBase + "rate_limit: {max_in_flight: 0}\n")).applies);
  EXPECT_FALSE(filters::rate_limit::settings(load(kBase + "rate_limit: {max_keys: 5}\n")).applies);
  // Setting only the IPv6 prefix (it also shapes max_connections_per_ip) limits nothing.
  auto prefix_only = load(kBase + "rate_limit: {ipv6_prefix: 48}\n");
  EXPECT_FALSE(filters::rate_limit::settings(prefix_only).applies);
  EXPECT_EQ(filters::rate_limit::settings(prefix_only).ipv6_prefix, 48u);
  EXPECT_TRUE(
      filters::rate_limit::settings(load(kBase + "rate_limit: {max_in_flight: 1}\n")).applies);
}

TEST(RateLimitConfig, RouteFieldsOverrideAndLimitsAreNeverInherited) {
  auto c = load(kBase + R"(rate_limit:
  limits: 100/minute
  max_in_flight: 4
  headers: none
  ban: {after: 3, within: 10s, for: 1m}
routes:
  - name: a
    upstream: app
    rate_limit: {max_in_flight: 2, headers: [ietf], ban: off, exempt_paths: [/x]}
  - name: b
    upstream: app
    rate_limit: {limits: 5/second, key: [ip, route]}
)");
  const Block& a = filters::rate_limit::route_limits(c.routes[0]).blocks.at(0);
  EXPECT_TRUE(a.limits.empty());
  EXPECT_EQ(a.max_in_flight, 2u);
  EXPECT_TRUE(a.ietf_headers);
  EXPECT_FALSE(a.x_headers);
  EXPECT_FALSE(a.ban.has_value());
  EXPECT_EQ(a.exempt_paths, std::vector<std::string>{"/x"});
  const Block& b = filters::rate_limit::route_limits(c.routes[1]).blocks.at(0);
  EXPECT_EQ(rate_texts(b), std::vector<std::string>{"5/second"});
  EXPECT_EQ(b.max_in_flight, 0u);
  EXPECT_FALSE(b.ietf_headers);
  EXPECT_EQ(b.ban, (Ban{3, 10s, 1min}));
  EXPECT_EQ(key_texts(b), (std::vector<std::string>{"ip", "route"}));
}

TEST(RateLimitConfig, InheritedBanSkipsBlocksWithoutAClient) {
  auto c = load(kBase + R"(rate_limit: {ban: {after: 1, within: 1m, for: 1m}}
routes:
  - name: a
    upstream: app
    rate_limit: [{limits: 1/second, key: global}, {limits: 1/second, key: route},
                 {limits: 1/second, key: [route, ip]}, {limits: 1/second}]
)");
  const auto& blocks = filters::rate_limit::route_limits(c.routes[0]).blocks;
  ASSERT_EQ(blocks.size(), 4u);
  EXPECT_FALSE(blocks[0].ban.has_value());
  EXPECT_FALSE(blocks[1].ban.has_value());
  EXPECT_EQ(blocks[2].ban, (Ban{1, 1min, 1min}));
  EXPECT_EQ(blocks[3].ban, (Ban{1, 1min, 1min}));
}

TEST(RateLimitConfig, RouteBlocksWithoutDefaults) {
  auto c = load(kBase + R"(routes:
  - {name: a, upstream: app, rate_limit: {limits: 1/second, algorithm: token_bucket, burst: 9}}
  - {name: b, upstream: app, rate_limit: false}
  - {name: c, upstream: app, rate_limit: FALSE}
  - {name: d, upstream: app, rate_limit: null}
  - name: e
    upstream: app
    rate_limit: [{limits: 1/second}, {limits: 2/second}, {limits: 3/second}, {limits: 4/second},
                 {limits: 5/second}, {limits: 6/second}, {limits: 7/second}, {limits: 8/second}]
)");
  EXPECT_FALSE(filters::rate_limit::settings(c).defaults.has_value());
  const Block& a = filters::rate_limit::route_limits(c.routes[0]).blocks.at(0);
  EXPECT_EQ(a.algorithm, Algorithm::token_bucket);
  EXPECT_EQ(a.burst, 9u);
  EXPECT_EQ(key_texts(a), std::vector<std::string>{"ip"});
  EXPECT_EQ(filters::rate_limit::route_limits(c.routes[1]).mode, RouteLimits::Mode::off);
  EXPECT_EQ(filters::rate_limit::route_limits(c.routes[2]).mode, RouteLimits::Mode::off);
  EXPECT_EQ(filters::rate_limit::route_limits(c.routes[3]).mode, RouteLimits::Mode::inherit);
  EXPECT_EQ(filters::rate_limit::route_limits(c.routes[4]).blocks.size(), 8u);
}

TEST(RateLimitEmit, NullWhenAbsentAndRoutesOmitInherit) {
  auto c = load(kBase);
  std::string yaml = to_yaml(c, filters::config_sections());
  EXPECT_NE(yaml.find("\nrate_limit: null\n"), std::string::npos) << yaml;
  EXPECT_EQ(yaml.find("    rate_limit"), std::string::npos) << yaml;
  expect_round_trip(c);
}

TEST(RateLimitEmit, EveryKeyOfTheEffectiveSection) {
  auto c = load(kBase + R"(rate_limit:
  algorithm: token_bucket
  limits: "200/day; 10 per 5 minutes"
  burst: 20
  key: [ip, "header:X-API-Key"]
  exempt_ips: ["::1"]
  ban: {after: 20, within: 1m, for: 15m}
routes:
  - {name: a, upstream: app, rate_limit: {limits: 10/minute, ban: off, headers: ietf}}
  - {name: b, upstream: app, rate_limit: off}
  - {name: c, upstream: app}
)");
  std::string yaml = to_yaml(c, filters::config_sections());
  auto section =
      yaml.substr(yaml.find("rate_limit:"), yaml.find("log:") - yaml.find("rate_limit:"));
  EXPECT_EQ(section, R"(rate_limit:
  algorithm: token_bucket
  key: [ip, header:X-API-Key]
  limits: 200/day; 10 per 5 minutes
  burst: 20
  headers: [ietf, x-ratelimit]
  exempt_paths: []
  exempt_ips: [::1/128]
  ban:
    after: 20
    within: 60s
    for: 900s
  max_in_flight: 0
  max_keys: 1000000
  ipv6_prefix: 64
  store: memory
routes:
  - name: a
    match:
      path_prefix: /
      methods: []
      host: ""
    upstream: app
    timeout: 0s
    buffer_request: false
    rate_limit:
      - algorithm: token_bucket
        key: [ip, header:X-API-Key]
        limits: 10/minute
        burst: 20
        headers: [ietf]
        exempt_paths: []
        exempt_ips: [::1/128]
        ban: off
        max_in_flight: 0
  - name: b
    match:
      path_prefix: /
      methods: []
      host: ""
    upstream: app
    timeout: 0s
    buffer_request: false
    rate_limit: off
  - name: c
    match:
      path_prefix: /
      methods: []
      host: ""
    upstream: app
    timeout: 0s
    buffer_request: false
)");
  expect_round_trip(c);
}

TEST(RateLimitEmit, RoundTrips) {
  for (const std::string& yaml : std::vector<std::string>{
           kBase + "rate_limit: {limits: 10/minute}\n",
           kBase + "rate_limit: {max_keys: 7, headers: none, key: global}\n",
           kBase + "rate_limit: {ipv6_prefix: 48}\n",
           kBase + "rate_limit: {limits: 1/second, ipv6_prefix: 128}\n",
           kBase + "rate_limit: {max_in_flight: 3, key: [global]}\n" +
               "routes:\n  - {name: a, upstream: app, rate_limit: [{limits: 1/second}, "
               "{max_in_flight: 1, key: [route, ip]}]}\n",
           kBase + "rate_limit: {algorithm: gcra, burst: 4, exempt_paths: [/h, \"/a:b\"]}\n" +
               "routes:\n  - {name: a, upstream: app, rate_limit: {limits: \"1 per 3 hours, "
               "5/7 days\", algorithm: token_bucket}}\n" +
               "  - {name: b, upstream: app, rate_limit: {limits: 2/day, burst: 1}}\n",
       }) {
    SCOPED_TRACE(yaml);
    expect_round_trip(load(yaml));
  }
}

}  // namespace
}  // namespace gatehouse::config
