// The rate-limit step through RateLimiter, with configs written as YAML and time on a
// ManualClock: which limits apply, the keys they count, the headers and bodies of the answers,
// bans, concurrency caps, metrics, and counters carried over a reload.
#include "filters/rate_limit/rate_limit_filter.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "filters/rate_limit/config.hpp"
#include "filters/registry.hpp"
#include "http/fields.hpp"
#include "observability/logging.hpp"

namespace gatehouse::filters::rate_limit {
namespace {

using ratelimit::ManualClock;
using ratelimit::Nanos;

constexpr Nanos kSec = 1'000'000'000;
constexpr Nanos kMin = 60 * kSec;
constexpr std::int64_t kUnixStart = 1'700'000'000;

const std::string kUpstreams =
    "upstreams:\n"
    "  app: {targets: [\"127.0.0.1:8000\"]}\n";

struct Request {
  std::size_t route = 0;
  std::string ip = "203.0.113.7";
  std::string path = "/";
  std::map<std::string, std::string> headers;
};

std::string_view lookup(const void* ctx, std::string_view name) {
  const auto& headers = static_cast<const Request*>(ctx)->headers;
  for (const auto& [k, v] : headers) {
    if (http::iequals(k, name)) {
      return v;
    }
  }
  return {};
}

// The value of header `name` in a verdict's header lines; "(absent)" when missing.
std::string header(const Verdict& v, std::string_view name) {
  std::string_view rest = v.headers;
  while (!rest.empty()) {
    auto end = rest.find("\r\n");
    EXPECT_NE(end, std::string_view::npos) << "unterminated header line in: " << v.headers;
    auto line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 2);
    auto colon = line.find(": ");
    if (colon != std::string_view::npos && line.substr(0, colon) == name) {
      return std::string(line.substr(colon + 2));
    }
  }
  return "(absent)";
}

class RateLimiterTest : public ::testing::Test {
 protected:
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>(kSec, kUnixStart);
  std::shared_ptr<SharedState> state_;
  std::unique_ptr<RateLimiter> limiter_;

  void load(const std::string& yaml, const observability::ClientIpHasher* hasher = nullptr) {
    auto cfg =
        config::load_config_string(kUpstreams + yaml, "test.yaml", filters::config_sections());
    if (!state_) {
      state_ = std::make_shared<SharedState>(filters::rate_limit::settings(cfg).max_keys);
    }
    limiter_ = std::make_unique<RateLimiter>(cfg, 2, state_, clock_, hasher);
  }

