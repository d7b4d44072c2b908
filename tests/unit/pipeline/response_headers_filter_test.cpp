// The response_headers filter in the chain: X-Process-Time on local and proxied heads when
// enabled (the app's own value stripped), nothing at all when not.
#include "filters/response_headers/filter.hpp"

#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "filters/registry.hpp"

namespace gatehouse::filters::response_headers {
namespace {

struct Services {
  const config::Config& cfg;
};

config::Config load(const std::string& yaml) {
  return config::load_config_string(
      "upstreams:\n  app:\n    targets: [\"127.0.0.1:8000\"]\n" + yaml, "t.yaml",
      config_sections());
}

TEST(ResponseHeadersFilter, AddsProcessTimeToLocalAndProxiedHeads) {
  auto cfg = load("response_headers: {process_time: true}\n");
  Services s{cfg};
  ResponseHeadersFilter f(s);
  pipeline::Context ctx(cfg, pipeline::Clock::now() - std::chrono::milliseconds(42));
  std::string lines;
  pipeline::ResponseHead local{200, nullptr, lines};
  f.encode_headers(ctx, local);
  std::smatch m;
  ASSERT_TRUE(std::regex_match(lines, m, std::regex("X-Process-Time: (\\d+\\.\\d{3})\r\n")))
      << lines;
  double seconds = std::stod(m[1]);
  EXPECT_GE(seconds, 0.042);
  EXPECT_LT(seconds, 60.0);  // no timing bound: only that it is the elapsed time, not garbage

  pipeline::Fields upstream;
  upstream.insert("X-Process-Time", "99.000");
  std::string proxied;
  pipeline::ResponseHead head{200, &upstream, proxied};
  f.encode_headers(ctx, head);
  EXPECT_TRUE(proxied.starts_with("X-Process-Time: ")) << proxied;
  EXPECT_TRUE(f.strips("X-Process-Time"));
  EXPECT_TRUE(f.strips("x-process-time"));
  EXPECT_FALSE(f.strips("X-Process-Times"));
}

TEST(ResponseHeadersFilter, DisabledDoesNothing) {
  auto cfg = load("");
  Services s{cfg};
  ResponseHeadersFilter f(s);
  pipeline::Context ctx(cfg, pipeline::Clock::now());
  std::string lines;
  pipeline::ResponseHead local{200, nullptr, lines};
  f.encode_headers(ctx, local);
  EXPECT_EQ(lines, "");
  EXPECT_FALSE(f.strips("X-Process-Time"));
}

}  // namespace
}  // namespace gatehouse::filters::response_headers
