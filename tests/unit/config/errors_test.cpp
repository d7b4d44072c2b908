// The exact message of every load-time rejection: file, line, column, key path and text.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "config_test_util.hpp"

namespace gatehouse::config {
namespace {

using testing::error_of;
using testing::expect_errors;
using testing::kBase;

TEST(ConfigErrors, Document) {
  expect_errors({
      {std::string("a: [1\n"), "t.yaml:2:1: invalid YAML: end of sequence flow not found"},
      // yaml-cpp 0.7 alone would report empty documents here forever (found by fuzz_config).
      {std::string(","), "t.yaml:1:1: invalid YAML: unexpected \",\""},
      {std::string(", le44~\n"), "t.yaml:1:1: invalid YAML: unexpected \",\""},
      {kBase + "---\n,\n", "t.yaml:5:1: invalid YAML: unexpected \",\""},
      {std::string("upstreams: {app: {targets: [\"x:1\"]}}\n---\nlisten: :1\n"),
       "t.yaml:3:1: expected a single YAML document, found 2"},
      {std::string("- a\n"), "t.yaml:1:1: expected a map, got a list"},
      {std::string("hello\n"), "t.yaml:1:1: expected a map, got a string"},
      {std::string(""), "t.yaml:1:1: upstreams: required key is missing"},
      {std::string("# only a comment\n"), "t.yaml:1:1: upstreams: required key is missing"},
      {std::string("? [a, b]\n: 1\n"), "t.yaml:1:3: keys must be strings, got a list"},
      // yaml-cpp would keep the stray byte and print it as U+FFFD: 60 bytes in, 66 back out
      // (found by fuzz_config). Valid UTF-8 anywhere in the file is kept.
      {kBase + "rate_limit:\n  redis: {key_prefix: \"app\xa7\"}\n",
       "t.yaml:5:27: not UTF-8: a configuration file is UTF-8 text"},
      {std::string("\xff\xfe"), "t.yaml:1:1: not UTF-8: a configuration file is UTF-8 text"},
      {std::string("# caf\xc3\xa9 \xed\xa0\x80\n"),  // a UTF-16 surrogate encoded
       "t.yaml:1:9: not UTF-8: a configuration file is UTF-8 text"},
  });
}

TEST(ConfigErrors, Utf8TextIsAccepted) {
  const auto cfg = load_config_string(kBase +
                                          "# caf\xc3\xa9 \xe6\x97\xa5\xf0\x9f\x99\x82\n"
                                          "rate_limit:\n"
                                          "  store: redis://127.0.0.1:6379\n"
                                          "  redis: {key_prefix: \"caf\xc3\xa9:\"}\n",
                                      "t.yaml", filters::config_sections());
  EXPECT_NE(to_yaml(cfg, filters::config_sections()).find("key_prefix: \"caf\xc3\xa9:\""),
            std::string::npos);
}

TEST(ConfigErrors, TopLevel) {
  expect_errors({
      {kBase + "bogus_key: 1\n",
       "t.yaml:4:1: bogus_key: unknown key \"bogus_key\"; allowed keys: environment, listen, "
       "listen_tls, admin_listen, workers, trusted_proxies, forwarded_headers, proxy_protocol, "
       "access, limits, drain_delay, drain_timeout, upstreams, routes, log, health, paths, "
       "request_id, rate_limit, security_headers, cors, response_headers, errors, cache, jobs"},
      {kBase + "listn: :80\n",
       "t.yaml:4:1: listn: unknown key \"listn\" (did you mean \"listen\"?); allowed keys: "
       "environment, listen, listen_tls, admin_listen, workers, trusted_proxies, "
       "forwarded_headers, proxy_protocol, access, limits, drain_delay, drain_timeout, upstreams, "
       "routes, log, health, paths, request_id, rate_limit, security_headers, cors, "
       "response_headers, errors, cache, jobs"},
      {kBase + "upstreams: {}\n", "t.yaml:4:1: upstreams: duplicate key (first defined at line 1)"},
      {kBase + "environment: staging\n",
       "t.yaml:4:14: environment: invalid value \"staging\" (expected one of: development, "
       "production)"},
      {kBase + "environment: Production\n",
       "t.yaml:4:14: environment: invalid value \"Production\" (expected one of: development, "
       "production)"},
      {kBase + "listen: 8080\n",
       "t.yaml:4:9: listen: invalid address \"8080\" (expected HOST:PORT, [IPV6]:PORT or :PORT)"},
      {kBase + "listen: 127.0.0.1:65536\n",
       "t.yaml:4:9: listen: invalid address \"127.0.0.1:65536\" (expected HOST:PORT, [IPV6]:PORT "
       "or :PORT)"},
      {kBase + "listen: \"::1:80\"\n",
       "t.yaml:4:9: listen: invalid address \"::1:80\" (expected HOST:PORT, [IPV6]:PORT or :PORT)"},
      {kBase + "listen: \"[::1]80\"\n",
       "t.yaml:4:9: listen: invalid address \"[::1]80\" (expected HOST:PORT, [IPV6]:PORT or "
       ":PORT)"},
      {kBase + "listen: \"[1.2.3.4]:80\"\n",
       "t.yaml:4:9: listen: invalid address \"[1.2.3.4]:80\" (expected HOST:PORT, [IPV6]:PORT or "
       ":PORT)"},
      {kBase + "listen: \"exa mple:80\"\n",
       "t.yaml:4:9: listen: invalid address \"exa mple:80\" (expected HOST:PORT, [IPV6]:PORT or "
       ":PORT)"},
      {kBase + "listen: {host: x}\n", "t.yaml:4:9: listen: expected a string, got a map"},
      {kBase + "listen:\n", "t.yaml:4:1: listen: expected a string, got null"},
      {kBase + "admin_listen: on\n",
       "t.yaml:4:15: admin_listen: invalid address \"on\" (expected HOST:PORT, [IPV6]:PORT or "
       ":PORT)"},
      {kBase + "admin_listen: 9901\n",
       "t.yaml:4:15: admin_listen: invalid address \"9901\" (expected HOST:PORT, [IPV6]:PORT or "
       ":PORT)"},
      {kBase + "admin_listen: [a]\n", "t.yaml:4:15: admin_listen: expected a string, got a list"},
      {kBase + "workers: 0\n",
       "t.yaml:4:10: workers: invalid value \"0\" (expected \"auto\" or an integer from 1 to "
       "1024)"},
      {kBase + "workers: 1025\n",
       "t.yaml:4:10: workers: invalid value \"1025\" (expected \"auto\" or an integer from 1 to "
       "1024)"},
      {kBase + "workers: -1\n",
       "t.yaml:4:10: workers: invalid value \"-1\" (expected \"auto\" or an integer from 1 to "
       "1024)"},
      {kBase + "workers: two\n",
       "t.yaml:4:10: workers: invalid value \"two\" (expected \"auto\" or an integer from 1 to "
       "1024)"},
      {kBase + "workers: 1.5\n",
       "t.yaml:4:10: workers: invalid value \"1.5\" (expected \"auto\" or an integer from 1 to "
       "1024)"},
      {kBase + "workers: Auto\n",
       "t.yaml:4:10: workers: invalid value \"Auto\" (expected \"auto\" or an integer from 1 to "
       "1024)"},
      {kBase + "workers: 99999\n",
       "t.yaml:4:10: workers: invalid value \"99999\" (expected \"auto\" or an integer from 1 to "
       "1024)"},
      {kBase + "trusted_proxies: 10.0.0.0/8\n",
       "t.yaml:4:18: trusted_proxies: expected a list, got a string"},
      {kBase + "forwarded_headers: x-forwarded-for\n",
       "t.yaml:4:20: forwarded_headers: invalid value \"x-forwarded-for\" (expected one of: "
       "x-forwarded, forwarded)"},
      {kBase + "proxy_protocol: v2\n",
       "t.yaml:4:17: proxy_protocol: expected true or false, got \"v2\""},
      // Headers are believed only from trusted_proxies: without any, nobody could connect.
      {kBase + "proxy_protocol: true\n",
       "t.yaml:4:17: proxy_protocol: needs trusted_proxies listing the load balancers that send "
       "the PROXY header"},
      {kBase + "proxy_protocol: true\ntrusted_proxies: []\n",
       "t.yaml:4:17: proxy_protocol: needs trusted_proxies listing the load balancers that send "
       "the PROXY header"},
      {kBase + "trusted_proxies: [10.0.0.0/33]\n",
       "t.yaml:4:19: trusted_proxies[0]: invalid CIDR \"10.0.0.0/33\" (expected ADDRESS or "
       "ADDRESS/BITS, e.g. \"10.0.0.0/8\" or \"::1/128\")"},
      {kBase + "trusted_proxies: [10.0.0.0/8, \"::1/129\"]\n",
       "t.yaml:4:31: trusted_proxies[1]: invalid CIDR \"::1/129\" (expected ADDRESS or "
       "ADDRESS/BITS, e.g. \"10.0.0.0/8\" or \"::1/128\")"},
      {kBase + "trusted_proxies: [[10.0.0.0/8]]\n",
       "t.yaml:4:19: trusted_proxies[0]: expected a string, got a list"},
      {kBase + "trusted_proxies:\n  - 10.0.0.0/8\n  - example.com\n",
       "t.yaml:6:5: trusted_proxies[1]: invalid CIDR \"example.com\" (expected ADDRESS or "
       "ADDRESS/BITS, e.g. \"10.0.0.0/8\" or \"::1/128\")"},
      {kBase + "drain_timeout: 30\n",
       "t.yaml:4:16: drain_timeout: invalid duration \"30\": a unit is required, e.g. \"30s\" "
       "(units: ms, s, m, h, d)"},
      {kBase + "drain_timeout: 10x\n",
       "t.yaml:4:16: drain_timeout: invalid duration \"10x\" (expected a number and a unit: ms, s, "
       "m, h or d, e.g. \"250ms\", \"10s\", \"1.5m\")"},
      {kBase + "drain_timeout: ten seconds\n",
       "t.yaml:4:16: drain_timeout: invalid duration \"ten seconds\" (expected a number and a "
       "unit: ms, s, m, h or d, e.g. \"250ms\", \"10s\", \"1.5m\")"},
      {kBase + "drain_timeout: 1.5.s\n",
       "t.yaml:4:16: drain_timeout: invalid duration \"1.5.s\" (expected a number and a unit: ms, "
       "s, m, h or d, e.g. \"250ms\", \"10s\", \"1.5m\")"},
      {kBase + "drain_timeout: 10S\n",
       "t.yaml:4:16: drain_timeout: invalid duration \"10S\" (expected a number and a unit: ms, s, "
       "m, h or d, e.g. \"250ms\", \"10s\", \"1.5m\")"},
      {kBase + "drain_timeout: 0.5ms\n",
       "t.yaml:4:16: drain_timeout: invalid duration \"0.5ms\" (expected a number and a unit: ms, "
       "s, m, h or d, e.g. \"250ms\", \"10s\", \"1.5m\")"},
      {kBase + "drain_timeout: -1s\n",
       "t.yaml:4:16: drain_timeout: invalid duration \"-1s\" (expected a number and a unit: ms, s, "
       "m, h or d, e.g. \"250ms\", \"10s\", \"1.5m\")"},
      {kBase + "drain_timeout: 366d\n", "t.yaml:4:16: drain_timeout: must be at most 365d"},
      {kBase + "drain_delay: 5\n",
       "t.yaml:4:14: drain_delay: invalid duration \"5\": a unit is required, e.g. \"5s\" "
       "(units: ms, s, m, h, d)"},
      {kBase + "drain_delay: -1s\n",
       "t.yaml:4:14: drain_delay: invalid duration \"-1s\" (expected a number and a unit: ms, s, "
       "m, "
       "h or d, e.g. \"250ms\", \"10s\", \"1.5m\")"},
      {kBase + "drain_delay: 366d\n", "t.yaml:4:14: drain_delay: must be at most 365d"},
      {kBase + "drain_delay: [1s]\n", "t.yaml:4:14: drain_delay: expected a string, got a list"},
      {kBase + "drain_timeout: 99999999999999999999d\n",
       "t.yaml:4:16: drain_timeout: invalid duration \"99999999999999999999d\" (expected a number "
       "and a unit: ms, s, m, h or d, e.g. \"250ms\", \"10s\", \"1.5m\")"},
      {kBase + "drain_timeout: .5s\n",
       "t.yaml:4:16: drain_timeout: invalid duration \".5s\" (expected a number and a unit: ms, s, "
       "m, h or d, e.g. \"250ms\", \"10s\", \"1.5m\")"},
      {kBase + "drain_timeout:\n", "t.yaml:4:1: drain_timeout: expected a string, got null"},
      {kBase + "drain_timeout: [1s]\n",
       "t.yaml:4:16: drain_timeout: expected a string, got a list"},
  });
}

TEST(ConfigErrors, Limits) {
  expect_errors({
      {kBase + "limits: 3\n", "t.yaml:4:9: limits: expected a map, got a string"},
      {kBase + "limits: [a]\n", "t.yaml:4:9: limits: expected a map, got a list"},
      {kBase + "limits:\n  max_header_bytez: 16KiB\n",
       "t.yaml:5:3: limits.max_header_bytez: unknown key \"max_header_bytez\" (did you mean "
       "\"max_header_bytes\"?); allowed keys: max_header_bytes, max_body_bytes, max_uri_bytes, "
       "header_timeout, idle_timeout, min_body_rate, max_connections, max_connections_per_ip"},
      {kBase + "limits:\n  max_body_bytes: 10mib\n",
       "t.yaml:5:19: limits.max_body_bytes: invalid size \"10mib\" (expected bytes, or a number "
       "and a unit: B, KiB, MiB, GiB, KB, MB or GB, e.g. \"16KiB\")"},
      {kBase + "limits:\n  max_body_bytes: 16kib\n",
       "t.yaml:5:19: limits.max_body_bytes: invalid size \"16kib\" (expected bytes, or a number "
       "and a unit: B, KiB, MiB, GiB, KB, MB or GB, e.g. \"16KiB\")"},
      {kBase + "limits:\n  max_body_bytes: 10 parsecs\n",
       "t.yaml:5:19: limits.max_body_bytes: invalid size \"10 parsecs\" (expected bytes, or a "
       "number and a unit: B, KiB, MiB, GiB, KB, MB or GB, e.g. \"16KiB\")"},
      {kBase + "limits:\n  max_body_bytes: 10XB\n",
       "t.yaml:5:19: limits.max_body_bytes: invalid size \"10XB\" (expected bytes, or a number and "
       "a unit: B, KiB, MiB, GiB, KB, MB or GB, e.g. \"16KiB\")"},
      {kBase + "limits:\n  max_body_bytes: -1\n",
       "t.yaml:5:19: limits.max_body_bytes: invalid size \"-1\" (expected bytes, or a number and a "
       "unit: B, KiB, MiB, GiB, KB, MB or GB, e.g. \"16KiB\")"},
      {kBase + "limits:\n  max_body_bytes: 1.5MiB\n",
       "t.yaml:5:19: limits.max_body_bytes: invalid size \"1.5MiB\" (expected bytes, or a number "
       "and a unit: B, KiB, MiB, GiB, KB, MB or GB, e.g. \"16KiB\")"},
      {kBase + "limits:\n  max_body_bytes: 99999999999999999999\n",
       "t.yaml:5:19: limits.max_body_bytes: invalid size \"99999999999999999999\" (expected bytes, "
       "or a number and a unit: B, KiB, MiB, GiB, KB, MB or GB, e.g. \"16KiB\")"},
      {kBase + "limits:\n  max_body_bytes: 10 MiB\n",
       "t.yaml:5:19: limits.max_body_bytes: invalid size \"10 MiB\" (expected bytes, or a number "
       "and a unit: B, KiB, MiB, GiB, KB, MB or GB, e.g. \"16KiB\")"},
      {kBase + "limits:\n  max_header_bytes: 0\n",
       "t.yaml:5:21: limits.max_header_bytes: must be greater than 0"},
      {kBase + "limits:\n  max_uri_bytes: 0KiB\n",
       "t.yaml:5:18: limits.max_uri_bytes: must be greater than 0"},
      {kBase + "limits:\n  header_timeout: 0s\n",
       "t.yaml:5:19: limits.header_timeout: must be greater than 0"},
      {kBase + "limits:\n  idle_timeout: 60\n",
       "t.yaml:5:17: limits.idle_timeout: invalid duration \"60\": a unit is required, e.g. "
       "\"60s\" (units: ms, s, m, h, d)"},
      {kBase + "limits: {header_timeout: 10s, idle_timeout: 0ms}\n",
       "t.yaml:4:45: limits.idle_timeout: must be greater than 0"},
  });
}

TEST(ConfigErrors, Upstreams) {
  expect_errors({
      {std::string("upstreams: {}\n"), "t.yaml:1:12: upstreams: at least one upstream is required"},
      {std::string("upstreams:\n"), "t.yaml:1:1: upstreams: at least one upstream is required"},
      {std::string("upstreams: [app]\n"), "t.yaml:1:12: upstreams: expected a map, got a list"},
      {std::string("upstreams:\n  a b:\n    targets: [\"x:1\"]\n"),
       "t.yaml:2:3: upstreams.a b: invalid upstream name \"a b\" (use letters, digits, '_' and "
       "'-')"},
      {std::string("upstreams:\n  app.x:\n    targets: [\"x:1\"]\n"),
       "t.yaml:2:3: upstreams.app.x: invalid upstream name \"app.x\" (use letters, digits, '_' and "
       "'-')"},
      {std::string("upstreams:\n  app:\n    targets: [\"x:1\"]\n    retries: 3\n"),
       "t.yaml:4:5: upstreams.app.retries: unknown key \"retries\"; allowed keys: targets, "
       "connect_timeout, timeout, max_idle_per_target, keepalive_timeout, balance, "
       "max_connections, queue_timeout, max_queued, retry, per_try_timeout, health_check, outlier, "
       "circuit_breaker, resolve_interval, max_addresses"},
      {std::string("upstreams:\n  app: {}\n"),
       "t.yaml:2:8: upstreams.app.targets: required key is missing"},
      {std::string("upstreams:\n  app:\n"),
       "t.yaml:2:3: upstreams.app.targets: required key is missing"},
      {std::string("upstreams:\n  app: x:1\n"),
       "t.yaml:2:8: upstreams.app: expected a map, got a string"},
      {std::string("upstreams:\n  app:\n    targets: []\n"),
       "t.yaml:3:14: upstreams.app.targets: at least one target is required"},
      {std::string("upstreams:\n  app:\n    targets: \"x:1\"\n"),
       "t.yaml:3:14: upstreams.app.targets: expected a list, got a string"},
      {std::string("upstreams:\n  app:\n    targets:\n      - localhost\n"),
       "t.yaml:4:9: upstreams.app.targets[0]: invalid address \"localhost\" (expected HOST:PORT or "
       "http://HOST:PORT)"},
      {std::string("upstreams:\n  app:\n    targets:\n      - https://x:443\n"),
       "t.yaml:4:9: upstreams.app.targets[0]: unsupported scheme \"https\" (only http:// is "
       "supported)"},
      {std::string("upstreams:\n  app:\n    targets:\n      - http://x:80/api\n"),
       "t.yaml:4:9: upstreams.app.targets[0]: unexpected \"/api\" after the address (expected "
       "HOST:PORT or http://HOST:PORT)"},
      {std::string("upstreams:\n  app:\n    targets:\n      - :8000\n"),
       "t.yaml:4:9: upstreams.app.targets[0]: missing host in \":8000\" (expected HOST:PORT or "
       "http://HOST:PORT)"},
      {std::string("upstreams:\n  app:\n    targets:\n      - x:0\n"),
       "t.yaml:4:9: upstreams.app.targets[0]: port 0 is not allowed in \"x:0\""},
      {std::string("upstreams:\n  app:\n    targets:\n      - x:65536\n"),
       "t.yaml:4:9: upstreams.app.targets[0]: invalid address \"x:65536\" (expected HOST:PORT or "
       "http://HOST:PORT)"},
      {std::string("upstreams:\n  app:\n    targets:\n      - http://\n"),
       "t.yaml:4:9: upstreams.app.targets[0]: invalid address \"http://\" (expected HOST:PORT or "
       "http://HOST:PORT)"},
      {std::string("upstreams:\n  app:\n    targets:\n      - http://x:y\n"),
       "t.yaml:4:9: upstreams.app.targets[0]: invalid address \"http://x:y\" (expected HOST:PORT "
       "or http://HOST:PORT)"},
      {std::string("upstreams:\n  app:\n    targets: [\"x:1\"]\n    connect_timeout: 0s\n"),
       "t.yaml:4:22: upstreams.app.connect_timeout: must be greater than 0"},
      {std::string("upstreams:\n  app:\n    targets: [\"x:1\"]\n    timeout: 5\n"),
       "t.yaml:4:14: upstreams.app.timeout: invalid duration \"5\": a unit is required, e.g. "
       "\"5s\" (units: ms, s, m, h, d)"},
      {std::string("upstreams:\n  app:\n    targets: [\"x:1\"]\n    max_idle_per_target: -1\n"),
       "t.yaml:4:26: upstreams.app.max_idle_per_target: invalid value \"-1\" (expected an integer "
       "from 0 to 1000000)"},
      {std::string(
           "upstreams:\n  app:\n    targets: [\"x:1\"]\n    max_idle_per_target: 1000001\n"),
       "t.yaml:4:26: upstreams.app.max_idle_per_target: invalid value \"1000001\" (expected an "
       "integer from 0 to 1000000)"},
      {std::string("upstreams:\n  app:\n    targets: [\"x:1\"]\n    max_idle_per_target: 8KiB\n"),
       "t.yaml:4:26: upstreams.app.max_idle_per_target: invalid value \"8KiB\" (expected an "
       "integer from 0 to 1000000)"},
      {std::string("upstreams:\n  app:\n    targets: [\"x:1\"]\n    keepalive_timeout: forever\n"),
       "t.yaml:4:24: upstreams.app.keepalive_timeout: invalid duration \"forever\" (expected a "
       "number and a unit: ms, s, m, h or d, e.g. \"250ms\", \"10s\", \"1.5m\")"},
      {std::string("upstreams:\n  a: {targets: [\"x:1\"]}\n  b: {targets: [\"x:2\"]}\n"),
       "t.yaml:1:1: routes: required key is missing (it may be left out only when exactly one "
       "upstream is defined)"},
  });
}

TEST(ConfigErrors, Routes) {
  expect_errors({
      {kBase + "routes: {}\n", "t.yaml:4:9: routes: expected a list, got a map"},
      {kBase + "routes: []\n", "t.yaml:4:9: routes: at least one route is required"},
      {kBase + "routes:\n", "t.yaml:4:1: routes: at least one route is required"},
      {kBase + "routes:\n  - default\n", "t.yaml:5:5: routes[0]: expected a map, got a string"},
      {kBase + "routes:\n  - upstream: app\n",
       "t.yaml:5:5: routes[0].name: required key is missing"},
      {kBase + "routes:\n  - name: x\n", "t.yaml:5:5: routes[0].upstream: required key is missing"},
      {kBase + "routes:\n  - name: x y\n    upstream: app\n",
       "t.yaml:5:11: routes[0].name: invalid route name \"x y\" (use letters, digits, '_' and "
       "'-')"},
      {kBase + "routes:\n  - name: x\n    upstream: app\n    priority: 1\n",
       "t.yaml:7:5: routes[0].priority: unknown key \"priority\"; allowed keys: name, match, "
       "upstream, timeout, buffer_request, invalidates, mode, hybrid_wait, rate_limit, cache, "
       "access"},
      {kBase + "routes:\n  - name: x\n    upstream: app\n  - name: y\n    upstream: app\n  - name: "
               "x\n    upstream: app\n",
       "t.yaml:9:11: routes[2].name: duplicate route name \"x\" (also routes[0])"},
      {kBase + "routes:\n  - name: x\n    upstream: nope\n",
       "t.yaml:6:15: routes[0].upstream: unknown upstream \"nope\" (known upstreams: app)"},
      {kBase + "routes:\n  - name: x\n    upstream: [app]\n",
       "t.yaml:6:15: routes[0].upstream: expected a string, got a list"},
      {kBase + "routes:\n  - name: x\n    match: /api\n    upstream: app\n",
       "t.yaml:6:12: routes[0].match: expected a map, got a string"},
      {kBase + "routes:\n  - name: x\n    match:\n      prefix: /api\n    upstream: app\n",
       "t.yaml:7:7: routes[0].match.prefix: unknown key \"prefix\"; allowed keys: path_prefix, "
       "path, methods, host"},
      {kBase + "routes:\n  - name: x\n    match:\n      path_prefix: api\n    upstream: app\n",
       "t.yaml:7:20: routes[0].match.path_prefix: must start with '/' (got \"api\")"},
      {kBase + "routes:\n  - name: x\n    match:\n      path_prefix: \"\"\n    upstream: app\n",
       "t.yaml:7:20: routes[0].match.path_prefix: must start with '/' (got \"\")"},
      {kBase + "routes:\n  - name: x\n    match:\n      path_prefix: /a b\n    upstream: app\n",
       "t.yaml:7:20: routes[0].match.path_prefix: must not contain blanks, '?' or '#' (got \"/a "
       "b\")"},
      {kBase + "routes:\n  - name: x\n    match:\n      path_prefix: /a?b\n    upstream: app\n",
       "t.yaml:7:20: routes[0].match.path_prefix: must not contain blanks, '?' or '#' (got "
       "\"/a?b\")"},
      {kBase + "routes:\n  - name: x\n    match:\n      methods: [get]\n    upstream: app\n",
       "t.yaml:7:17: routes[0].match.methods[0]: invalid method \"get\" (expected an upper-case "
       "token such as GET or POST)"},
      {kBase +
           "routes:\n  - name: x\n    match:\n      methods: [GET, \"PO ST\"]\n    upstream: app\n",
       "t.yaml:7:22: routes[0].match.methods[1]: invalid method \"PO ST\" (expected an upper-case "
       "token such as GET or POST)"},
      {kBase + "routes:\n  - name: x\n    match:\n      methods: [\"\"]\n    upstream: app\n",
       "t.yaml:7:17: routes[0].match.methods[0]: invalid method \"\" (expected an upper-case token "
       "such as GET or POST)"},
      {kBase + "routes:\n  - name: x\n    match:\n      methods: GET\n    upstream: app\n",
       "t.yaml:7:16: routes[0].match.methods: expected a list, got a string"},
      {kBase + "routes:\n  - name: x\n    match:\n      host: example.com:80\n    upstream: app\n",
       "t.yaml:7:13: routes[0].match.host: invalid host \"example.com:80\" (expected a host name "
       "or address without port, e.g. example.com)"},
      {kBase +
           "routes:\n  - name: x\n    match:\n      host: http://example.com\n    upstream: app\n",
       "t.yaml:7:13: routes[0].match.host: invalid host \"http://example.com\" (expected a host "
       "name or address without port, e.g. example.com)"},
      {kBase + "routes:\n  - name: x\n    match:\n      host: \"[::1\"\n    upstream: app\n",
       "t.yaml:7:13: routes[0].match.host: invalid host \"[::1\" (expected a host name or address "
       "without port, e.g. example.com)"},
      {kBase + "routes:\n  - name: x\n    match:\n      host: \"[1.2.3.4]\"\n    upstream: app\n",
       "t.yaml:7:13: routes[0].match.host: invalid host \"[1.2.3.4]\" (expected a host name or "
       "address without port, e.g. example.com)"},
  });
}

TEST(ConfigErrors, Log) {
  expect_errors({
      {kBase + "log: json\n", "t.yaml:4:6: log: expected a map, got a string"},
      {kBase + "log:\n  format: xml\n",
       "t.yaml:5:11: log.format: invalid value \"xml\" (expected one of: json, text)"},
      {kBase + "log:\n  level: verbose\n",
       "t.yaml:5:10: log.level: invalid value \"verbose\" (expected one of: trace, debug, info, "
       "warn, error, critical, off, in any case; warning is warn)"},
      {kBase + "log:\n  level: VERBOSE\n",
       "t.yaml:5:10: log.level: invalid value \"VERBOSE\" (expected one of: trace, debug, info, "
       "warn, error, critical, off, in any case; warning is warn)"},
      {kBase + "log:\n  access: \"\"\n",
       "t.yaml:5:11: log.access: must not be empty (expected stdout, stderr, off or a file path)"},
      {kBase + "log:\n  error: \"\"\n",
       "t.yaml:5:10: log.error: must not be empty (expected stdout, stderr, off or a file path)"},
      {kBase + "log:\n  security: \"\"\n",
       "t.yaml:5:13: log.security: must not be empty (expected stdout, stderr, off or a file "
       "path)"},
      {kBase + "log:\n  access: [stdout]\n",
       "t.yaml:5:11: log.access: expected a string, got a list"},
      {kBase + "log:\n  hash_client_ip: yes\n",
       "t.yaml:5:19: log.hash_client_ip: expected true or false, got \"yes\""},
      {kBase + "log:\n  hash_client_ip: 1\n",
       "t.yaml:5:19: log.hash_client_ip: expected true or false, got \"1\""},
      {kBase + "log:\n  file: /tmp/x\n",
       "t.yaml:5:3: log.file: unknown key \"file\"; allowed keys: format, access, error, security, "
       "level, hash_client_ip, security_events, security_sample"},
  });
}

TEST(ConfigErrors, Health) {
  expect_errors({
      {kBase + "health:\n  live_path: health\n",
       "t.yaml:5:14: health.live_path: must start with '/' (got \"health\")"},
      {kBase + "health:\n  ready_path: ready\n",
       "t.yaml:5:15: health.ready_path: must start with '/' (got \"ready\")"},
      {kBase + "health:\n  summary_path: \"\"\n",
       "t.yaml:5:17: health.summary_path: must start with '/' (got \"\")"},
      {kBase + "health:\n  cache_ttl: 1\n",
       "t.yaml:5:14: health.cache_ttl: invalid duration \"1\": a unit is required, e.g. \"1s\" "
       "(units: ms, s, m, h, d)"},
      {kBase + "health:\n  check_interval: 0s\n",
       "t.yaml:5:19: health.check_interval: must be greater than 0"},
      {kBase + "health:\n  path: /h\n",
       "t.yaml:5:3: health.path: unknown key \"path\"; allowed keys: live_path, ready_path, "
       "summary_path, cache_ttl, check_interval, checks"},
  });
}

TEST(ConfigErrors, RequestId) {
  expect_errors({
      {kBase + "request_id:\n  header: \"\"\n",
       "t.yaml:5:11: request_id.header: must not be empty"},
      {kBase + "request_id:\n  header: X Request Id\n",
       "t.yaml:5:11: request_id.header: invalid header name \"X Request Id\" (expected a token "
       "such as X-Request-ID)"},
      {kBase + "request_id:\n  header: \"X-Id:\"\n",
       "t.yaml:5:11: request_id.header: invalid header name \"X-Id:\" (expected a token such as "
       "X-Request-ID)"},
      {kBase + "request_id:\n  trust_incoming: maybe\n",
       "t.yaml:5:19: request_id.trust_incoming: expected true or false, got \"maybe\""},
      {kBase + "request_id:\n  generate: true\n",
       "t.yaml:5:3: request_id.generate: unknown key \"generate\"; allowed keys: header, "
       "trust_incoming"},
      {kBase + "request_id: X-Request-ID\n",
       "t.yaml:4:13: request_id: expected a map, got a string"},
  });
}

TEST(ConfigErrors, ListenTls) {
  expect_errors({
      {kBase +
           "listen_tls: {address: \":8443\", cert: /nonexistent/c.pem, key: /nonexistent/k.pem}\n",
       "t.yaml:4:38: listen_tls.cert: cannot read \"/nonexistent/c.pem\": No such file or "
       "directory"},
      {kBase + "listen_tls: {cert: /etc/hostname, key: /etc/hostname}\n",
       "t.yaml:4:13: listen_tls.address: required key is missing"},
      {kBase + "listen_tls: {address: \":8443\", cert: /etc/hostname, key: /etc/hostname, "
               "redirect: true}\n",
       "t.yaml:4:73: listen_tls.redirect: unknown key \"redirect\"; allowed keys: address, cert, "
       "key, redirect_http"},
  });
}

}  // namespace
}  // namespace gatehouse::config