  Verdict check(const Request& r, unsigned worker = 0) {
    RequestInfo info;
    info.route = r.route;
    info.client_ip = r.ip;
    info.path = r.path;
    info.header = &lookup;
    info.header_ctx = &r;
    Verdict v;
    limiter_->check(info, worker, v);
    return v;
  }
  // Checks and releases (a request that ended); whether it was allowed.
  bool allowed(const Request& r) {
    auto v = check(r);
    limiter_->release(v);
    return v.allowed();
  }
  int admitted(const Request& r, int attempts) {
    int n = 0;
    for (int i = 0; i < attempts; ++i) {
      n += allowed(r) ? 1 : 0;
    }
    return n;
  }
  std::string metrics() const {
    std::string out;
    limiter_->render_metrics(out);
    return out;
  }
};

TEST_F(RateLimiterTest, StackedLimitsHeaders) {
  load("rate_limit: {limits: \"200/day; 50/hour\", algorithm: fixed_window}\n");
  ASSERT_TRUE(limiter_->enabled());
  ASSERT_TRUE(limiter_->route_limited(0));
  auto v = check({});
  EXPECT_TRUE(v.allowed());
  EXPECT_EQ(v.status(), 0u);
  // Both limits in config order; the one with the fewest requests left is named.
  EXPECT_EQ(header(v, "RateLimit-Policy"), R"("day";q=200;w=86400, "hour";q=50;w=3600)");
  EXPECT_EQ(header(v, "RateLimit"), R"("hour";r=49;t=3600)");
  EXPECT_EQ(header(v, "X-RateLimit-Limit"), "50");
  EXPECT_EQ(header(v, "X-RateLimit-Remaining"), "49");
  EXPECT_EQ(header(v, "X-RateLimit-Reset"), std::to_string(kUnixStart + 3600));
  EXPECT_EQ(header(v, "Retry-After"), "(absent)");
  EXPECT_TRUE(v.held.empty());

  clock_->advance(10 * kSec);
  EXPECT_EQ(admitted({}, 60), 49);
  auto rejected = check({});
  EXPECT_EQ(rejected.kind, Verdict::Kind::limited);
  EXPECT_EQ(rejected.status(), 429u);
  EXPECT_STREQ(rejected.code(), "rate_limit_exceeded");
  EXPECT_EQ(rejected.message, "Rate limit exceeded: 50 per 1 hour");
  EXPECT_EQ(rejected.retry_after_s, 3590);
  EXPECT_EQ(header(rejected, "RateLimit"), R"("hour";r=0;t=3590)");
  EXPECT_EQ(header(rejected, "X-RateLimit-Remaining"), "0");
  EXPECT_EQ(header(rejected, "X-RateLimit-Reset"), std::to_string(kUnixStart + 10 + 3590));
  EXPECT_EQ(header(rejected, "Retry-After"), "3590");

  // The hour's rejections took nothing from the day: 150 left once the hour is over.
  clock_->set(kSec + 3600 * kSec);
  auto next = check({});
  EXPECT_TRUE(next.allowed());
  EXPECT_EQ(header(next, "RateLimit"), R"("hour";r=49;t=3600)");
  clock_->advance(1);
  EXPECT_EQ(admitted({}, 49), 49);
  clock_->set(kSec + 3 * 3600 * kSec);
  EXPECT_EQ(admitted({}, 50), 50);  // 150 of the day
  clock_->set(kSec + 4 * 3600 * kSec);
  EXPECT_EQ(admitted({}, 49), 49);
  auto last = check({});  // the 200th of the day and the 50th of the hour: the day is named
  EXPECT_TRUE(last.allowed());
  EXPECT_EQ(header(last, "RateLimit"), R"("day";r=0;t=72000)");
  EXPECT_EQ(header(last, "X-RateLimit-Limit"), "200");
  auto both = check({});  // refused by both: the longer wait is the answer
  EXPECT_FALSE(both.allowed());
  EXPECT_EQ(both.message, "Rate limit exceeded: 200 per 1 day");
  EXPECT_EQ(both.retry_after_s, 72000);
  clock_->set(kSec + 5 * 3600 * kSec);
  auto day = check({});
  EXPECT_FALSE(day.allowed());
  EXPECT_EQ(day.message, "Rate limit exceeded: 200 per 1 day");
  EXPECT_EQ(day.retry_after_s, 68400);
  EXPECT_EQ(header(day, "RateLimit"), R"("day";r=0;t=68400)");
}

// Short keys (a global bucket is the 4-byte limit prefix and one byte) stacked several deep, on
// a thread's first request: the per-thread key buffers must not move under the checks that
// point into them.
TEST_F(RateLimiterTest, StackedGlobalLimitsOnAFreshThread) {
  load(
      "rate_limit: {key: global, limits: \"3/second; 5/minute; 7/hour\", algorithm: "
      "fixed_window}\n");
  std::vector<bool> answers;
  std::thread t([&] {
    for (int i = 0; i < 6; ++i) {
      answers.push_back(check({.ip = "192.0.2." + std::to_string(i)}).allowed());
    }
  });
  t.join();
  EXPECT_EQ(answers, (std::vector<bool>{true, true, true, false, false, false}));
  clock_->advance(kSec);
  EXPECT_EQ(admitted({}, 5), 2);  // the minute's 5
}

TEST_F(RateLimiterTest, DefaultSlidingWindowHeaders) {
  load("rate_limit: {limits: 10/minute}\n");
  auto v = check({});
  // The sliding window is fully restored once the request has slid out of the next window.
  EXPECT_EQ(header(v, "RateLimit-Policy"), R"("minute";q=10;w=60)");
  EXPECT_EQ(header(v, "RateLimit"), R"("minute";r=9;t=120)");
  EXPECT_EQ(admitted({}, 9), 9);
  clock_->advance(kSec / 2);
  auto r = check({});
  EXPECT_FALSE(r.allowed());
  // 10 in the previous window: the next fits when 1/10 of the next window has passed,
  // 60 + 6 - 0.5 = 65.5 s from now; Retry-After rounds up.
  EXPECT_EQ(r.retry_after_s, 66);
  EXPECT_EQ(header(r, "Retry-After"), "66");
  clock_->advance(65 * kSec + kSec / 2 - 1);
  EXPECT_FALSE(check({}).allowed());
  clock_->advance(1);
  EXPECT_TRUE(check({}).allowed());
}

TEST_F(RateLimiterTest, RetryAfterIsWholeSecondsNeverEarly) {
  load("rate_limit: {limits: 10/minute, algorithm: fixed_window}\n");
  EXPECT_EQ(admitted({}, 10), 10);
  clock_->advance(kSec / 2);
  auto r = check({});
  EXPECT_EQ(r.message, "Rate limit exceeded: 10 per 1 minute");
  EXPECT_EQ(r.retry_after_s, 60);  // 59.5 s
  EXPECT_EQ(header(r, "Retry-After"), "60");
  clock_->advance(59 * kSec + kSec / 2 - kSec / 10);
  r = check({});
  EXPECT_EQ(r.retry_after_s, 1);  // 0.1 s
  EXPECT_EQ(header(r, "RateLimit"), R"("minute";r=0;t=1)");
  clock_->advance(kSec / 10);
  EXPECT_TRUE(check({}).allowed());
}

TEST_F(RateLimiterTest, XRateLimitResetFollowsTheClock) {
  load("rate_limit: {limits: 3/minute, algorithm: fixed_window, headers: x-ratelimit}\n");
  clock_->advance(100 * kSec);
  auto v = check({});
  EXPECT_EQ(header(v, "RateLimit"), "(absent)");
  EXPECT_EQ(header(v, "RateLimit-Policy"), "(absent)");
  EXPECT_EQ(header(v, "X-RateLimit-Limit"), "3");
  EXPECT_EQ(header(v, "X-RateLimit-Remaining"), "2");
  EXPECT_EQ(header(v, "X-RateLimit-Reset"), std::to_string(kUnixStart + 100 + 60));
  clock_->advance(20 * kSec);
  v = check({});
  EXPECT_EQ(header(v, "X-RateLimit-Remaining"), "1");
  EXPECT_EQ(header(v, "X-RateLimit-Reset"), std::to_string(kUnixStart + 100 + 60));
}

TEST_F(RateLimiterTest, HeadersCanBeTurnedOff) {
  load("rate_limit: {limits: 1/minute, headers: none}\n");
  auto v = check({});
  EXPECT_TRUE(v.allowed());
  EXPECT_EQ(v.headers, "");
  auto r = check({});
  EXPECT_FALSE(r.allowed());
  EXPECT_EQ(r.headers, "Retry-After: 120\r\n");
}

// A list of blocks on a route: per API key, plus one global bucket. A request one block refuses
// takes nothing from the other.
TEST_F(RateLimiterTest, RouteBlocksAreIndependentAndAllOrNothing) {
  load(
      "routes:\n"
      "  - name: api\n"
      "    upstream: app\n"
      "    rate_limit:\n"
      "      - {key: \"header:X-API-Key\", limits: 2/hour, algorithm: fixed_window}\n"
      "      - {key: global, limits: 3/minute, algorithm: fixed_window}\n");
  Request a{.headers = {{"X-API-Key", "key-a"}}};
  Request b{.headers = {{"x-api-key", "key-b"}}};
  Request c{.headers = {{"X-API-Key", "key-c"}}};
  auto first = check(a);
  EXPECT_EQ(header(first, "RateLimit-Policy"), R"("hour";q=2;w=3600, "minute";q=3;w=60)");
  EXPECT_EQ(header(first, "RateLimit"), R"("hour";r=1;t=3600)");
  EXPECT_TRUE(allowed(a));
  // a is out of its own quota; its refusals leave the global bucket alone.
  for (int i = 0; i < 10; ++i) {
    auto r = check(a);
    EXPECT_EQ(r.message, "Rate limit exceeded: 2 per 1 hour");
  }
  EXPECT_TRUE(allowed(b));  // global: 3 of 3
  auto g = check(c);
  EXPECT_FALSE(g.allowed());
  EXPECT_EQ(g.message, "Rate limit exceeded: 3 per 1 minute");
  EXPECT_EQ(admitted(c, 5), 0);
  // The global refusals took nothing from c's own quota: 2 left a minute later.
  clock_->advance(kMin);
  EXPECT_EQ(admitted(c, 5), 2);
  EXPECT_EQ(check(c).message, "Rate limit exceeded: 2 per 1 hour");
}

TEST_F(RateLimiterTest, MissingHeaderKeyFallsBackToClientIp) {
  load(
      "routes:\n"
      "  - {name: api, upstream: app,\n"
      "     rate_limit: {key: \"header:X-API-Key\", limits: 1/hour}}\n");
  Request one{.ip = "198.51.100.1"};
  Request two{.ip = "198.51.100.2"};
  // Two clients without the header do not share one bucket.
  EXPECT_TRUE(allowed(one));
  EXPECT_TRUE(allowed(two));
  EXPECT_FALSE(allowed(one));
  EXPECT_FALSE(allowed(two));
  // An empty value counts as missing.
  Request empty{.ip = "198.51.100.3", .headers = {{"X-API-Key", ""}}};
  EXPECT_TRUE(allowed(empty));
  EXPECT_FALSE(allowed(empty));
  // With the header, the same address has the key's bucket.
  Request keyed{.ip = "198.51.100.1", .headers = {{"X-API-Key", "k1"}}};
  EXPECT_TRUE(allowed(keyed));
  EXPECT_FALSE(allowed(keyed));
  Request elsewhere{.ip = "192.0.2.99", .headers = {{"X-API-Key", "k1"}}};
  EXPECT_FALSE(allowed(elsewhere));
}

const std::string kTwoRoutes =
    "routes:\n"
    "  - {name: one, match: {path_prefix: /one}, upstream: app}\n"
    "  - {name: two, match: {path_prefix: /two}, upstream: app}\n";

TEST_F(RateLimiterTest, IpKeyOnDefaultsIsSharedAcrossRoutes) {
  load("rate_limit: {limits: 2/minute, key: ip}\n" + kTwoRoutes);
  EXPECT_TRUE(allowed({.route = 0}));
  EXPECT_TRUE(allowed({.route = 1}));
  EXPECT_FALSE(allowed({.route = 0}));
  EXPECT_FALSE(allowed({.route = 1}));
  EXPECT_TRUE(allowed({.route = 1, .ip = "203.0.113.8"}));
}

TEST_F(RateLimiterTest, IpAndRouteKeySeparatesRoutes) {
  load("rate_limit: {limits: 2/minute, key: [ip, route]}\n" + kTwoRoutes);
  EXPECT_EQ(admitted({.route = 0}, 5), 2);
  EXPECT_EQ(admitted({.route = 1}, 5), 2);
  EXPECT_EQ(admitted({.route = 1, .ip = "2001:db8::1"}, 5), 2);
}

TEST_F(RateLimiterTest, ExemptPathsAndIps) {
  load(
      "rate_limit:\n"
      "  limits: 1/hour\n"
      "  exempt_paths: [/health, /static/]\n"
      "  exempt_ips: [10.0.0.0/8, \"::1/128\"]\n");
  for (int i = 0; i < 5; ++i) {
    auto v = check({.path = "/health"});
    EXPECT_TRUE(v.allowed());
    EXPECT_EQ(v.headers, "");  // not limited at all
    EXPECT_TRUE(allowed({.path = "/static/app.js"}));
    EXPECT_TRUE(allowed({.ip = "10.1.2.3", .path = "/api"}));
    EXPECT_TRUE(allowed({.ip = "::1", .path = "/api"}));
  }
  EXPECT_TRUE(allowed({.path = "/api"}));
  EXPECT_FALSE(allowed({.path = "/api"}));
  // A path that an upstream could resolve elsewhere does not borrow the exemption.
  EXPECT_FALSE(allowed({.path = "/static/../api"}));
  EXPECT_FALSE(allowed({.path = "/static/%2e%2e/api"}));
  EXPECT_FALSE(allowed({.path = "/static"}));                // "/static/" is the prefix
  EXPECT_TRUE(allowed({.ip = "11.0.0.1", .path = "/api"}));  // outside 10.0.0.0/8
  EXPECT_FALSE(allowed({.ip = "11.0.0.1", .path = "/api"}));
}

TEST_F(RateLimiterTest, RouteOff) {
  load("rate_limit: {limits: 1/hour}\n" +
       std::string("routes:\n"
                   "  - {name: open, match: {path_prefix: /open}, upstream: app, rate_limit: off}\n"
                   "  - {name: rest, upstream: app}\n"));
  EXPECT_TRUE(limiter_->enabled());
  EXPECT_FALSE(limiter_->route_limited(0));
  EXPECT_TRUE(limiter_->route_limited(1));
  EXPECT_FALSE(limiter_->route_limited(7));
  for (int i = 0; i < 5; ++i) {
    auto v = check({.route = 0});
    EXPECT_TRUE(v.allowed());
    EXPECT_EQ(v.headers, "");
  }
  EXPECT_EQ(admitted({.route = 1}, 3), 1);
  EXPECT_TRUE(check({.route = 99}).allowed());  // out of range: not limited
}

TEST_F(RateLimiterTest, NoRateLimitAnywhereIsDisabled) {
  load("routes:\n  - {name: a, upstream: app}\n");
  EXPECT_FALSE(limiter_->enabled());
  EXPECT_FALSE(limiter_->route_limited(0));
  EXPECT_TRUE(check({}).allowed());
}

TEST_F(RateLimiterTest, BanAfterRepeatedRejections) {
  load(
      "rate_limit:\n"
      "  limits: 1/minute\n"
      "  ban: {after: 3, within: 1m, for: 15m}\n"
      "routes:\n"
      "  - {name: generate, upstream: app}\n");
  EXPECT_TRUE(allowed({}));
  for (int i = 0; i < 2; ++i) {
    auto r = check({});
    EXPECT_EQ(r.kind, Verdict::Kind::limited);
    EXPECT_EQ(r.new_ban, "");
  }
  EXPECT_EQ(limiter_->bans_json(), R"({"bans":[],"count":0})");
  // The third rejection within a minute starts the ban; this answer is still the 429.
  auto third = check({});
  EXPECT_EQ(third.kind, Verdict::Kind::limited);
  EXPECT_EQ(third.status(), 429u);
  EXPECT_EQ(third.new_ban, "ip=203.0.113.7");
  EXPECT_EQ(third.ban_reason, "route=generate limit=1/minute");

  clock_->advance(kSec);
  auto banned = check({});
  EXPECT_EQ(banned.kind, Verdict::Kind::banned);
  EXPECT_EQ(banned.status(), 403u);
  EXPECT_STREQ(banned.code(), "banned");
  EXPECT_EQ(banned.new_ban, "");
  EXPECT_EQ(banned.retry_after_s, 899);
  EXPECT_EQ(banned.message, "Too many requests were rejected; banned for 899 more seconds");
  EXPECT_EQ(banned.headers, "Retry-After: 899\r\n");
  EXPECT_EQ(limiter_->bans_json(),
            R"({"bans":[{"key":"ip=203.0.113.7","reason":"route=generate limit=1/minute",)"
            R"("expires_in":899}],"count":1})");
  EXPECT_EQ(limiter_->bans_active(), 1u);
  // Other clients are not affected.
  EXPECT_TRUE(allowed({.ip = "203.0.113.8"}));
  // Banned even once the rate would allow it again.
  clock_->advance(2 * kMin);
  EXPECT_EQ(check({}).kind, Verdict::Kind::banned);

  auto m = metrics();
  EXPECT_NE(m.find("gatehouse_ratelimit_bans_active 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("gatehouse_ratelimit_bans_total 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find(R"(gatehouse_ratelimit_decisions_total{route="generate",limit="ban",key="ip",)"
                   R"(result="banned"} 2)"),
            std::string::npos)
      << m;

  EXPECT_TRUE(limiter_->lift_ban("ip=203.0.113.7"));
  EXPECT_FALSE(limiter_->lift_ban("ip=203.0.113.7"));
  EXPECT_TRUE(allowed({}));
  EXPECT_EQ(limiter_->bans_active(), 0u);
}

TEST_F(RateLimiterTest, BanExpires) {
  load("rate_limit: {limits: 1/hour, ban: {after: 2, within: 10s, for: 1m}}\n");
  EXPECT_TRUE(allowed({}));
  EXPECT_EQ(check({}).new_ban, "");
  EXPECT_EQ(check({}).new_ban, "ip=203.0.113.7");
  EXPECT_EQ(check({}).kind, Verdict::Kind::banned);
  clock_->advance(kMin);
  auto after = check({});
  EXPECT_EQ(after.kind, Verdict::Kind::limited);  // the hour still applies
  EXPECT_EQ(limiter_->bans_json(), R"({"bans":[],"count":0})");
  EXPECT_EQ(limiter_->lift_all_bans(), 0u);
}

TEST_F(RateLimiterTest, BanKeyIsHashedWhenClientIpsAreHashed) {
  observability::ClientIpHasher hasher(true, "0123456789abcdef-secret");
  load("rate_limit: {limits: 1/hour, ban: {after: 1, within: 1m, for: 1m}}\n", &hasher);
  EXPECT_TRUE(allowed({}));
  auto r = check({});
  const std::string hashed = "ip=" + hasher("203.0.113.7");
  EXPECT_EQ(r.new_ban, hashed);
  EXPECT_EQ(hashed.size(), 3u + 32u);
  auto json = limiter_->bans_json();
  EXPECT_NE(json.find(hashed), std::string::npos) << json;
  EXPECT_EQ(json.find("203.0.113.7"), std::string::npos) << json;
  EXPECT_EQ(check({}).kind, Verdict::Kind::banned);
  EXPECT_TRUE(limiter_->lift_ban(hashed));
}

TEST_F(RateLimiterTest, HeaderKeyBanNamesAFingerprint) {
  load(
      "routes:\n"
      "  - {name: api, upstream: app, rate_limit: {key: \"header:X-API-Key\", limits: 1/hour,\n"
      "     ban: {after: 1, within: 1m, for: 1m}}}\n");
  Request r{.headers = {{"X-API-Key", "super-secret-token"}}};
  EXPECT_TRUE(allowed(r));
  auto v = check(r);
  ASSERT_TRUE(v.new_ban.starts_with("header:X-API-Key=#")) << v.new_ban;
  EXPECT_EQ(v.new_ban.size(), std::string("header:X-API-Key=#").size() + 16);
  EXPECT_EQ(limiter_->bans_json().find("super-secret-token"), std::string::npos);
}

// --- rate_limit.ipv6_prefix ----------------------------------------------------------------------

std::string in_net(std::string_view net64, int i) {
  // Addresses spread over the interface identifier of a /64 ("2001:db8:1:2:" + "...").
  return std::string(net64)
      .append(std::to_string(i % 9 + 1))
      .append(":a")
      .append(std::to_string(i))
      .append("::")
      .append(std::to_string(i * 7 % 1000));
}

TEST_F(RateLimiterTest, Ipv6AddressesOfOneSlash64AreOneClient) {
  load("rate_limit: {limits: 3/minute}\n");
  int admitted_in_net = 0;
  for (int i = 0; i < 50; ++i) {
    admitted_in_net += allowed({.ip = in_net("2001:db8:1:2:", i)}) ? 1 : 0;
  }
  EXPECT_EQ(admitted_in_net, 3);
  EXPECT_FALSE(allowed({.ip = "2001:db8:1:2::1"}));
  EXPECT_FALSE(allowed({.ip = "2001:DB8:1:2:0:0:0:FFFF"}));
  // The next /64 is another client, and so is every IPv4 address.
  EXPECT_EQ(admitted({.ip = "2001:db8:1:3::1"}, 5), 3);
  EXPECT_EQ(admitted({.ip = "203.0.113.7"}, 5), 3);
  EXPECT_EQ(admitted({.ip = "203.0.113.8"}, 5), 3);
  // An IPv4-mapped address is its IPv4 address, never a /64 of ::ffff:0:0/96.
  EXPECT_EQ(admitted({.ip = "::ffff:203.0.113.9"}, 5), 3);
  EXPECT_EQ(admitted({.ip = "203.0.113.9"}, 5), 0);
  EXPECT_EQ(admitted({.ip = "::ffff:203.0.113.10"}, 5), 3);
  // The headers speak of the shared counter (two minutes on: the sliding window is empty).
  clock_->advance(2 * kMin);
  EXPECT_EQ(header(check({.ip = "2001:db8:1:2::77"}), "X-RateLimit-Remaining"), "2");
  EXPECT_EQ(header(check({.ip = "2001:db8:1:2::78"}), "X-RateLimit-Remaining"), "1");
}

TEST_F(RateLimiterTest, Ipv6PrefixIsConfigurable) {
  load("rate_limit: {limits: 2/minute, ipv6_prefix: 128}\n");
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(admitted({.ip = in_net("2001:db8:1:2:", i)}, 3), 2) << i;
  }
  state_.reset();
  load("rate_limit: {limits: 2/minute, ipv6_prefix: 48}\n");
  EXPECT_TRUE(allowed({.ip = "2001:db8:1:2::1"}));
  EXPECT_TRUE(allowed({.ip = "2001:db8:1:ffff::1"}));  // same /48
  EXPECT_FALSE(allowed({.ip = "2001:db8:1:3::1"}));
  EXPECT_TRUE(allowed({.ip = "2001:db8:2::1"}));  // the next /48
}

TEST_F(RateLimiterTest, Ipv6BanNamesAndCoversTheNetwork) {
  load("rate_limit: {limits: 1/minute, ban: {after: 1, within: 1m, for: 10m}}\n");
  EXPECT_TRUE(allowed({.ip = "2001:db8:1:2::1"}));
  auto v = check({.ip = "2001:db8:1:2::2"});
  EXPECT_EQ(v.kind, Verdict::Kind::limited);
  EXPECT_EQ(v.new_ban, "ip=2001:db8:1:2::/64");
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(check({.ip = in_net("2001:db8:1:2:", i)}).kind, Verdict::Kind::banned) << i;
  }
  EXPECT_TRUE(allowed({.ip = "2001:db8:1:3::1"}));
  EXPECT_NE(limiter_->bans_json().find(R"("key":"ip=2001:db8:1:2::/64")"), std::string::npos)
      << limiter_->bans_json();
  EXPECT_TRUE(limiter_->lift_ban("ip=2001:db8:1:2::/64"));
  EXPECT_EQ(check({.ip = "2001:db8:1:2::99"}).kind, Verdict::Kind::limited);
}

