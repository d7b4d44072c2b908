// routes[].invalidates (issue 14): canonical prefixes, bounded, round-tripped by `gatehouse check`.
#include <gtest/gtest.h>

#include <string>

#include "config/config.hpp"
#include "config/config_test_util.hpp"
#include "filters/registry.hpp"

namespace gatehouse::config {
namespace {

using testing::expect_errors;
using testing::kBase;

Config load(const std::string& yaml) {
  return load_config_string(kBase + yaml, "t.yaml", filters::config_sections());
}

TEST(InvalidatesConfig, ReadCanonicalAndRoundTrip) {
  auto c = load(R"(routes:
  - name: create-page
    match: {path_prefix: /api/pages, methods: [POST]}
    upstream: app
    invalidates: [/api/slugs/, /api/pages, "/caf%c3%a9//x", /%7euser]
  - name: other
    upstream: app
)");
  EXPECT_EQ(c.routes[0].invalidates,
            (std::vector<std::string>{"/api/slugs/", "/api/pages", "/caf%C3%A9/x", "/~user"}));
  EXPECT_TRUE(c.routes[1].invalidates.empty());
  auto emitted = to_yaml(c, filters::config_sections());
  EXPECT_NE(emitted.find("invalidates: [/api/slugs/, /api/pages, /caf%C3%A9/x, /~user]"),
            std::string::npos)
      << emitted;
  auto again = load_config_string(emitted, "check.yaml", filters::config_sections());
  EXPECT_EQ(again.routes[0].invalidates, c.routes[0].invalidates);
  EXPECT_EQ(to_yaml(again, filters::config_sections()), emitted);
}

TEST(InvalidatesConfig, SlashesKeptWhenPathsSaySo) {
  auto c = load(R"(paths: {merge_slashes: false}
routes:
  - {name: r, upstream: app, invalidates: ["/a//b"]}
)");
  EXPECT_EQ(c.routes[0].invalidates, (std::vector<std::string>{"/a//b"}));
}

TEST(InvalidatesConfig, Rejections) {
  std::string many = "[";
  for (std::size_t i = 0; i <= Route::kMaxInvalidates; ++i) {
    many += (i ? ", /p" : "/p") + std::to_string(i);
  }
  many += "]";
  const std::string long_prefix = "/" + std::string(Route::kMaxInvalidatePrefix, 'a');
  expect_errors({
      {kBase + "routes:\n  - {name: r, upstream: app, invalidates: /api}\n",
       "t.yaml:5:43: routes[0].invalidates: expected a list, got a string"},
      {kBase + "routes:\n  - {name: r, upstream: app, invalidates: [api]}\n",
       "t.yaml:5:44: routes[0].invalidates[0]: must start with '/' (got \"api\")"},
      {kBase + "routes:\n  - {name: r, upstream: app, invalidates: [/a, \"/b?x\"]}\n",
       "t.yaml:5:48: routes[0].invalidates[1]: must not contain blanks, '?' or '#' (got "
       "\"/b?x\")"},
      {kBase + "routes:\n  - {name: r, upstream: app, invalidates: [/a/../b]}\n",
       "t.yaml:5:44: routes[0].invalidates[0]: invalid path \"/a/../b\": dot segment in path"},
      {kBase + "routes:\n  - {name: r, upstream: app, invalidates: [/a, /b, /a]}\n",
       "t.yaml:5:52: routes[0].invalidates[2]: duplicate prefix \"/a\""},
      {kBase + "routes:\n  - {name: r, upstream: app, invalidates: " + many + "}\n",
       "t.yaml:5:43: routes[0].invalidates: at most 32 prefixes"},
      {kBase + "routes:\n  - {name: r, upstream: app, invalidates: [" + long_prefix + "]}\n",
       "t.yaml:5:44: routes[0].invalidates[0]: at most 512 characters"},
  });
  // The full list of route keys belongs to every section's test; the hint is ours.
  EXPECT_EQ(
      testing::error_of(kBase + "routes:\n  - {name: r, upstream: app, invalidate: [/a]}\n")
          .rfind("t.yaml:5:30: routes[0].invalidate: unknown key \"invalidate\" (did you mean "
                 "\"invalidates\"?); allowed keys: name, match, upstream, timeout, "
                 "buffer_request, invalidates, ",
                 0),
      0u);
}

}  // namespace
}  // namespace gatehouse::config
