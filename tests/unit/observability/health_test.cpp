#include "observability/health.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace gatehouse::observability {
namespace {

using nlohmann::json;

config::Upstream upstream(std::string name, std::vector<std::uint16_t> ports) {
  config::Upstream u;
  u.name = std::move(name);
  for (auto p : ports) {
    u.targets.push_back(config::Endpoint{"127.0.0.1", p});
  }
  return u;
}

config::Config config_with(std::vector<config::Upstream> upstreams,
                           config::Millis cache_ttl = config::Millis{0}) {
  config::Config cfg;
  cfg.upstreams = std::move(upstreams);
  cfg.health.cache_ttl = cache_ttl;
  return cfg;
}

// "2026-11-23T10:00:00.123Z": 'D' in the shape is any digit, everything else is literal. (No
// std::regex: GCC 12 warns inside it under the sanitizer build, which uses -Werror.)
bool is_timestamp(std::string_view s) {
  constexpr std::string_view kShape = "DDDD-DD-DDTDD:DD:DD.DDDZ";
  if (s.size() != kShape.size()) {
    return false;
  }
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool ok = kShape[i] == 'D' ? (s[i] >= '0' && s[i] <= '9') : s[i] == kShape[i];
    if (!ok) {
      return false;
    }
  }
  return true;
}

TEST(Health, ReadyWhenATargetIsReachable) {
  auto cfg = config_with({upstream("app", {8000, 8001})});
  Health h(cfg, 2, "0.1.0");
  ASSERT_EQ(h.upstream_count(), 1u);
  ASSERT_EQ(h.target_count(0), 2u);
  EXPECT_TRUE(h.ready());  // targets are assumed up until a check says otherwise
  h.target(0, 0).report(false, "connection refused");
  EXPECT_TRUE(h.ready());
}

TEST(Health, NotReadyWhenAllTargetsUnreachable) {
  auto cfg = config_with({upstream("app", {8000, 8001}), upstream("db", {9000})});
  Health h(cfg, 2, "0.1.0");
  h.target(0, 0).report(false, "refused");
  h.target(0, 1).report(false, "refused");
  EXPECT_TRUE(h.ready());  // db is still reachable
  h.target(1, 0).report(false, "timeout");
  EXPECT_FALSE(h.ready());
  h.target(0, 1).report(true);
  EXPECT_TRUE(h.ready());
}

// A reload may leave an upstream out: it no longer counts for readiness nor shows in the report,
// and its targets keep their state for when it is put back.
TEST(Health, UpstreamsLeftOutByAReloadAreNotReportedNorCounted) {
  auto cfg = config_with({upstream("app", {8000}), upstream("db", {9000})});
  Health h(cfg, 1, "0.1.0");
  h.target(0, 0).report(false, "refused");
  EXPECT_TRUE(h.ready());  // db
  h.set_active({true, false});
  EXPECT_TRUE(h.active(0));
  EXPECT_FALSE(h.active(1));
  EXPECT_FALSE(h.ready());
  auto d = h.detailed();
  EXPECT_TRUE(d["components"].contains("upstream:app"));
  EXPECT_FALSE(d["components"].contains("upstream:db"));
  h.set_active({true, true});
  EXPECT_TRUE(h.ready());
  EXPECT_TRUE(h.detailed()["components"].contains("upstream:db"));
  EXPECT_FALSE(h.target(0, 0).reachable());  // kept throughout
}

TEST(Health, NotReadyWhenDraining) {
  auto cfg = config_with({upstream("app", {8000})});
  Health h(cfg, 1, "0.1.0");
  EXPECT_FALSE(h.draining());
  h.set_draining();
  EXPECT_TRUE(h.draining());
  EXPECT_FALSE(h.ready());
}

TEST(Health, NoUpstreamsIsNotReady) {
  auto cfg = config_with({});
  Health h(cfg, 1, "0.1.0");
  EXPECT_FALSE(h.ready());
}

TEST(TargetHealth, ReportKeepsLastError) {
  TargetHealth t("127.0.0.1:8000");
  EXPECT_EQ(t.address(), "127.0.0.1:8000");
  EXPECT_TRUE(t.reachable());
  EXPECT_EQ(t.last_error(), "");
  t.report(false, "Connection refused");
  EXPECT_FALSE(t.reachable());
  EXPECT_EQ(t.last_error(), "Connection refused");
  t.report(true);
  EXPECT_TRUE(t.reachable());
}