TEST_F(RateLimiterTest, Ipv6ExemptionsMatchTheFullAddress) {
  load("rate_limit: {limits: 1/hour, exempt_ips: [\"2001:db8:1:2::1/128\"]}\n");
  EXPECT_EQ(admitted({.ip = "2001:db8:1:2::1"}, 5), 5);
  // Its neighbours in the /64 are limited (together).
  EXPECT_TRUE(allowed({.ip = "2001:db8:1:2::2"}));
  EXPECT_FALSE(allowed({.ip = "2001:db8:1:2::3"}));
}

TEST_F(RateLimiterTest, Ipv6InFlightSlotsAreShared) {
  load("rate_limit: {max_in_flight: 2}\n");
  auto a = check({.ip = "2001:db8:1:2::1"});
  auto b = check({.ip = "2001:db8:1:2::2"});
  EXPECT_TRUE(a.allowed());
  EXPECT_TRUE(b.allowed());
  EXPECT_EQ(check({.ip = "2001:db8:1:2::3"}).kind, Verdict::Kind::too_many_in_flight);
  EXPECT_TRUE(check({.ip = "2001:db8:1:3::3"}).allowed());
  limiter_->release(a);
  limiter_->release(b);
}

TEST_F(RateLimiterTest, Ipv6RemoteIdentityIsTheNetwork) {
  load("rate_limit: {limits: 1/minute}\n");
  Request r{.ip = "2001:db8:1:2:3:4:5:6"};
  RequestInfo info;
  info.client_ip = r.ip;
  info.path = r.path;
  info.header = &lookup;
  info.header_ctx = &r;
  Verdict v;
  ASSERT_TRUE(limiter_->begin(info, 0, v, true));
  ASSERT_EQ(v.store.groups.size(), 1u);
  EXPECT_EQ(v.store.groups[0].identity, "ip=2001:db8:1:2::/64");
}

