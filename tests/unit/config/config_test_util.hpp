#pragma once
// Shared by the config tests: a minimal valid config to append snippets to, the error text, and
// field-by-field comparison of the rate_limit settings.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "filters/rate_limit/config.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config::testing {

// Three lines; a snippet appended to it starts on line 4.
inline const std::string kBase =
    "upstreams:\n"
    "  app:\n"
    "    targets: [\"127.0.0.1:8000\"]\n";

// what() of the ConfigError load_config_string throws for `yaml` (source "t.yaml"), or
// "(no error)".
inline std::string error_of(const std::string& yaml) {
  try {
    load_config_string(yaml, "t.yaml", filters::config_sections());
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

// One config snippet and the exact rejection it must get.
struct Case {
  std::string yaml;
  std::string message;
};

inline void expect_errors(const std::vector<Case>& cases) {
  for (const auto& c : cases) {
    SCOPED_TRACE(c.yaml);
    EXPECT_EQ(error_of(c.yaml), c.message);
  }
}

inline std::vector<std::string> cidr_texts(const filters::rate_limit::Block& b) {
  std::vector<std::string> out;
  for (const auto& n : b.exempt_ips) {
    out.push_back(n.to_string());
  }
  return out;
}

// Field by field: http::Cidr has no operator==, so Block's defaulted one cannot be used.
inline void expect_same_block(const filters::rate_limit::Block& a,
                              const filters::rate_limit::Block& b) {
  EXPECT_EQ(a.algorithm, b.algorithm);
  EXPECT_EQ(a.key, b.key);
  EXPECT_EQ(a.limits, b.limits);
  EXPECT_EQ(a.burst, b.burst);
  EXPECT_EQ(a.ietf_headers, b.ietf_headers);
  EXPECT_EQ(a.x_headers, b.x_headers);
  EXPECT_EQ(a.exempt_paths, b.exempt_paths);
  EXPECT_EQ(cidr_texts(a), cidr_texts(b));
  EXPECT_EQ(a.ban, b.ban);
  EXPECT_EQ(a.max_in_flight, b.max_in_flight);
}

inline void expect_same_rate_limits(const Config& a, const Config& b) {
  ASSERT_EQ(filters::rate_limit::settings(a).defaults.has_value(),
            filters::rate_limit::settings(b).defaults.has_value());
  if (filters::rate_limit::settings(a).defaults) {
    expect_same_block(*filters::rate_limit::settings(a).defaults,
                      *filters::rate_limit::settings(b).defaults);
  }
  EXPECT_EQ(filters::rate_limit::settings(a).max_keys, filters::rate_limit::settings(b).max_keys);
  EXPECT_EQ(filters::rate_limit::settings(a).applies, filters::rate_limit::settings(b).applies);
  ASSERT_EQ(a.routes.size(), b.routes.size());
  for (std::size_t i = 0; i < a.routes.size(); ++i) {
    SCOPED_TRACE("route " + a.routes[i].name);
    const auto& x = filters::rate_limit::route_limits(a.routes[i]);
    const auto& y = filters::rate_limit::route_limits(b.routes[i]);
    EXPECT_EQ(x.mode, y.mode);
    ASSERT_EQ(x.blocks.size(), y.blocks.size());
    for (std::size_t j = 0; j < x.blocks.size(); ++j) {
      expect_same_block(x.blocks[j], y.blocks[j]);
    }
  }
}

}  // namespace gatehouse::config::testing