TEST(TargetHealth, FlagsAndState) {
  TargetHealth t("a");
  EXPECT_STREQ(t.state(), "healthy");
  EXPECT_TRUE(t.set(TargetHealth::kUnhealthy, true));
  EXPECT_FALSE(t.set(TargetHealth::kUnhealthy, true));  // no change: nobody logs twice
  EXPECT_FALSE(t.reachable());
  EXPECT_TRUE(t.out());
  EXPECT_STREQ(t.state(), "unhealthy");
  t.report(false, "refused");
  EXPECT_STREQ(t.state(), "unhealthy");  // the strongest reason
  EXPECT_TRUE(t.set(TargetHealth::kEjected, true));
  EXPECT_STREQ(t.state(), "ejected");
  EXPECT_TRUE(t.set(TargetHealth::kEjected, false));
  EXPECT_TRUE(t.set(TargetHealth::kUnhealthy, false));
  EXPECT_FALSE(t.set(TargetHealth::kUnhealthy, false));
  EXPECT_FALSE(t.out());  // unreachable alone is not out: tried last
  EXPECT_FALSE(t.reachable());
  EXPECT_STREQ(t.state(), "unreachable");
  t.report(true);
  EXPECT_TRUE(t.reachable());
  EXPECT_STREQ(t.state(), "healthy");
}

TEST(Health, NotReadyWhenEveryTargetIsOut) {
  auto cfg = config_with({upstream("app", {8000, 8001})});
  Health h(cfg, 1, "0.1.0");
  h.target(0, 0).set(TargetHealth::kUnhealthy, true);
  EXPECT_TRUE(h.ready());
  h.target(0, 1).set(TargetHealth::kEjected, true);
  EXPECT_FALSE(h.ready());
  auto d = h.detailed();
  EXPECT_EQ(d["status"], "down");
  EXPECT_EQ(d["components"]["upstream:app"]["targets"][0]["state"], "unhealthy");
  EXPECT_EQ(d["components"]["upstream:app"]["targets"][1]["state"], "ejected");
  EXPECT_TRUE(d["components"]["upstream:app"]["targets"][1].contains("ejected_for_s"));
}

TEST(Health, ActiveCheckRecordIsShown) {
  auto cfg = config_with({upstream("app", {8000})});
  Health h(cfg, 1, "0.1.0");
  auto& t = h.target(0, 0);
  t.active.last_check_unix_ms = 1'764'590'400'123;  // 2025-12-01T12:00:00.123Z
  t.active.last_latency_us = 1500;
  t.active.consecutive_failures = 2;
  t.passive.consecutive_5xx = 3;
  t.passive.ejections = 4;
  auto target = h.detailed()["components"]["upstream:app"]["targets"][0];
  EXPECT_EQ(target["last_check"], "2025-12-01T12:00:00.123Z");
  EXPECT_EQ(target["latency_ms"], 1.5);
  EXPECT_EQ(target["consecutive_check_failures"], 2);
  EXPECT_EQ(target["consecutive_5xx"], 3);
  EXPECT_EQ(target["ejections"], 4);
}

TEST(Health, UpstreamProbeAddsDetailAndCanOnlyMakeItWorse) {
  auto cfg = config_with({upstream("app", {8000})});
  Health h(cfg, 1, "0.1.0");
  h.set_upstream_probe(0, [] {
    return ComponentReport{Status::down, {{"circuit_breaker", {{"state", "open"}}}}};
  });
  auto d = h.detailed();
  EXPECT_EQ(d["components"]["upstream:app"]["status"], "down");
  EXPECT_EQ(d["components"]["upstream:app"]["circuit_breaker"]["state"], "open");
  EXPECT_EQ(d["components"]["upstream:app"]["targets"].size(), 1u);
  EXPECT_EQ(d["status"], "down");
  EXPECT_TRUE(h.ready());  // readiness follows the targets only
  h.set_upstream_probe(0, [] { return ComponentReport{Status::ok, {}}; });
  h.target(0, 0).report(false, "refused");
  EXPECT_EQ(h.detailed()["components"]["upstream:app"]["status"], "down");
}

