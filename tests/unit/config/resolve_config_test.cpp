// upstreams.<name>.resolve_interval and max_addresses (i12-resolve): defaults, accepted values,
// the target slots they give, every rejection with its file:line:col and key, and the round trip
// through to_yaml (what `gatehouse check` prints).
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config_test_util.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using namespace std::chrono_literals;
using testing::expect_errors;

Config load(const std::string& yaml) {
  return load_config_string(yaml, "t.yaml", filters::config_sections());
}

// Targets: an IPv4 address, a host name, an IPv6 address.
std::string with(const std::string& keys) {
  return "upstreams:\n  app:\n    targets: [\"10.0.0.5:8000\", \"app.internal:8000\", "
         "\"[::1]:8000\"]\n" +
         keys;
}

TEST(ResolveConfig, DefaultsOff) {
  auto u = load(with("")).upstreams.at(0);
  EXPECT_EQ(u.resolve_interval, 0ms);
  EXPECT_EQ(u.max_addresses, 16u);
  // Off: every target is one slot, the host name included (its first address, as before).
  EXPECT_EQ(u.slot_count(), 3u);
  EXPECT_EQ(u.slots_of(1), 1u);
}

TEST(ResolveConfig, HostNamesTakeMaxAddressesSlots) {
  auto u = load(with("    resolve_interval: 30s\n")).upstreams.at(0);
  EXPECT_EQ(u.resolve_interval, 30s);
  EXPECT_EQ(u.slots_of(0), 1u);
  EXPECT_EQ(u.slots_of(1), 16u);
  EXPECT_EQ(u.slots_of(2), 1u);  // an IPv6 address is not a name
  EXPECT_EQ(u.slot_count(), 18u);
  auto v = load(with("    resolve_interval: 1s\n    max_addresses: 4\n")).upstreams.at(0);
  EXPECT_EQ(v.resolve_interval, 1s);
  EXPECT_EQ(v.max_addresses, 4u);
  EXPECT_EQ(v.slot_count(), 6u);
  EXPECT_EQ(load(with("    resolve_interval: 0s\n")).upstreams.at(0).resolve_interval, 0ms);
}

TEST(ResolveConfig, Errors) {
  expect_errors({
      {with("    resolve_interval: 500ms\n"),
       "t.yaml:4:23: upstreams.app.resolve_interval: must be 0 (off) or at least 1s (a "
       "resolution runs on the admin thread)"},
      {with("    resolve_interval: 30\n"),
       "t.yaml:4:23: upstreams.app.resolve_interval: invalid duration \"30\": a unit is "
       "required, e.g. \"30s\" (units: ms, s, m, h, d)"},
      {with("    resolve_interval: 30s\n    max_addresses: 0\n"),
       "t.yaml:5:20: upstreams.app.max_addresses: invalid value \"0\" (expected an integer from 1 "
       "to 256)"},
      {with("    resolve_interval: 30s\n    max_addresses: 257\n"),
       "t.yaml:5:20: upstreams.app.max_addresses: invalid value \"257\" (expected an integer from "
       "1 to 256)"},
      {"upstreams:\n  app:\n    targets: [a:1, b:1, c:1, d:1, e:1]\n"
       "    resolve_interval: 30s\n    max_addresses: 256\n",
       "t.yaml:5:20: upstreams.app.max_addresses: host-name targets times max_addresses (plus "
       "address targets) exceed 1024 targets"},
      {with("    resolve_interval: 30s\n    max_adresses: 4\n"),
       "t.yaml:5:5: upstreams.app.max_adresses: unknown key \"max_adresses\" (did you mean "
       "\"max_addresses\"?); allowed keys: targets, connect_timeout, timeout, max_idle_per_target, "
       "keepalive_timeout, balance, max_connections, queue_timeout, max_queued, retry, "
       "per_try_timeout, health_check, outlier, circuit_breaker, resolve_interval, max_addresses"},
  });
}

TEST(ResolveConfig, RoundTrips) {
  for (const auto* keys : {"", "    resolve_interval: 30s\n    max_addresses: 4\n"}) {
    auto c = load(with(keys));
    auto yaml = to_yaml(c, filters::config_sections());
    SCOPED_TRACE(yaml);
    EXPECT_NE(yaml.find("    resolve_interval: "), std::string::npos);
    EXPECT_NE(yaml.find("    max_addresses: "), std::string::npos);
    auto again = load(yaml);
    EXPECT_EQ(again.upstreams[0].resolve_interval, c.upstreams[0].resolve_interval);
    EXPECT_EQ(again.upstreams[0].max_addresses, c.upstreams[0].max_addresses);
    EXPECT_EQ(to_yaml(again, filters::config_sections()), yaml);
  }
  auto yaml = to_yaml(load(with("    resolve_interval: 30s\n    max_addresses: 4\n")),
                      filters::config_sections());
  EXPECT_NE(yaml.find("    resolve_interval: 30s\n    max_addresses: 4\n"), std::string::npos);
}

}  // namespace
}  // namespace gatehouse::config
