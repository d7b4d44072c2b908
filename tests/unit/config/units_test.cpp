// Durations, sizes, addresses and upstream targets as written in the config, and back.
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config/units.hpp"

namespace gatehouse::config {
namespace {

using namespace std::chrono_literals;

// --- parse_duration ------------------------------------------------------------------------------

TEST(ParseDuration, EveryUnit) {
  EXPECT_EQ(parse_duration("250ms"), Millis(250));
  EXPECT_EQ(parse_duration("10s"), Millis(10'000));
  EXPECT_EQ(parse_duration("1m"), Millis(60'000));
  EXPECT_EQ(parse_duration("1h"), Millis(3'600'000));
  EXPECT_EQ(parse_duration("1d"), Millis(86'400'000));
  EXPECT_EQ(parse_duration("0s"), Millis(0));
  EXPECT_EQ(parse_duration("0ms"), Millis(0));
}

TEST(ParseDuration, DecimalsThatComeToWholeMilliseconds) {
  EXPECT_EQ(parse_duration("1.5s"), Millis(1'500));
  EXPECT_EQ(parse_duration("0.25s"), Millis(250));
  EXPECT_EQ(parse_duration("2.000s"), Millis(2'000));
  EXPECT_EQ(parse_duration("1.5m"), Millis(90'000));
  EXPECT_EQ(parse_duration("0.001s"), Millis(1));
  EXPECT_EQ(parse_duration("1.5d"), Millis(129'600'000));
}

TEST(ParseDuration, Rejects) {
  for (auto text : {"",
                    "30",
                    "10x",
                    "ten seconds",
                    "1.5.s",
                    "10S",
                    "10MS",
                    "10 s",
                    " 10s",
                    "10s ",
                    "-1s",
                    "+1s",
                    ".5s",
                    "1.s",
                    "s",
                    "ms",
                    "0.5ms",
                    "1.0001s",
                    "1.0000000001s",
                    "1e3ms",
                    "0x10s",
                    "10sec",
                    "1h30m",
                    "99999999999999999999d",
                    "106751991168d"}) {
    EXPECT_FALSE(parse_duration(text).has_value()) << text;
  }
}

TEST(ParseDuration, LargestRepresentable) {
  // 106751991167 days is just below the int64 millisecond limit.
  EXPECT_EQ(parse_duration("106751991167d"), Millis(106751991167LL * 86'400'000));
}

// --- parse_size ----------------------------------------------------------------------------------

TEST(ParseSize, BareBytesAndEveryUnit) {
  EXPECT_EQ(parse_size("0"), 0u);
  EXPECT_EQ(parse_size("512"), 512u);
  EXPECT_EQ(parse_size("4096B"), 4096u);
  EXPECT_EQ(parse_size("16KiB"), 16u * 1024);
  EXPECT_EQ(parse_size("10MiB"), 10u * 1024 * 1024);
  EXPECT_EQ(parse_size("1GiB"), 1024u * 1024 * 1024);
  EXPECT_EQ(parse_size("16KB"), 16'000u);
  EXPECT_EQ(parse_size("10MB"), 10'000'000u);
  EXPECT_EQ(parse_size("1GB"), 1'000'000'000u);
}

TEST(ParseSize, Rejects) {
  for (auto text :
       {"", "10mib", "16kib", "10kb", "10 MiB", " 10", "10 ", "10XB", "10TiB", "-1", "+1", "1.5MiB",
        "KiB", "B", "0x10", "1e3", "18446744073709551616", "17179869184GiB"}) {
    EXPECT_FALSE(parse_size(text).has_value()) << text;
  }
}

// --- parse_endpoint / Endpoint::to_string --------------------------------------------------------

void expect_endpoint(const std::string& text, const std::string& host, std::uint16_t port) {
  auto ep = parse_endpoint(text);
  ASSERT_TRUE(ep.has_value()) << text;
  EXPECT_EQ(ep->host, host) << text;
  EXPECT_EQ(ep->port, port) << text;
}

TEST(ParseEndpoint, Forms) {
  expect_endpoint("0.0.0.0:8080", "0.0.0.0", 8080);
  expect_endpoint("127.0.0.1:9901", "127.0.0.1", 9901);
  expect_endpoint(":8080", "0.0.0.0", 8080);
  expect_endpoint("[::1]:8080", "::1", 8080);
  expect_endpoint("[::]:80", "::", 80);
  expect_endpoint("[2001:db8::1]:443", "2001:db8::1", 443);
  expect_endpoint("localhost:8000", "localhost", 8000);
  expect_endpoint("my_host.example-1.com:1", "my_host.example-1.com", 1);
  expect_endpoint("host:65535", "host", 65535);
}

TEST(ParseEndpoint, PortZeroMeansAnyFreePort) {
  expect_endpoint("127.0.0.1:0", "127.0.0.1", 0);
}

TEST(ParseEndpoint, Rejects) {
  for (auto text :
       {"",        "8080",      ":",        "host:",          "host:65536", "host:123456",
        "host:-1", "host:+80",  "host:80 ", " host:80",       "host:8o",    "::1:80",
        "::1",     "[::1]80",   "[::1]:",   "[1.2.3.4]:80",   "[]:80",      "[::1:80",
        "::1]:80", "[::1]]:80", "ho st:80", "http://host:80", "host/x:80",  "[fe80::1%eth0]:80"}) {
    EXPECT_FALSE(parse_endpoint(text).has_value()) << text;
  }
}

TEST(EndpointToString, BracketsIpv6AndRoundTrips) {
  EXPECT_EQ((Endpoint{"0.0.0.0", 8080}).to_string(), "0.0.0.0:8080");
  EXPECT_EQ((Endpoint{"::1", 80}).to_string(), "[::1]:80");
  EXPECT_EQ((Endpoint{"localhost", 0}).to_string(), "localhost:0");
  for (auto text : {"0.0.0.0:8080", "[::1]:8080", "localhost:8000", "[2001:db8::1]:1"}) {
    auto ep = parse_endpoint(text);
    ASSERT_TRUE(ep.has_value()) << text;
    EXPECT_EQ(ep->to_string(), text);
  }
}

// --- format_duration / format_size ---------------------------------------------------------------

TEST(FormatDuration, DaysHoursSecondsOrMilliseconds) {
  EXPECT_EQ(detail::format_duration(0ms), "0s");
  EXPECT_EQ(detail::format_duration(250ms), "250ms");
  EXPECT_EQ(detail::format_duration(1500ms), "1500ms");
  EXPECT_EQ(detail::format_duration(10s), "10s");
  EXPECT_EQ(detail::format_duration(60s), "60s");
  EXPECT_EQ(detail::format_duration(90s), "90s");
  EXPECT_EQ(detail::format_duration(1h), "1h");
  EXPECT_EQ(detail::format_duration(90min), "5400s");
  EXPECT_EQ(detail::format_duration(24h), "1d");
  EXPECT_EQ(detail::format_duration(48h), "2d");
  EXPECT_EQ(detail::format_duration(36h), "36h");
}

TEST(FormatDuration, RoundTrips) {
  for (long long ms : {0LL, 1LL, 999LL, 1000LL, 1001LL, 59'999LL, 60'000LL, 3'600'000LL,
                       86'400'000LL, 31'536'000'000LL}) {
    auto text = detail::format_duration(Millis(ms));
    EXPECT_EQ(parse_duration(text), Millis(ms)) << text;
  }
}

TEST(FormatSize, LargestExactUnit) {
  EXPECT_EQ(detail::format_size(0), "0");
  EXPECT_EQ(detail::format_size(100), "100");
  EXPECT_EQ(detail::format_size(1500), "1500");
  EXPECT_EQ(detail::format_size(1024), "1KiB");
  EXPECT_EQ(detail::format_size(16 * 1024), "16KiB");
  EXPECT_EQ(detail::format_size(1'024'000), "1000KiB");
  EXPECT_EQ(detail::format_size(10 * 1024 * 1024), "10MiB");
  EXPECT_EQ(detail::format_size(1024 * 1024 * 1024), "1GiB");
  EXPECT_EQ(detail::format_size(1000), "1KB");
  EXPECT_EQ(detail::format_size(10'000'000), "10MB");
  EXPECT_EQ(detail::format_size(3'000'000'000), "3GB");
}

TEST(FormatSize, RoundTrips) {
  for (std::size_t bytes :
       {std::size_t{0}, std::size_t{1}, std::size_t{1023}, std::size_t{1024}, std::size_t{16'000},
        std::size_t{16'384}, std::size_t{10'485'760}, std::size_t{1} << 40}) {
    auto text = detail::format_size(bytes);
    EXPECT_EQ(parse_size(text), bytes) << text;
  }
}

// --- parse_target --------------------------------------------------------------------------------

void expect_target(const std::string& text, const std::string& host, std::uint16_t port) {
  auto t = detail::parse_target(text);
  ASSERT_TRUE(t.endpoint.has_value()) << text << ": " << t.error;
  EXPECT_EQ(t.endpoint->host, host) << text;
  EXPECT_EQ(t.endpoint->port, port) << text;
  EXPECT_EQ(t.error, "");
}

TEST(ParseTarget, AddressOrHttpUrl) {
  expect_target("127.0.0.1:8000", "127.0.0.1", 8000);
  expect_target("[::1]:8000", "::1", 8000);
  expect_target("app.internal:80", "app.internal", 80);
  expect_target("http://127.0.0.1:8000", "127.0.0.1", 8000);
  expect_target("http://127.0.0.1:8000/", "127.0.0.1", 8000);
  expect_target("http://example.com", "example.com", 80);
  expect_target("http://example.com/", "example.com", 80);
  expect_target("http://[::1]", "::1", 80);
  expect_target("http://[::1]:81", "::1", 81);
}

TEST(ParseTarget, Errors) {
  auto error = [](const std::string& text) {
    auto t = detail::parse_target(text);
    EXPECT_FALSE(t.endpoint.has_value()) << text;
    return t.error;
  };
  EXPECT_EQ(error("https://x:443"), "unsupported scheme \"https\" (only http:// is supported)");
  EXPECT_EQ(error("HTTP://x:80"), "unsupported scheme \"HTTP\" (only http:// is supported)");
  EXPECT_EQ(error("://x:80"), "unsupported scheme \"\" (only http:// is supported)");
  EXPECT_EQ(error("http://x:80/api"),
            "unexpected \"/api\" after the address (expected HOST:PORT or http://HOST:PORT)");
  EXPECT_EQ(error("http://x:80?a=1"),
            "unexpected \"?a=1\" after the address (expected HOST:PORT or http://HOST:PORT)");
  EXPECT_EQ(error("http://user@x:80"),
            "unexpected \"@x:80\" after the address (expected HOST:PORT or http://HOST:PORT)");
  EXPECT_EQ(error("localhost"),
            "invalid address \"localhost\" (expected HOST:PORT or http://HOST:PORT)");
  EXPECT_EQ(error(""), "invalid address \"\" (expected HOST:PORT or http://HOST:PORT)");
  EXPECT_EQ(error("http://"),
            "invalid address \"http://\" (expected HOST:PORT or http://HOST:PORT)");
  EXPECT_EQ(error("http://x:y"),
            "invalid address \"http://x:y\" (expected HOST:PORT or http://HOST:PORT)");
  EXPECT_EQ(error("x:65536"),
            "invalid address \"x:65536\" (expected HOST:PORT or http://HOST:PORT)");
  EXPECT_EQ(error(":8000"), "missing host in \":8000\" (expected HOST:PORT or http://HOST:PORT)");
  EXPECT_EQ(error("http://:8000"),
            "missing host in \"http://:8000\" (expected HOST:PORT or http://HOST:PORT)");
  EXPECT_EQ(error("x:0"), "port 0 is not allowed in \"x:0\"");
  EXPECT_EQ(error("http://x:0"), "port 0 is not allowed in \"http://x:0\"");
}

}  // namespace
}  // namespace gatehouse::config