TEST(Health, SummaryShape) {
  auto cfg = config_with({upstream("app", {8000})});
  Health h(cfg, 4, "0.1.0");
  h.add_component("log", [] { return ComponentReport{Status::ok, {{"dropped", 0}}}; });
  EXPECT_EQ(h.summary(),
            json::parse(R"({"status":"ok","components":{"process":"ok","upstream:app":"ok",
                                                       "log":"ok"}})"));
}

TEST(Health, DetailedShape) {
  auto cfg = config_with({upstream("app", {8000})});
  Health h(cfg, 4, "0.1.0");
  h.add_component("log", [] { return ComponentReport{Status::ok, {{"dropped", 0}}}; });
  auto d = h.detailed();

  ASSERT_TRUE(d.is_object());
  EXPECT_EQ(d.size(), 3u) << d.dump();
  EXPECT_EQ(d["status"], "ok");
  ASSERT_TRUE(d["checked_at"].is_string());
  EXPECT_TRUE(is_timestamp(d["checked_at"].get<std::string>())) << d.dump();

  auto& comps = d["components"];
  ASSERT_TRUE(comps.is_object());
  EXPECT_EQ(comps.size(), 3u) << comps.dump();

  auto process = comps["process"];
  ASSERT_TRUE(process["uptime_seconds"].is_number_integer()) << process.dump();
  EXPECT_GE(process["uptime_seconds"].get<std::int64_t>(), 0);
  process.erase("uptime_seconds");
  EXPECT_EQ(process, json::parse(R"({"status":"ok","workers":4,"version":"0.1.0",
                                     "draining":false})"));

  EXPECT_EQ(comps["upstream:app"], json::parse(R"({"status":"ok","targets":[
                {"address":"127.0.0.1:8000","reachable":true,"state":"healthy","last_error":"",
                 "last_check":null,"latency_ms":null,"consecutive_check_failures":0,
                 "consecutive_5xx":0,"consecutive_connect_failures":0,"ejections":0}]})"));
  EXPECT_EQ(comps["log"], json::parse(R"({"status":"ok","dropped":0})"));
}

TEST(Health, DegradedWhenOneOfTwoTargetsIsDown) {
  auto cfg = config_with({upstream("app", {8000, 8001})});
  Health h(cfg, 1, "0.1.0");
  h.target(0, 1).report(false, "connect: Connection refused");
  auto d = h.detailed();
  EXPECT_EQ(d["status"], "degraded");
  auto targets = d["components"]["upstream:app"]["targets"];
  EXPECT_EQ(d["components"]["upstream:app"]["status"], "degraded");
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0]["reachable"], true);
  EXPECT_EQ(targets[0]["state"], "healthy");
  EXPECT_EQ(targets[0]["last_error"], "");
  EXPECT_EQ(targets[1]["address"], "127.0.0.1:8001");
  EXPECT_EQ(targets[1]["reachable"], false);
  EXPECT_EQ(targets[1]["state"], "unreachable");
  EXPECT_EQ(targets[1]["last_error"], "connect: Connection refused");
  EXPECT_EQ(h.summary(), json::parse(R"({"status":"degraded","components":{"process":"ok",
                                         "upstream:app":"degraded"}})"));
  EXPECT_FALSE(Health::is_down(d));
}

TEST(Health, DownWhenTheOnlyUpstreamHasNoReachableTarget) {
  auto cfg = config_with({upstream("app", {8000, 8001})});
  Health h(cfg, 1, "0.1.0");
  h.target(0, 0).report(false, "refused");
  h.target(0, 1).report(false, "timed out");
  auto d = h.detailed();
  EXPECT_EQ(d["status"], "down");
  EXPECT_TRUE(Health::is_down(d));
  EXPECT_EQ(d["components"]["upstream:app"]["status"], "down");
  EXPECT_EQ(d["components"]["upstream:app"]["targets"][1]["last_error"], "timed out");
  EXPECT_EQ(h.summary(), json::parse(R"({"status":"down","components":{"process":"ok",
                                         "upstream:app":"down"}})"));
}