TEST_F(RateLimiterTest, BanHoldsForEverySpellingAndKeyPart) {
  // The lock-free ban filter is probed with the binary key; a ban started under one spelling
  // must refuse every other spelling of the same client, and a header key's fallback to the
  // address must find a ban on the address.
  load(
      "routes:\n"
      "  - {name: a, match: {path_prefix: /a}, upstream: app,\n"
      "     rate_limit: {limits: 1/minute, ban: {after: 1, within: 1m, for: 1m}}}\n"
      "  - {name: b, match: {path_prefix: /b}, upstream: app,\n"
      "     rate_limit: {limits: 100/minute, key: \"header:X-Key\"}}\n");
  EXPECT_TRUE(allowed({.ip = "::ffff:203.0.113.7"}));
  EXPECT_EQ(check({.ip = "203.0.113.7"}).new_ban, "ip=203.0.113.7");
  EXPECT_EQ(check({.ip = "203.0.113.7"}).kind, Verdict::Kind::banned);
  EXPECT_EQ(check({.ip = "::ffff:203.0.113.7"}).kind, Verdict::Kind::banned);
  // Route b keys on a header; without it the key is the address, which is banned.
  EXPECT_EQ(check({.route = 1, .ip = "203.0.113.7"}).kind, Verdict::Kind::banned);
  EXPECT_TRUE(check({.route = 1, .ip = "203.0.113.7", .headers = {{"X-Key", "k"}}}).allowed());
  EXPECT_TRUE(check({.route = 1, .ip = "203.0.113.8"}).allowed());
}

