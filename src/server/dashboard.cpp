// GET /dashboard.json: what the dashboard page shows, built on the admin thread from a snapshot
// of the workers' metric shards (the same relaxed loads /metrics makes; no lock a worker takes),
// the rate limiter's refusal counts and top keys, and the cached /health/detailed report.
#include "server/dashboard.hpp"

#include <algorithm>

#include "http/csp.hpp"
#include "server/gateway.hpp"

namespace gatehouse::server {

const std::string& dashboard_csp() {
  static const std::string csp =
      "default-src 'none'; script-src " +
      ::gatehouse::http::inline_hash_sources(kDashboardHtml, "script") + "; style-src " +
      ::gatehouse::http::inline_hash_sources(kDashboardHtml, "style") +
      "; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
      "frame-ancestors 'none'";
  return csp;
}

namespace {

constexpr std::size_t kTopKeys = 10;
constexpr std::size_t kBansShown = 10;

nlohmann::json opt_ms(const std::optional<double>& seconds) {
  return seconds ? nlohmann::json(*seconds * 1000.0) : nlohmann::json(nullptr);
}

nlohmann::json rates_json(const observability::RouteRates& r) {
  static constexpr const char* kClass[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  nlohmann::json classes = nlohmann::json::object();
  std::int64_t total = 0;
  for (std::size_t c = 0; c < 5; ++c) {
    classes[kClass[c]] = r.class_rps[c];
    total += r.class_totals[c];
  }
  return {{"rps", r.rps},
          {"classes", std::move(classes)},
          {"p50_ms", opt_ms(r.p50_s)},
          {"p99_ms", opt_ms(r.p99_s)},
          {"rejected_ps", r.rejected_ps},
          {"requests_total", total},
          {"rejected_total", r.rejected_total}};
}

// One upstream of the /health/detailed report, reduced to what the dashboard shows.
nlohmann::json upstream_json(const std::string& name, const nlohmann::json& c) {
  nlohmann::json targets = nlohmann::json::array();
  for (const auto& t : c.value("targets", nlohmann::json::array())) {
    targets.push_back({{"address", t.value("address", "")},
                       {"state", t.value("state", "")},
                       {"latency_ms", t.value("latency_ms", nlohmann::json(nullptr))},
                       {"ejections", t.value("ejections", 0)},
                       {"last_error", t.value("last_error", "")}});
  }
  nlohmann::json breaker = nullptr;
  if (auto it = c.find("circuit_breaker"); it != c.end()) {
    breaker = it->value("state", "");
  }
  return {{"name", name},
          {"status", c.value("status", "")},
          {"breaker", std::move(breaker)},
          {"targets", std::move(targets)}};
}

}  // namespace

std::string Gateway::dashboard_json() {
  using Clock = std::chrono::steady_clock;
  const auto now = Clock::now();
  // Rows are metric slots (one per route name served since start, then "none").
  const auto& names = metrics_->route_names();
  // Refusals by route name, of every rule the route has had (the counters outlive reloads).
  std::vector<std::int64_t> rejected(names.size() + 1, 0);
  {
    auto by_route = rate_state_->decisions.rejected_by_route();
    for (std::size_t slot = 0; slot < names.size(); ++slot) {
      if (auto it = by_route.find(names[slot]); it != by_route.end()) {
        rejected[slot] = it->second;
      }
    }
  }
  auto cur = observability::take_snapshot(*metrics_, now, rejected);
  const observability::StatsSnapshot* base = dashboard_window_.base_for(now);
  const observability::StatsSnapshot none;
  auto rates = observability::compute_rates(base ? *base : none, cur);
  // A reload may have added rows since `base` (never removed any): the totals are sums anyway.
  const bool usable = base != nullptr && base->routes.size() <= cur.routes.size() && base->at < now;
  const double seconds = usable ? std::chrono::duration<double>(now - base->at).count() : 0.0;
  const auto all_cur = observability::total(cur.routes);
  const auto all_base =
      usable ? observability::total(base->routes) : observability::RouteCounters{};
  const auto all = observability::rates_of(usable ? &all_base : nullptr, all_cur, seconds);

  nlohmann::json j;
  j["version"] = version_;
  j["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(now - started_).count();
  j["workers"] = workers_count_;
  j["interval_s"] = seconds;
  // The reload record comes with reload (issue 15 item 1); until then this config is the first.
  // The reload record as /health/detailed shows it, with the page's name for its time.
  auto last = reload_details()["last_reload"];
  if (!last.is_null()) {
    last["at"] = last["time"];
  }
  j["config"] = {{"generation", config_generation()}, {"last_reload", std::move(last)}};
  j["total"] = rates_json(all);
  nlohmann::json routes = nlohmann::json::array();
  // The routes of the running configuration, in file order (a route a reload removed still
  // counts in the totals, as its series stay in /metrics, but has no row).
  for (std::size_t slot : gen_->route_slots) {
    auto route = rates_json(rates[slot]);
    route["name"] = names[slot];
    routes.push_back(std::move(route));
  }
  // The last row holds requests no route matched; shown only once it has some.
  if (auto none = rates_json(rates.back()); none["requests_total"] != 0) {
    none["name"] = "(no route)";
    routes.push_back(std::move(none));
  }
  j["routes"] = std::move(routes);
  dashboard_window_.add(std::move(cur));

  auto report = health_->detailed();
  j["status"] = report.value("status", "");
  const auto& comps = report["components"];
  nlohmann::json upstreams = nlohmann::json::array();
  for (const auto& up : gen_->cfg->upstreams) {
    auto it = comps.find("upstream:" + up.name);
    if (it != comps.end()) {
      upstreams.push_back(upstream_json(up.name, *it));
    }
  }
  j["upstreams"] = std::move(upstreams);

  auto& rl = j["rate_limit"];
  rl["enabled"] = gen_->rate_limiter->enabled();
  rl["rejected_ps"] = all.rejected_ps;
  rl["rejected_total"] = all.rejected_total;
  nlohmann::json keys = nlohmann::json::array();
  for (auto& e : gen_->rate_limiter->top_rejected(kTopKeys)) {
    keys.push_back({{"key", std::move(e.key)}, {"count", e.count}});
  }
  rl["top_keys"] = std::move(keys);
  // This instance's view of the bans (with Redis, /admin/bans asks the store for every
  // instance's; the dashboard stays off the network).
  auto [bans, bans_active] = gen_->rate_limiter->longest_bans(kBansShown);
  nlohmann::json entries = nlohmann::json::array();
  for (std::size_t i = 0; i < bans.size(); ++i) {
    entries.push_back({{"key", bans[i].key},
                       {"reason", bans[i].reason},
                       {"expires_in", (bans[i].remaining + 999'999'999) / 1'000'000'000}});
  }
  rl["bans"] = {{"count", bans_active}, {"entries", std::move(entries)}};
  rl["store"] = redis_ ? "redis" : "memory";
  rl["store_status"] = "ok";
  rl["keys"] = gen_->rate_limiter->state().store.keys();
  if (redis_ && !redis_->up()) {
    rl["store_status"] = "degraded";
    rl["store_error"] = redis_->last_error();
  }
  const auto dropped = logs_->dropped();
  j["log"] = {{"status", dropped == 0 ? "ok" : "degraded"}, {"dropped", dropped}};
  return observability::Health::to_json_text(j);
}

}  // namespace gatehouse::server