TEST(Health, RecoveredTargetShowsNoError) {
  auto cfg = config_with({upstream("app", {8000})});
  Health h(cfg, 1, "0.1.0");
  h.target(0, 0).report(false, "refused");
  EXPECT_EQ(h.detailed()["status"], "down");
  h.target(0, 0).report(true);
  auto d = h.detailed();
  EXPECT_EQ(d["status"], "ok");
  EXPECT_EQ(d["components"]["upstream:app"]["targets"][0]["last_error"], "");
}

TEST(Health, DrainingIsDown) {
  auto cfg = config_with({upstream("app", {8000})});
  Health h(cfg, 1, "0.1.0");
  h.set_draining();
  auto d = h.detailed();
  EXPECT_EQ(d["status"], "down");
  EXPECT_EQ(d["components"]["process"]["draining"], true);
  EXPECT_EQ(d["components"]["process"]["status"], "degraded");
  EXPECT_EQ(h.summary()["status"], "down");
}

TEST(Health, AddedComponentAppearsWithItsDetail) {
  auto cfg = config_with({upstream("app", {8000})});
  Health h(cfg, 1, "0.1.0");
  h.add_component("redis", [] {
    return ComponentReport{Status::degraded, {{"latency_ms", 250}, {"note", "slow"}}};
  });
  auto d = h.detailed();
  EXPECT_EQ(d["components"]["redis"],
            json::parse(R"({"status":"degraded","latency_ms":250,"note":"slow"})"));
  EXPECT_EQ(d["status"], "degraded");
  EXPECT_EQ(h.summary()["components"]["redis"], "degraded");
}

TEST(Health, ComponentStatusOverridesADetailStatusKey) {
  auto cfg = config_with({upstream("app", {8000})});
  Health h(cfg, 1, "0.1.0");
  h.add_component("x", [] { return ComponentReport{Status::ok, {{"status", "bogus"}}}; });
  EXPECT_EQ(h.detailed()["components"]["x"], json::parse(R"({"status":"ok"})"));
}

TEST(Health, DownComponentDegradesButKeepsReady) {
  auto cfg = config_with({upstream("app", {8000})});
  Health h(cfg, 1, "0.1.0");
  h.add_component("jobs", [] { return ComponentReport{Status::down, {}}; });
  auto d = h.detailed();
  EXPECT_EQ(d["components"]["jobs"]["status"], "down");
  EXPECT_EQ(d["status"], "degraded");
  EXPECT_TRUE(h.ready());
}

TEST(Health, CacheReturnsSameResultWithinTtl) {
  auto cfg = config_with({upstream("app", {8000})}, config::Millis{3'600'000});
  Health h(cfg, 1, "0.1.0");
  int probes = 0;
  h.add_component("log", [&] {
    ++probes;
    return ComponentReport{};
  });
  auto first = h.detailed();
  EXPECT_EQ(probes, 1);
  h.target(0, 0).report(false, "refused");
  auto second = h.detailed();
  auto summary = h.summary();
  EXPECT_EQ(probes, 1);
  EXPECT_EQ(second, first);
  EXPECT_EQ(second["checked_at"], first["checked_at"]);
  EXPECT_EQ(second["status"], "ok");  // the change waits for the ttl
  EXPECT_EQ(summary["status"], "ok");
}

TEST(Health, DrainingShowsAtOnceDespiteCache) {
  auto cfg = config_with({upstream("app", {8000})}, config::Millis{3'600'000});
  Health h(cfg, 1, "0.1.0");
  EXPECT_EQ(h.detailed()["status"], "ok");
  EXPECT_EQ(h.summary()["status"], "ok");
  h.set_draining();
  auto d = h.detailed();
  EXPECT_EQ(d["status"], "down");
  EXPECT_EQ(d["components"]["process"]["draining"], true);
  EXPECT_EQ(h.summary()["status"], "down");
}

TEST(Health, AddingAComponentInvalidatesCache) {
  auto cfg = config_with({upstream("app", {8000})}, config::Millis{3'600'000});
  Health h(cfg, 1, "0.1.0");
  EXPECT_FALSE(h.detailed()["components"].contains("log"));
  h.add_component("log", [] { return ComponentReport{}; });
  EXPECT_TRUE(h.detailed()["components"].contains("log"));
}

