// Micro benchmarks of the per-request pure work: ids, header rules, metrics, access-log pieces.
#include <benchmark/benchmark.h>

#include "http/canonical_path.hpp"
#include "http/cidr.hpp"
#include "http/error_reply.hpp"
#include "http/fields.hpp"
#include "http/forwarding.hpp"
#include "http/proxy_protocol.hpp"
#include "http/redaction.hpp"
#include "http/request_id.hpp"
#include "observability/metrics.hpp"

namespace {

using namespace gatehouse;

void BM_RequestId(benchmark::State& state) {
  auto& gen = http::thread_id_generator();
  for (auto _ : state) {
    benchmark::DoNotOptimize(gen.request_id());
  }
}
BENCHMARK(BM_RequestId);

void BM_Traceparent(benchmark::State& state) {
  auto& gen = http::thread_id_generator();
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        http::next_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", gen));
  }
}
BENCHMARK(BM_Traceparent);

void BM_HopByHop(benchmark::State& state) {
  const char* names[] = {"Host", "User-Agent", "Accept", "Connection", "X-Request-ID"};
  for (auto _ : state) {
    for (auto* n : names) {
      benchmark::DoNotOptimize(http::is_hop_by_hop(n));
    }
  }
}
BENCHMARK(BM_HopByHop);

void BM_ClientIpTrusted(benchmark::State& state) {
  std::vector<http::Cidr> trusted{*http::Cidr::parse("10.0.0.0/8")};
  for (auto _ : state) {
    benchmark::DoNotOptimize(http::client_ip("10.1.2.3", "203.0.113.7, 10.0.0.9", trusted));
  }
}
BENCHMARK(BM_ClientIpTrusted);

// Behind HAProxy's option forwardfor: the client's line and the balancer's, both read.
void BM_ResolveForwardingTwoLines(benchmark::State& state) {
  std::vector<http::Cidr> trusted{*http::Cidr::parse("10.0.0.0/8")};
  http::ForwardingLines lines;
  lines.x_forwarded_for = {"1.2.3.4", "203.0.113.7"};
  lines.x_forwarded_proto = {"https"};
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        http::resolve_forwarding("10.1.2.3", lines, trusted, http::ForwardedHeaders::x_forwarded));
  }
}
BENCHMARK(BM_ResolveForwardingTwoLines);

void BM_ResolveForwardingUntrusted(benchmark::State& state) {
  std::vector<http::Cidr> trusted{*http::Cidr::parse("10.0.0.0/8")};
  http::ForwardingLines lines;
  for (auto _ : state) {
    benchmark::DoNotOptimize(http::resolve_forwarding("203.0.113.7", lines, trusted,
                                                      http::ForwardedHeaders::x_forwarded));
  }
}
BENCHMARK(BM_ResolveForwardingUntrusted);

void BM_ProxyProtocolV1(benchmark::State& state) {
  std::string_view h = "PROXY TCP4 192.0.2.10 198.51.100.1 51000 443\r\nGET / HTTP/1.1\r\n";
  for (auto _ : state) {
    benchmark::DoNotOptimize(http::proxy_protocol::parse(h));
  }
}
BENCHMARK(BM_ProxyProtocolV1);

void BM_RedactTarget(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        http::redact_target("/api/generate?prompt=dragons&api_key=s3cret&n=3"));
  }
}
BENCHMARK(BM_RedactTarget);

// The per-request canonical path: an already canonical path (most requests: no copy), one with
// an escape to decode, and one with escapes that stay (UTF-8) plus a doubled slash.
void BM_CanonicalPath(benchmark::State& state, std::string_view path) {
  for (auto _ : state) {
    auto r = http::canonical_path(path, true);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK_CAPTURE(BM_CanonicalPath, canonical_short, std::string_view("/api/generate"));
BENCHMARK_CAPTURE(BM_CanonicalPath, canonical_long,
                  std::string_view("/api/v1/projects/1234/models/gpt-small/generate"));
BENCHMARK_CAPTURE(BM_CanonicalPath, canonical_utf8_escapes,
                  std::string_view("/wiki/caf%C3%A9/%E6%97%A5%E6%9C%AC"));
BENCHMARK_CAPTURE(BM_CanonicalPath, decode_one_escape, std::string_view("/api/%67enerate"));
BENCHMARK_CAPTURE(BM_CanonicalPath, lower_hex_and_double_slash,
                  std::string_view("//wiki/caf%c3%a9/%e6%97%a5%e6%9c%ac"));

void BM_ErrorBody(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        http::error_body(http::reply_for_status(502), "0123456789abcdef0123456789abcdef", false));
  }
}
BENCHMARK(BM_ErrorBody);

void BM_MetricsRecord(benchmark::State& state) {
  observability::Metrics m(1, {"default"}, {"app"});
  auto& w = m.worker(0);
  std::int64_t us = 0;
  for (auto _ : state) {
    w.record_request(0, 200, us++ & 0xffff);
  }
}
BENCHMARK(BM_MetricsRecord);

}  // namespace

BENCHMARK_MAIN();