TEST_F(RateLimiterTest, MaxInFlight) {
  load("rate_limit: {max_in_flight: 2}\n");
  auto a = check({});
  auto b = check({});
  EXPECT_TRUE(a.allowed());
  EXPECT_TRUE(b.allowed());
  EXPECT_EQ(a.held.size(), 1u);
  EXPECT_EQ(a.headers, "");  // no rates, no rate headers
  auto c = check({});
  EXPECT_EQ(c.kind, Verdict::Kind::too_many_in_flight);
  EXPECT_EQ(c.status(), 429u);
  EXPECT_STREQ(c.code(), "too_many_concurrent_requests");
  EXPECT_EQ(c.message, "Too many concurrent requests: at most 2 at a time");
  EXPECT_EQ(c.retry_after_s, 1);
  EXPECT_EQ(c.headers, "Retry-After: 1\r\n");
  EXPECT_TRUE(c.held.empty());
  EXPECT_TRUE(check({.ip = "203.0.113.8"}).allowed());  // its own slots
  limiter_->release(a);
  EXPECT_TRUE(a.held.empty());
  auto d = check({});
  EXPECT_TRUE(d.allowed());
  limiter_->release(b);
  limiter_->release(d);
  EXPECT_EQ(state_->in_flight.keys(), 1u);  // 203.0.113.8's slot, never released
}