TEST(Health, ZeroTtlRecomputesEveryCall) {
  auto cfg = config_with({upstream("app", {8000})}, config::Millis{0});
  Health h(cfg, 1, "0.1.0");
  int probes = 0;
  h.add_component("log", [&] {
    ++probes;
    return ComponentReport{};
  });
  EXPECT_EQ(h.detailed()["status"], "ok");
  h.target(0, 0).report(false, "refused");
  EXPECT_EQ(h.detailed()["status"], "down");
  EXPECT_EQ(probes, 2);
}

// A component whose detail carries bytes that are not UTF-8, as a Redis error reply or an error
// text cut at a byte limit can. nlohmann's dump() throws on them (that used to end the admin
// session answering /health/detailed, with no log line); the report text replaces them instead.
TEST(Health, ReportTextSurvivesInvalidUtf8) {
  config::Config cfg;
  Health h(cfg, 1, "0.1.0");
  h.add_component("store", [] {
    return ComponentReport{Status::degraded, {{"last_error", std::string("ERR \xff\xfe caf\xc3")}}};
  });
  auto report = h.detailed();
  EXPECT_THROW((void)report.dump(), nlohmann::json::type_error);
  std::string text;
  ASSERT_NO_THROW(text = Health::to_json_text(report));
  auto parsed = nlohmann::json::parse(text);
  EXPECT_EQ(parsed["components"]["store"]["last_error"],
            "ERR \xEF\xBF\xBD\xEF\xBF\xBD caf\xEF\xBF\xBD");
  EXPECT_EQ(parsed["components"]["store"]["status"], "degraded");
  EXPECT_NO_THROW((void)Health::to_json_text(h.summary()));
}

TEST(HealthStatus, Names) {
  EXPECT_STREQ(to_string(Status::ok), "ok");
  EXPECT_STREQ(to_string(Status::degraded), "degraded");
  EXPECT_STREQ(to_string(Status::down), "down");
}

// A reload that adds or re-targets an upstream adds a unit: not served until set_active, never
// moving the units workers already hold references into, and one unit exported per name.
TEST(Health, UnitsAddedAfterStartUp) {
  auto cfg = config_with({upstream("app", {8000})});
  Health h(cfg, 1, "0.1.0", 3);
  EXPECT_EQ(h.unit_capacity(), 3u);
  TargetHealth* first = &h.target(0, 0);
  auto retargeted = upstream("app", {8001, 8002});
  auto extra = upstream("extra", {9000});
  EXPECT_EQ(h.add_upstream(retargeted), 1u);
  EXPECT_EQ(h.add_upstream(extra), 2u);
  EXPECT_THROW(h.add_upstream(extra), std::length_error);
  EXPECT_EQ(&h.target(0, 0), first);
  EXPECT_EQ(h.upstream_count(), 3u);
  EXPECT_EQ(h.target_count(1), 2u);
  EXPECT_EQ(h.target(1, 1).address(), "127.0.0.1:8002");
  EXPECT_EQ(h.upstream_name(2), "extra");
  // Start-up unit served, the new ones not yet.
  EXPECT_TRUE(h.active(0));
  EXPECT_FALSE(h.active(1));
  EXPECT_TRUE(h.exported(0));
  EXPECT_FALSE(h.exported(1));
  EXPECT_TRUE(h.exported(2));  // alone with its name
  auto report = h.detailed();
  EXPECT_TRUE(report["components"].contains("upstream:app"));
  EXPECT_FALSE(report["components"].contains("upstream:extra"));
  // The reload swaps app to its new unit and adds extra.
  h.set_active({false, true, true});
  EXPECT_FALSE(h.exported(0));
  EXPECT_TRUE(h.exported(1));
  report = h.detailed();
  EXPECT_EQ(report["components"]["upstream:app"]["targets"].size(), 2u);
  EXPECT_TRUE(report["components"].contains("upstream:extra"));
  // Nothing served under a name: the newest unit is the exported one.
  h.set_active({false, false, true});
  EXPECT_FALSE(h.exported(0));
  EXPECT_TRUE(h.exported(1));
  // Readiness looks at served units only.
  h.target(2, 0).report(false, "refused");
  EXPECT_FALSE(h.ready());
  h.set_active({true, false, true});
  EXPECT_TRUE(h.ready());
}

}  // namespace
}  // namespace gatehouse::observability
