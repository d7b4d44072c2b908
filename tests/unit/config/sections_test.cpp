// The machinery filters plug their sections into, with made-up sections and no filter: where a
// section is read and written, what its reader sees when the key is absent, per-route keys, the
// finish hook, rejected registrations, and settings shared between copies of a Config.
#include "config/sections.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/filter_settings.hpp"
#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"
#include "config/yaml_writer.hpp"
#include "config_test_util.hpp"

namespace gatehouse::config {
namespace {

using testing::kBase;

struct Early {
  std::string text = "default";
  bool present = false;
  bool saw_upstreams = false;
  bool saw_routes = false;
};
struct Late {
  Environment environment = Environment::production;
  bool saw_paths_merge = false;
  bool finished = false;
};
struct PerRoute {
  std::string text;
  std::string early_text;  // the top-level section's value when the route was read
};

const Early& early(const Config& c) {
  static const Early none;
  const auto* e = c.filters.get<Early>();
  return e != nullptr ? *e : none;
}

Sections demo_sections() {
  Sections s;
  s.add({.key = "early",
         .stage = Stage::before_routes,
         .read =
             [](const detail::Value* v, Config& c) {
               Early e;
               e.present = v != nullptr;
               if (v != nullptr) {
                 e.text = v->text();
               }
               e.saw_upstreams = !c.upstreams.empty();
               e.saw_routes = !c.routes.empty();
               c.filters.set(std::move(e));
             },
         .write = [](YamlWriter& w, const Config& c) { w.key("early").str(early(c).text); },
         .read_route =
             [](const detail::Value& v, const Config& c, Route& r) {
               r.filters.set(PerRoute{v.text(), early(c).text});
             },
         .write_route =
             [](YamlWriter& w, const Config&, const Route& r) {
               if (const auto* p = r.filters.get<PerRoute>()) {
                 w.key("early").str(p->text);
               }
             }});
  s.add({.key = "late",
         .stage = Stage::last,
         .read =
             [](const detail::Value* v, Config& c) {
               if (v != nullptr && v->text() == "bad") {
                 v->fail("bad value");
               }
               c.filters.set(Late{c.environment, !c.paths.merge_slashes});
             },
         .write = [](YamlWriter& w, const Config&) { w.key("late").str("x"); },
         .finish =
             [](Config& c) {
               Late l = *c.filters.get<Late>();
               l.finished = true;
               c.filters.set(std::move(l));
             }});
  return s;
}

const std::string kRoutes =
    "routes:\n"
    "  - {name: a, upstream: app, early: mine}\n"
    "  - {name: b, upstream: app}\n";

TEST(Sections, ReadAfterUpstreamsBeforeRoutesAndAbsentKeysStillCallTheReader) {
  auto c = load_config_string(kBase + kRoutes, "t.yaml", demo_sections());
  const Early& e = early(c);
  EXPECT_FALSE(e.present);
  EXPECT_EQ(e.text, "default");
  EXPECT_TRUE(e.saw_upstreams);
  EXPECT_FALSE(e.saw_routes);
  ASSERT_EQ(c.routes.size(), 2u);
  const auto* a = c.routes[0].filters.get<PerRoute>();
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->text, "mine");
  EXPECT_EQ(a->early_text, "default");
  EXPECT_EQ(c.routes[1].filters.get<PerRoute>(), nullptr);  // called only when present
}

TEST(Sections, LastStageSeesEveryOtherKeyThenFinishRuns) {
  auto c = load_config_string(
      kBase + "late: 1\nenvironment: development\npaths: {merge_slashes: false}\n", "t.yaml",
      demo_sections());
  const auto* l = c.filters.get<Late>();
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->environment, Environment::development);
  EXPECT_TRUE(l->saw_paths_merge);
  EXPECT_TRUE(l->finished);
  EXPECT_EQ(early(c).text, "default");
}

TEST(Sections, KeysJoinTheAllowedListsAndErrorsKeepTheirPosition) {
  auto sections = demo_sections();
  auto error_of = [&](const std::string& yaml) -> std::string {
    try {
      load_config_string(yaml, "t.yaml", sections);
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_EQ(error_of(kBase + "late: bad\n"), "t.yaml:4:7: late: bad value");
  EXPECT_EQ(error_of(kBase + "lat: 1\n"),
            "t.yaml:4:1: lat: unknown key \"lat\" (did you mean \"late\"?); allowed keys: "
            "environment, listen, listen_tls, admin_listen, workers, trusted_proxies, "
            "forwarded_headers, proxy_protocol, access, limits, drain_delay, drain_timeout, "
            "upstreams, routes, log, health, paths, request_id, early, late");
  EXPECT_EQ(error_of(kBase + "routes:\n  - {name: a, upstream: app, late: 1}\n"),
            "t.yaml:5:30: routes[0].late: unknown key \"late\" (did you mean \"name\"?); allowed "
            "keys: name, match, upstream, timeout, buffer_request, invalidates, mode, hybrid_wait, "
            "early, access");
  // Without the sections, their keys are unknown: a filter left out of the list cannot go
  // unnoticed.
  EXPECT_NE(testing::error_of(kBase + "early: 1\n").find("unknown key \"early\""),
            std::string::npos);
}

TEST(Sections, WrittenAtTheirStage) {
  auto sections = demo_sections();
  auto yaml = to_yaml(load_config_string(kBase + kRoutes, "t.yaml", sections), sections);
  auto at = [&](const std::string& text) { return yaml.find(text); };
  EXPECT_LT(at("\nupstreams:"), at("\nearly: default\n"));
  EXPECT_LT(at("\nearly: default\n"), at("\nroutes:"));
  EXPECT_NE(at("    upstream: app\n    timeout: 0s\n    buffer_request: false\n    early: mine\n"),
            std::string::npos);
  EXPECT_LT(at("\nrequest_id:"), at("\nlate: x\n"));
  EXPECT_EQ(yaml.substr(yaml.size() - 8), "late: x\n");
}

TEST(Sections, RejectsAKeyRegisteredTwiceOrASharedKey) {
  Sections s = demo_sections();
  EXPECT_THROW(s.add({.key = "late"}), std::logic_error);
  Sections shared;
  shared.add({.key = "routes", .read = [](const detail::Value*, Config&) {}});
  EXPECT_THROW(load_config_string(kBase, "t.yaml", shared), std::logic_error);
}

TEST(FilterSettings, UnsetIsNullAndCopiesShareTheObject) {
  Config c;
  EXPECT_EQ(c.filters.get<Early>(), nullptr);
  c.filters.set(Early{"one"});
  Config copy = c;
  EXPECT_EQ(copy.filters.get<Early>(), c.filters.get<Early>());
  EXPECT_EQ(c.filters.get<Late>(), nullptr);  // another type, another slot
  copy.filters.set(Early{"two"});
  EXPECT_EQ(c.filters.get<Early>()->text, "one");
  EXPECT_EQ(copy.filters.get<Early>()->text, "two");
}

}  // namespace
}  // namespace gatehouse::config
