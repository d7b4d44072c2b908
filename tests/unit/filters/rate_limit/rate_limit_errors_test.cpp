// The exact message of every rate_limit rejection: file, line, column, key path and text.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/config_test_util.hpp"

namespace gatehouse::config {
namespace {

using testing::error_of;
using testing::expect_errors;
using testing::kBase;

TEST(RateLimitConfigErrors, TopLevelBlock) {
  expect_errors({
      {kBase + "rate_limit: on\n",
       "t.yaml:4:13: rate_limit: invalid value \"on\" (expected off or a map)"},
      {kBase + "rate_limit: [a]\n", "t.yaml:4:13: rate_limit: expected a map, got a list"},
      {kBase + "rate_limit: {limits: 10/minute, limit: 5}\n",
       "t.yaml:4:33: rate_limit.limit: unknown key \"limit\" (did you mean \"limits\"?); allowed "
       "keys: algorithm, key, limits, burst, headers, exempt_paths, exempt_ips, ban, "
       "max_in_flight, max_keys, ipv6_prefix, store, redis, on_store_failure"},
      {kBase + "rate_limit: {limits: 10/minute, max_keys: 0}\n",
       "t.yaml:4:43: rate_limit.max_keys: invalid value \"0\" (expected an integer from 1 to "
       "100000000)"},
      {kBase + "rate_limit: {limits: 10/minute, max_keys: 100000001}\n",
       "t.yaml:4:43: rate_limit.max_keys: invalid value \"100000001\" (expected an integer from 1 "
       "to 100000000)"},
      {kBase + "rate_limit: {limits: 10/minute, ipv6_prefix: 0}\n",
       "t.yaml:4:46: rate_limit.ipv6_prefix: invalid value \"0\" (expected an integer from 1 to "
       "128)"},
      {kBase + "rate_limit: {limits: 10/minute, ipv6_prefix: 129}\n",
       "t.yaml:4:46: rate_limit.ipv6_prefix: invalid value \"129\" (expected an integer from 1 to "
       "128)"},
      {kBase + "rate_limit: {limits: 10/minute, ipv6_prefix: /64}\n",
       "t.yaml:4:46: rate_limit.ipv6_prefix: invalid value \"/64\" (expected an integer from 1 to "
       "128)"},
      {kBase + "rate_limit: {limits: 10/minute, max_in_flight: 1000001}\n",
       "t.yaml:4:48: rate_limit.max_in_flight: invalid value \"1000001\" (expected an integer from "
       "0 to 1000000)"},
      {kBase + "rate_limit: {limits: 10/minute, max_in_flight: -1}\n",
       "t.yaml:4:48: rate_limit.max_in_flight: invalid value \"-1\" (expected an integer from 0 "
       "to 1000000)"},
  });
}

TEST(RateLimitConfigErrors, Limits) {
  expect_errors({
      {kBase + "rate_limit: {limits: \"10/fortnight\"}\n",
       "t.yaml:4:22: rate_limit.limits: invalid rate \"10/fortnight\": unknown unit \"fortnight\" "
       "(expected second, minute, hour or day)"},
      {kBase + "rate_limit: {limits: \"\"}\n",
       "t.yaml:4:22: rate_limit.limits: invalid rate \"\": expected N/UNIT such as "
       "\"10/minute\""},
      {kBase + "rate_limit: {limits: 0/minute}\n",
       "t.yaml:4:22: rate_limit.limits: invalid rate \"0/minute\": count must be at least 1"},
      {kBase + "rate_limit: {limits: \"10/minute;\"}\n",
       "t.yaml:4:22: rate_limit.limits: invalid rates \"10/minute;\": empty item (separate rates "
       "with \";\", \",\" or \"|\")"},
      {kBase + "rate_limit: {limits: [10/minute]}\n",
       "t.yaml:4:22: rate_limit.limits: expected a string, got a list"},
      {kBase + "rate_limit: {limits: \"1/second; 2/minute; 3/hour; 4/day; 5/2 days; 6/3 days; "
               "7/4 days; 8/5 days; 9/6 days\"}\n",
       "t.yaml:4:22: rate_limit.limits: too many rates: 9 (at most 8 per block)"},
      {kBase + "rate_limit: {limits: \"10/minute; 100/60 seconds\"}\n",
       "t.yaml:4:22: rate_limit.limits: rates \"10/minute\" and \"100 per 60 seconds\" have the "
       "same period (keep one)"},
  });
}

TEST(RateLimitConfigErrors, AlgorithmKeyAndBurst) {
  expect_errors({
      {kBase + "rate_limit: {limits: 10/minute, algorithm: leaky_bucket}\n",
       "t.yaml:4:44: rate_limit.algorithm: invalid value \"leaky_bucket\" (expected one of: "
       "sliding_window, fixed_window, token_bucket, gcra)"},
      {kBase + "rate_limit: {limits: 10/minute, key: cookie}\n",
       "t.yaml:4:38: rate_limit.key: invalid key \"cookie\" (expected ip, route, global, "
       "header:NAME or "
       "path:NAME)"},
      {kBase + "rate_limit: {limits: 10/minute, key: IP}\n",
       "t.yaml:4:38: rate_limit.key: invalid key \"IP\" (expected ip, route, global, header:NAME "
       "or "
       "path:NAME)"},
      {kBase + "rate_limit: {limits: 10/minute, key: \"header:\"}\n",
       "t.yaml:4:38: rate_limit.key: invalid header name \"\" in \"header:\" (expected a token "
       "such as X-API-Key)"},
      {kBase + "rate_limit: {limits: 10/minute, key: \"header:X Y\"}\n",
       "t.yaml:4:38: rate_limit.key: invalid header name \"X Y\" in \"header:X Y\" (expected a "
       "token such as X-API-Key)"},
      {kBase + "rate_limit: {limits: 10/minute, key: [ip, ip]}\n",
       "t.yaml:4:43: rate_limit.key[1]: duplicate key part \"ip\""},
      {kBase + "rate_limit: {limits: 10/minute, key: [\"header:X-A\", \"header:x-a\"]}\n",
       "t.yaml:4:53: rate_limit.key[1]: duplicate key part \"header:x-a\""},
      {kBase + "rate_limit: {limits: 10/minute, key: [ip, global]}\n",
       "t.yaml:4:43: rate_limit.key[1]: \"global\" cannot be combined with other key parts"},
      {kBase + "rate_limit: {limits: 10/minute, key: []}\n",
       "t.yaml:4:38: rate_limit.key: at least one key part is required (ip, route, global, "
       "header:NAME or "
       "path:NAME)"},
      {kBase + "rate_limit: {limits: 10/minute, key: {ip: 1}}\n",
       "t.yaml:4:38: rate_limit.key: expected a list, got a map"},
      {kBase + "rate_limit: {limits: 10/minute, burst: 5}\n",
       "t.yaml:4:40: rate_limit.burst: burst applies only to token_bucket and gcra, not "
       "sliding_window"},
      {kBase + "rate_limit: {limits: 10/minute, algorithm: fixed_window, burst: 5}\n",
       "t.yaml:4:65: rate_limit.burst: burst applies only to token_bucket and gcra, not "
       "fixed_window"},
      {kBase + "rate_limit: {limits: 10/minute, algorithm: gcra, burst: 0}\n",
       "t.yaml:4:57: rate_limit.burst: invalid value \"0\" (expected an integer from 1 to "
       "1000000000)"},
      {kBase + "rate_limit: {limits: 10/minute, algorithm: gcra, burst: 1000000001}\n",
       "t.yaml:4:57: rate_limit.burst: invalid value \"1000000001\" (expected an integer from 1 "
       "to 1000000000)"},
  });
}

TEST(RateLimitConfigErrors, HeadersAndExemptions) {
  expect_errors({
      {kBase + "rate_limit: {limits: 10/minute, headers: both}\n",
       "t.yaml:4:42: rate_limit.headers: invalid value \"both\" (expected one of: ietf, "
       "x-ratelimit, none)"},
      {kBase + "rate_limit: {limits: 10/minute, headers: [ietf, none]}\n",
       "t.yaml:4:49: rate_limit.headers[1]: invalid value \"none\" (expected one of: ietf, "
       "x-ratelimit)"},
      {kBase + "rate_limit: {limits: 10/minute, headers: [ietf, ietf]}\n",
       "t.yaml:4:49: rate_limit.headers[1]: duplicate value \"ietf\""},
      {kBase + "rate_limit: {limits: 10/minute, exempt_paths: [health]}\n",
       "t.yaml:4:48: rate_limit.exempt_paths[0]: must start with '/' (got \"health\")"},
      {kBase + "rate_limit: {limits: 10/minute, exempt_ips: [10.0.0.0/33]}\n",
       "t.yaml:4:46: rate_limit.exempt_ips[0]: invalid CIDR \"10.0.0.0/33\" (expected ADDRESS or "
       "ADDRESS/BITS, e.g. \"10.0.0.0/8\" or \"::1/128\")"},
  });
}

TEST(RateLimitConfigErrors, Ban) {
  expect_errors({
      {kBase + "rate_limit: {limits: 10/minute, ban: {after: 20, within: 1m}}\n",
       "t.yaml:4:38: rate_limit.ban.for: required key is missing"},
      {kBase + "rate_limit: {limits: 10/minute, ban: {after: 0, within: 1m, for: 1m}}\n",
       "t.yaml:4:46: rate_limit.ban.after: invalid value \"0\" (expected an integer from 1 to "
       "1000000)"},
      {kBase + "rate_limit: {limits: 10/minute, ban: {after: 20, within: 0s, for: 1m}}\n",
       "t.yaml:4:58: rate_limit.ban.within: must be greater than 0"},
      {kBase + "rate_limit: {limits: 10/minute, ban: {after: 20, within: 1m, for: 30}}\n",
       "t.yaml:4:67: rate_limit.ban.for: invalid duration \"30\": a unit is required, e.g. "
       "\"30s\" (units: ms, s, m, h, d)"},
      {kBase + "rate_limit: {limits: 10/minute, ban: {after: 20, within: 1m, for: 1m, x: 1}}\n",
       "t.yaml:4:71: rate_limit.ban.x: unknown key \"x\"; allowed keys: after, within, for"},
      {kBase + "rate_limit: {limits: 10/minute, ban: on}\n",
       "t.yaml:4:38: rate_limit.ban: invalid value \"on\" (expected off or a map such as {after: "
       "20, within: 1m, for: 15m})"},
      {kBase + "rate_limit: {limits: 10/minute, ban: {after: 1, within: 1m, for: 1m}, key: "
               "global}\n",
       "t.yaml:4:38: rate_limit.ban: ban needs a per-client key (ip or header:NAME), not "
       "\"global\""},
      {kBase + "rate_limit: {limits: 10/minute, ban: {after: 1, within: 1m, for: 1m}, key: "
               "[route]}\n",
       "t.yaml:4:38: rate_limit.ban: ban needs a per-client key (ip or header:NAME), not "
       "\"route\""},
  });
}

TEST(RateLimitConfigErrors, RouteBlocks) {
  const std::string route = kBase + "routes:\n  - name: a\n    upstream: app\n    rate_limit: ";
  expect_errors({
      {route + "{key: ip}\n",
       "t.yaml:7:17: routes[0].rate_limit: nothing to limit: set limits or max_in_flight"},
      {route + "{max_in_flight: 0}\n",
       "t.yaml:7:17: routes[0].rate_limit: nothing to limit: set limits or max_in_flight"},
      {route + "{limits: 10/minute, max_keys: 5}\n",
       "t.yaml:7:37: routes[0].rate_limit.max_keys: max_keys is a top-level setting "
       "(rate_limit.max_keys)"},
      {route + "{limits: 10/minute, ipv6_prefix: 48}\n",
       "t.yaml:7:37: routes[0].rate_limit.ipv6_prefix: ipv6_prefix is a top-level setting "
       "(rate_limit.ipv6_prefix)"},
      {route + "{limits: 10/minute, limitz: 5}\n",
       "t.yaml:7:37: routes[0].rate_limit.limitz: unknown key \"limitz\" (did you mean "
       "\"limits\"?); allowed keys: algorithm, key, limits, burst, headers, exempt_paths, "
       "exempt_ips, ban, max_in_flight"},
      {route + "on\n",
       "t.yaml:7:17: routes[0].rate_limit: invalid value \"on\" (expected off, a map or a list of "
       "maps)"},
      {route + "[]\n",
       "t.yaml:7:17: routes[0].rate_limit: at least one block is required (use off to turn rate "
       "limiting off for this route)"},
      {route + "[5]\n", "t.yaml:7:18: routes[0].rate_limit[0]: expected a map, got a string"},
      {route + "[{max_in_flight: 1}, {limits: \"10/5 fortnights\"}]\n",
       "t.yaml:7:47: routes[0].rate_limit[1].limits: invalid rate \"10/5 fortnights\": unknown "
       "unit \"fortnights\" (expected second, minute, hour or day)"},
      {route + "[{max_in_flight: 1}, {max_in_flight: 1}, {max_in_flight: 1}, {max_in_flight: 1}, "
               "{max_in_flight: 1}, {max_in_flight: 1}, {max_in_flight: 1}, {max_in_flight: 1}, "
               "{max_in_flight: 1}]\n",
       "t.yaml:7:17: routes[0].rate_limit: too many blocks: 9 (at most 8)"},
      {route + "{limits: 10/minute, ban: {after: 1, within: 1m, for: 1m}, key: route}\n",
       "t.yaml:7:42: routes[0].rate_limit.ban: ban needs a per-client key (ip or header:NAME), not "
       "\"route\""},
  });
}

TEST(RateLimitConfigErrors, ChecksAfterInheritance) {
  const std::string route = "routes:\n  - name: a\n    upstream: app\n    rate_limit: ";
  expect_errors({
      // The route's algorithm does not take the burst it inherits.
      {kBase + "rate_limit: {algorithm: token_bucket, burst: 20}\n" + route +
           "{limits: 10/minute, algorithm: fixed_window}\n",
       "t.yaml:8:48: routes[0].rate_limit.algorithm: burst applies only to token_bucket and gcra, "
       "not fixed_window (burst 20 is inherited from rate_limit)"},
      // Limits are never inherited, so a route block must state its own.
      {kBase + "rate_limit: {limits: 10/minute, max_in_flight: 3}\n" + route + "{key: route}\n",
       "t.yaml:8:17: routes[0].rate_limit: nothing to limit: set limits or max_in_flight"},
      {kBase + "rate_limit: {limits: 10/minute}\n" + route + "\n      limits: 10/minute\n" +
           "      max_keys: 3\n",
       "t.yaml:10:7: routes[0].rate_limit.max_keys: max_keys is a top-level setting "
       "(rate_limit.max_keys)"},
  });
}

}  // namespace
}  // namespace gatehouse::config
