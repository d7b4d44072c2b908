// upstreams.<name>.balance, max_connections, queue_timeout, max_queued: accepted forms, defaults
// and every rejection with its file:line:col and key.
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config_test_util.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using namespace std::chrono_literals;
using testing::Case;
using testing::expect_errors;

Upstream load_upstream(const std::string& keys) {
  auto c = load_config_string("upstreams:\n  app:\n    targets: [\"127.0.0.1:8000\"]\n" + keys,
                              "t.yaml", filters::config_sections());
  return c.upstreams.at(0);
}

TEST(BalanceConfig, Defaults) {
  auto u = load_upstream("");
  EXPECT_EQ(u.balance.policy, BalancePolicy::round_robin);
  EXPECT_EQ(u.max_connections, 0u);
  EXPECT_EQ(u.queue_timeout, 5s);
  EXPECT_EQ(u.max_queued, 1024u);
}

TEST(BalanceConfig, Policies) {
  EXPECT_EQ(load_upstream("    balance: round_robin\n").balance.policy, BalancePolicy::round_robin);
  EXPECT_EQ(load_upstream("    balance: least_request\n").balance.policy,
            BalancePolicy::least_request);
  auto ip = load_upstream("    balance: {hash: client_ip}\n").balance;
  EXPECT_EQ(ip.policy, BalancePolicy::hash);
  EXPECT_EQ(ip.hash_on, HashOn::client_ip);
  auto header =
      load_upstream("    balance:\n      hash: header\n      header: X-User-ID\n").balance;
  EXPECT_EQ(header.policy, BalancePolicy::hash);
  EXPECT_EQ(header.hash_on, HashOn::header);
  EXPECT_EQ(header.header, "X-User-ID");
}

TEST(BalanceConfig, Backpressure) {
  auto u = load_upstream("    max_connections: 64\n    queue_timeout: 250ms\n    max_queued: 0\n");
  EXPECT_EQ(u.max_connections, 64u);
  EXPECT_EQ(u.queue_timeout, 250ms);
  EXPECT_EQ(u.max_queued, 0u);
  EXPECT_EQ(load_upstream("    queue_timeout: 0s\n").queue_timeout, 0ms);
}

TEST(BalanceConfig, Errors) {
  const std::string base = "upstreams:\n  app:\n    targets: [\"x:1\"]\n";
  expect_errors({
      {base + "    balance: random\n",
       "t.yaml:4:14: upstreams.app.balance: invalid value \"random\" (expected one of: "
       "round_robin, least_request)"},
      {base + "    balance: hash\n",
       "t.yaml:4:14: upstreams.app.balance: a hash needs its key: {hash: client_ip} or {hash: "
       "header, header: NAME}"},
      {base + "    balance: [least_request]\n",
       "t.yaml:4:14: upstreams.app.balance: expected a string, got a list"},
      {base + "    balance: {hash: cookie}\n",
       "t.yaml:4:21: upstreams.app.balance.hash: invalid value \"cookie\" (expected one of: "
       "client_ip, header)"},
      {base + "    balance: {hash: header}\n",
       "t.yaml:4:14: upstreams.app.balance.header: required key is missing (the request header "
       "to hash)"},
      {base + "    balance: {header: X-User}\n",
       "t.yaml:4:14: upstreams.app.balance.hash: required key is missing (client_ip or header)"},
      {base + "    balance: {hash: client_ip, header: X-User}\n",
       "t.yaml:4:40: upstreams.app.balance.header: only with hash: header"},
      {base + "    balance: {hash: header, header: \"X User\"}\n",
       "t.yaml:4:37: upstreams.app.balance.header: invalid header name \"X User\" (expected a "
       "token such as "
       "X-Request-ID)"},
      {base + "    balance: {hash: header, header: X-User, key: 1}\n",
       "t.yaml:4:45: upstreams.app.balance.key: unknown key \"key\"; allowed keys: hash, header"},
      {base + "    max_connections: -1\n",
       "t.yaml:4:22: upstreams.app.max_connections: invalid value \"-1\" (expected an integer "
       "from 0 to 1000000)"},
      {base + "    max_connections: 1000001\n",
       "t.yaml:4:22: upstreams.app.max_connections: invalid value \"1000001\" (expected an "
       "integer from 0 to 1000000)"},
      {base + "    queue_timeout: 5\n",
       "t.yaml:4:20: upstreams.app.queue_timeout: invalid duration \"5\": a unit is required, "
       "e.g. \"5s\" (units: ms, s, m, h, d)"},
      {base + "    max_queued: lots\n",
       "t.yaml:4:17: upstreams.app.max_queued: invalid value \"lots\" (expected an integer from "
       "0 to 1000000)"},
  });
}

}  // namespace
}  // namespace gatehouse::config