TEST_F(RateLimiterTest, RateRejectionReleasesInFlightSlots) {
  load("rate_limit: {max_in_flight: 1, limits: 1/hour}\n");
  auto a = check({});
  EXPECT_TRUE(a.allowed());
  EXPECT_EQ(a.held.size(), 1u);
  limiter_->release(a);
  auto b = check({});
  EXPECT_EQ(b.kind, Verdict::Kind::limited);
  EXPECT_TRUE(b.held.empty());
  EXPECT_EQ(state_->in_flight.keys(), 0u);
  auto m = metrics();
  EXPECT_NE(m.find(R"(limit="max_in_flight",key="ip",result="allowed"} 2)"), std::string::npos)
      << m;
}

TEST_F(RateLimiterTest, Metrics) {
  load("rate_limit: {limits: 2/minute}\nroutes:\n  - {name: api, upstream: app}\n");
  EXPECT_TRUE(check({}, 0).allowed());
  EXPECT_TRUE(check({}, 1).allowed());
  EXPECT_FALSE(check({}, 1).allowed());
  EXPECT_FALSE(check({}, 7).allowed());  // an unknown worker counts in the last one
  auto m = metrics();
  EXPECT_NE(m.find("# TYPE gatehouse_ratelimit_decisions_total counter\n"), std::string::npos);
  EXPECT_NE(m.find(R"(gatehouse_ratelimit_decisions_total{route="api",limit="2/minute",key="ip",)"
                   R"(result="allowed"} 2)"
                   "\n"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find(R"(gatehouse_ratelimit_decisions_total{route="api",limit="2/minute",key="ip",)"
                   R"(result="rejected"} 2)"
                   "\n"),
            std::string::npos)
      << m;
  EXPECT_EQ(m.find("max_in_flight"), std::string::npos) << m;  // not configured
  EXPECT_NE(m.find("gatehouse_ratelimit_keys 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("gatehouse_ratelimit_keys_max 1000000\n"), std::string::npos) << m;
  EXPECT_NE(m.find("gatehouse_ratelimit_evictions_total 0\n"), std::string::npos) << m;
  EXPECT_NE(m.find("gatehouse_ratelimit_bans_active 0\n"), std::string::npos) << m;
}

// A reload builds a new limiter on the same shared state: limits whose definition did not change
// keep their counts, changed ones start fresh.
TEST_F(RateLimiterTest, ReloadKeepsUnchangedLimits) {
  const std::string before =
      "rate_limit: {limits: 3/minute}\n"
      "routes:\n"
      "  - {name: a, match: {path_prefix: /a}, upstream: app, rate_limit: {limits: 2/minute}}\n"
      "  - {name: b, match: {path_prefix: /b}, upstream: app, rate_limit: {limits: 2/minute}}\n"
      "  - {name: c, upstream: app}\n";
  load(before);
  EXPECT_EQ(admitted({.route = 0}, 5), 2);
  EXPECT_EQ(admitted({.route = 1}, 5), 2);
  EXPECT_EQ(admitted({.route = 2}, 5), 3);
  auto* old_state = state_.get();

  load(
      "rate_limit: {limits: 3/minute}\n"
      "routes:\n"
      "  - {name: new, match: {path_prefix: /new}, upstream: app, rate_limit: off}\n"
      "  - {name: a, match: {path_prefix: /a}, upstream: app, rate_limit: {limits: 2/minute}}\n"
      "  - {name: b, match: {path_prefix: /b}, upstream: app, rate_limit: {limits: 5/minute}}\n"
      "  - {name: c, upstream: app}\n");
  ASSERT_EQ(state_.get(), old_state);
  EXPECT_EQ(admitted({.route = 1}, 5), 0);  // a: unchanged, still exhausted
  EXPECT_EQ(admitted({.route = 2}, 9), 5);  // b: changed, fresh
  EXPECT_EQ(admitted({.route = 3}, 5), 0);  // c: the defaults, unchanged
}

}  // namespace
}  // namespace gatehouse::filters::rate_limit

namespace gatehouse::filters::rate_limit {
namespace {

// issue 15 (routes): `path:NAME` keys on the value the route's template captured.
TEST_F(RateLimiterTest, PathVariableKeysCountPerValue) {
  load(R"(routes:
  - name: revise
    match: {path: "/api/stories/{id}/revise"}
    upstream: app
    rate_limit: {key: [ip, "path:id"], limits: 2/minute}
  - name: story
    match: {path: "/api/stories/{id}"}
    upstream: app
    rate_limit: {key: "path:id", limits: 3/minute}
)");
  auto request = [&](std::size_t route, std::string_view id, std::string ip) {
    core::PathParams params;
    params.names[0] = "id";
    params.values[0] = id;
    params.size = 1;
    RequestInfo info;
    info.route = route;
    info.client_ip = ip;
    info.path = "/api/stories";
    info.params = &params;
    Verdict v;
    limiter_->check(info, 0, v);
    limiter_->release(v);
    return v.allowed();
  };
  auto admitted_of = [&](std::size_t route, std::string_view id, std::string ip, int n) {
    int ok = 0;
    for (int i = 0; i < n; ++i) {
      ok += request(route, id, ip) ? 1 : 0;
    }
    return ok;
  };
  EXPECT_EQ(admitted_of(0, "1", "203.0.113.7", 5), 2);
  EXPECT_EQ(admitted_of(0, "2", "203.0.113.7", 5), 2);   // another story: its own counter
  EXPECT_EQ(admitted_of(0, "1", "203.0.113.8", 5), 2);   // another client: its own counter
  EXPECT_EQ(admitted_of(0, "01", "203.0.113.7", 5), 2);  // the text is the key: "01" is not "1"
  // Without ip, every client shares one story's counter.
  EXPECT_EQ(admitted_of(1, "9", "203.0.113.7", 2), 2);
  EXPECT_EQ(admitted_of(1, "9", "203.0.113.8", 5), 1);
  clock_->advance(2 * kMin + kSec);  // the sliding window's previous minute has passed too
  EXPECT_EQ(admitted_of(0, "1", "203.0.113.7", 5), 2);
}

}  // namespace
}  // namespace gatehouse::filters::rate_limit
