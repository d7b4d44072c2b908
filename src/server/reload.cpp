// Configuration reload (SIGHUP, POST /admin/reload): read and check the file on the admin thread,
// build the next generation beside the running one, then hand it to the workers. See
// docs/architecture.md, "Configuration reload".
#include <algorithm>
#include <ctime>

#include "config/reload_plan.hpp"
#include "filters/jobs/config.hpp"
#include "filters/registry.hpp"
#include "http/json.hpp"
#include "server/gateway.hpp"
#include "server/worker.hpp"

namespace gatehouse::server {
namespace {

std::string iso_time(std::chrono::system_clock::time_point t) {
  std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// How many of `names` the metrics have no slot for yet.
std::size_t slots_needed(const observability::Metrics& m, const std::vector<std::string>& names) {
  return static_cast<std::size_t>(std::count_if(names.begin(), names.end(), [&](const auto& n) {
    return std::find(m.route_names().begin(), m.route_names().end(), n) == m.route_names().end();
  }));
}

}  // namespace

Gateway::ReloadResult Gateway::reload(const char* trigger) {
  const auto& sections = filters::config_sections();
  ReloadResult result;
  auto fail = [&](unsigned status, const std::string& why, const config::ConfigErrorParts* where) {
    result.ok = false;
    result.status = status;
    nlohmann::json body{{"ok", false},
                        {"error", why},
                        {"generation", config_generation()},
                        {"message", "nothing changed: the running configuration stays in place"}};
    std::string extra = "\"trigger\":";
    ghttp::append_json_string(extra, trigger);
    extra += ",\"error\":";
    ghttp::append_json_string(extra, why);
    if (where != nullptr && where->line != 0) {
      body["file"] = where->file;
      body["line"] = where->line;
      body["column"] = where->column;
      body["key"] = where->key;
      extra += ",\"file\":";
      ghttp::append_json_string(extra, where->file);
      extra += fmt::format(",\"line\":{},\"column\":{},\"key\":", where->line, where->column);
      ghttp::append_json_string(extra, where->key);
    }
    result.body = body.dump();
    logs_->error(spdlog::level::err, "configuration reload failed", extra);
    ++reloads_failed_;
    std::lock_guard lock(reload_mu_);
    last_reload_ =
        ReloadRecord{std::chrono::system_clock::now(), false, trigger, why, config_generation()};
    return result;
  };

  if (draining_) {
    return fail(503, "draining: a reload is not taken while the process drains", nullptr);
  }
  if (config_path_.empty()) {
    return fail(409,
                "started without a configuration file (run --upstream): there is nothing to "
                "reload; restart with --config FILE",
                nullptr);
  }
  std::shared_ptr<const config::Config> next;
  try {
    next = std::make_shared<const config::Config>(config::load_config_file(config_path_, sections));
  } catch (const config::ConfigError& e) {
    auto where = config::parse_config_error(e.what());
    return fail(422, e.what(), &where);
  }
  const auto& running = *gen_->cfg;
  if (auto why = config::restart_needed(running, *next, sections); !why.empty()) {
    return fail(409, why, nullptr);
  }
  // Route series are keyed by name, in slots laid out at start-up: a new name takes a free one.
  std::vector<std::string> names;
  for (const auto& r : next->routes) {
    names.push_back(r.name);
  }
  auto slots = metrics_->route_slots(names);
  if (!slots) {
    return fail(409,
                fmt::format("routes: this process has room for the metrics of {} route names and "
                            "has served {} ({} more in the new file); restart to add more names",
                            metrics_->route_capacity(), metrics_->route_names().size(),
                            slots_needed(*metrics_, names)),
                nullptr);
  }
  // Each upstream is served by the unit of its definition (upstream_unit_keys): an unchanged one
  // keeps its target health, breaker, checks and series; an added or re-targeted one gets a new
  // unit (its names resolved now, built below once nothing can refuse the reload) kept for the
  // process's life, so putting a definition back finds its state again.
  UnitPlan plan;
  if (auto why = plan_units(*next, plan); !why.empty()) {
    return fail(409, why, nullptr);
  }
  std::shared_ptr<const Generation> gen;
  try {
    gen = std::make_shared<const Generation>(
        next, config_generation() + 1, workers_count_, rate_state_, rate_clock_,
        next->log.hash_client_ip ? &hasher_ : nullptr, std::move(*slots), plan.units);
  } catch (const std::exception& e) {
    return fail(500, std::string("building the new configuration: ") + e.what(), nullptr);
  }
  // The Redis store (and each worker's client) is started only when rate limiting is on at
  // start-up; without it a limiter would count in memory, per instance, while the file says the
  // counts are shared.
  if (gen->rate_limiter->enabled() && filters::rate_limit::settings(*next).redis && !redis_) {
    return fail(409,
                "rate_limit.store: rate limiting was off at start-up, so the Redis store was not "
                "started; turning limits on with it needs a restart; the running configuration "
                "stays in place",
                nullptr);
  }
  // Certificates are read again on every reload; a bad pair fails the whole reload.
  if (cfg_->listen_tls) {
    std::string why;
    if (!reload_tls(why)) {
      std::string extra = "\"error\":";
      ghttp::append_json_string(extra, why);
      logs_->error(spdlog::level::err, "TLS reload failed; keeping the previous certificate",
                   extra);
      return fail(422, why, nullptr);
    }
    logs_->error(spdlog::level::info, "TLS certificate and key reloaded");
  }

  auto routes = config::diff_definitions(config::route_definitions(running, sections),
                                         config::route_definitions(*next, sections));
  auto upstreams = config::diff_definitions(config::upstream_definitions(running, sections),
                                            config::upstream_definitions(*next, sections));
  auto rules = config::diff_definitions(gen_->rate_limiter->rule_definitions(),
                                        gen->rate_limiter->rule_definitions());
  // issue 13: the `jobs` keys that changed (a route's mode shows in its route's diff).
  std::string jobs = "[";
  for (const auto& key : filters::jobs::reload_changes(running, *next)) {
    if (jobs.size() > 1) {
      jobs += ',';
    }
    ghttp::append_json_string(jobs, key);
  }
  jobs += ']';
  const std::string summary = fmt::format(
      R"({{"routes":{},"upstreams":{},"rate_limit_rules":{},"jobs":{},"tls_reloaded":{}}})",
      config::diff_json(routes), config::diff_json(upstreams), config::diff_json(rules), jobs,
      cfg_->listen_tls ? "true" : "false");

  // Nothing refuses the reload from here on: the planned units are built (after the checks, so
  // a refused reload leaves no unit, series or loop behind).
  try {
    add_units(next, plan);
  } catch (const std::exception& e) {
    return fail(500, std::string("building upstream units: ") + e.what(), nullptr);
  }
  metrics_->add_route_names(names);
  // Readiness, /health/detailed and the health checks follow the upstreams being served; a left
  // out one keeps its state (and its metrics series) for when it is put back.
  std::vector<bool> active(health_->upstream_count(), false);
  for (auto unit : gen->upstream_units) {
    active[unit] = true;
  }
  health_->set_active(active);
  if (gen->rate_limiter->enabled() && !rate_limit_component_) {
    add_rate_limit_component();
  }
  gen_ = gen;
  generation_number_.store(gen->number, std::memory_order_relaxed);
  for (auto& w : workers_) {
    w->install(gen);
  }
  ++reloads_ok_;
  {
    std::lock_guard lock(reload_mu_);
    last_reload_ =
        ReloadRecord{std::chrono::system_clock::now(), true, trigger, std::string(), gen->number};
  }
  std::string extra = "\"trigger\":";
  ghttp::append_json_string(extra, trigger);
  extra += fmt::format(",\"generation\":{},\"file\":", gen->number);
  ghttp::append_json_string(extra, config_path_);
  extra += ",\"changes\":";
  extra += summary;
  logs_->error(spdlog::level::info, "configuration reloaded", extra);
  result.ok = true;
  result.status = 200;
  result.body = fmt::format(R"({{"ok":true,"generation":{},"changes":{}}})", gen->number, summary);
  return result;
}

void Gateway::render_reload_metrics(std::string& out) const {
  auto last = last_reload();
  double last_time =
      last ? std::chrono::duration<double>(last->time.time_since_epoch()).count() : 0.0;
  fmt::format_to(
      std::back_inserter(out),
      "# HELP gatehouse_config_reloads_total Configuration reloads (SIGHUP, POST /admin/reload) "
      "by result.\n"
      "# TYPE gatehouse_config_reloads_total counter\n"
      "gatehouse_config_reloads_total{{result=\"ok\"}} {}\n"
      "gatehouse_config_reloads_total{{result=\"error\"}} {}\n"
      "# HELP gatehouse_config_generation The configuration generation serving new requests (1 "
      "at start, +1 per successful reload).\n"
      "# TYPE gatehouse_config_generation gauge\n"
      "gatehouse_config_generation {}\n"
      "# HELP gatehouse_config_last_reload_timestamp_seconds When the last reload was tried "
      "(Unix time; 0 before the first).\n"
      "# TYPE gatehouse_config_last_reload_timestamp_seconds gauge\n"
      "gatehouse_config_last_reload_timestamp_seconds {:.3f}\n"
      "# HELP gatehouse_config_last_reload_success 1 when the last reload succeeded (or none was "
      "tried), 0 when it failed.\n"
      "# TYPE gatehouse_config_last_reload_success gauge\n"
      "gatehouse_config_last_reload_success {}\n",
      reloads_ok_, reloads_failed_, config_generation(), last_time, !last || last->ok ? 1 : 0);
}

nlohmann::json Gateway::reload_details() const {
  nlohmann::json out{
      {"generation", config_generation()},
      {"file", config_path_.empty() ? nlohmann::json() : nlohmann::json(config_path_)}};
  if (auto last = last_reload()) {
    out["last_reload"] = {{"time", iso_time(last->time)},
                          {"result", last->ok ? "ok" : "error"},
                          {"trigger", last->trigger}};
    if (!last->ok) {
      out["last_reload"]["error"] = last->error;
    }
  } else {
    out["last_reload"] = nullptr;
  }
  return out;
}

}  // namespace gatehouse::server
