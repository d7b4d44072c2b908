// The admin listener (metrics, detailed health, bans, the dashboard). Runs on the admin thread, off
// the request path; simplicity over speed. Active health checks are upstream/health_checker.*.
#include <boost/beast/http.hpp>

#include "filters/cache_bus/message.hpp"
#include "http/json.hpp"
#include "http/target.hpp"
#include "io/spawn.hpp"
#include "observability/process_stats.hpp"
#include "server/dashboard.hpp"
#include "server/dependency_checks.hpp"
#include "server/gateway.hpp"
#include "server/jobs.hpp"
#include "server/sentry_reporter.hpp"

namespace gatehouse::server {

// Process memory, open files and each worker's event-loop lag (i12-edge): read at each request,
// not cached (cheap, and a leak should show at once). Open files at 90% of the limit degrade.
void Gateway::add_process_details(nlohmann::json& report) {
  auto& p = report["components"]["process"];
  auto stats = observability::read_process_stats();
  p["memory_rss_bytes"] = stats.rss_bytes ? nlohmann::json(*stats.rss_bytes) : nlohmann::json();
  p["open_files"] = stats.open_files ? nlohmann::json(*stats.open_files) : nlohmann::json();
  p["max_open_files"] =
      stats.max_open_files ? nlohmann::json(*stats.max_open_files) : nlohmann::json();
  nlohmann::json lag = nlohmann::json::array();
  for (unsigned i = 0; i < workers_count_; ++i) {
    lag.push_back(static_cast<double>(metrics_->worker(i).loop_lag.max_us()) / 1000.0);
  }
  p["event_loop_lag_ms"] = std::move(lag);
  if (stats.open_files && stats.max_open_files &&
      *stats.open_files * 10 >= *stats.max_open_files * 9) {
    p["status"] = "degraded";
    if (report["status"] == "ok") {
      report["status"] = "degraded";
    }
  }
}

net::awaitable<void> Gateway::admin_accept_loop(tcp::acceptor acceptor) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(nothrow);
    if (ec) {
      if (ec == net::error::operation_aborted) {
        co_return;
      }
      continue;
    }
    spawn(admin_ioc_, admin_session(std::move(socket)), *logs_, "admin session");
  }
}

// Takeover: the previous process holds the admin address until it exits; take it then.
net::awaitable<void> Gateway::admin_listen_when_free(tcp::endpoint ep) {
  std::string extra = "\"admin_listen\":";
  ghttp::append_json_string(extra, ep.address().to_string() + ":" + std::to_string(ep.port()));
  logs_->error(spdlog::level::info,
               "takeover: admin_listen is in use by the previous process; taking it when released",
               extra);
  net::steady_timer timer(admin_ioc_);
  for (;;) {
    timer.expires_after(std::chrono::milliseconds(100));
    auto [ec] = co_await timer.async_wait(nothrow);
    if (ec || draining_) {
      co_return;
    }
    tcp::acceptor acceptor(admin_ioc_);
    if (!bind_exclusive(acceptor, ep, true)) {
      logs_->error(spdlog::level::info, "takeover: admin_listen taken", extra);
      co_await admin_accept_loop(std::move(acceptor));
      co_return;
    }
  }
}

net::awaitable<void> Gateway::admin_session(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request<http::empty_body> req;
    stream.expires_after(std::chrono::seconds(30));
    auto [ec, n] = co_await http::async_read(stream, buffer, req, nothrow);
    if (ec) {
      break;
    }
    http::response<http::string_body> res;
    res.version(11);
    res.keep_alive(req.keep_alive());
    res.set(http::field::cache_control, "no-store");
    res.set(http::field::content_type, "application/json");
    auto target = std::string_view(req.target().data(), req.target().size());
    auto path = target.substr(0, target.find('?'));
    const auto& h = cfg_->health;
    if (path == "/admin/bans") {
      unsigned status = 200;
      std::string body;
      co_await admin_bans({req.method_string().data(), req.method_string().size()}, target, status,
                          body);
      res.result(static_cast<http::status>(status));
      res.body() = std::move(body);
    } else if (path == "/admin/cache") {
      unsigned status = 200;
      std::string body;
      admin_cache({req.method_string().data(), req.method_string().size()}, target, status, body);
      res.result(static_cast<http::status>(status));
      res.body() = std::move(body);
    } else if (path == "/admin/jobs" || path.starts_with("/admin/jobs/")) {
      unsigned status = 200;
      std::string body;
      co_await admin_jobs({req.method_string().data(), req.method_string().size()}, target, status,
                          body);
      res.result(static_cast<http::status>(status));
      res.body() = std::move(body);
    } else if (path == "/admin/reload") {
      if (req.method() != http::verb::post) {
        res.result(http::status::method_not_allowed);
        res.set(http::field::allow, "POST");
        res.body() = R"({"error":"method_not_allowed","message":"Use POST."})";
      } else {
        auto r = reload("admin");
        res.result(static_cast<http::status>(r.status));
        res.body() = std::move(r.body);
      }
    } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.body() = R"({"error":"method_not_allowed","message":"Use GET."})";
    } else if (path == "/metrics") {
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.body() = metrics_->render([this](std::string& out) {
        fmt::format_to(
            std::back_inserter(out),
            "# HELP gatehouse_log_dropped_total Log lines dropped because the queue was full.\n"
            "# TYPE gatehouse_log_dropped_total counter\ngatehouse_log_dropped_total {}\n"
            "# HELP gatehouse_internal_errors_total Tasks (sessions, loops) ended by an "
            "unexpected exception; each is in the error log as \"internal error\".\n"
            "# TYPE gatehouse_internal_errors_total counter\ngatehouse_internal_errors_total {}\n"
            "# HELP gatehouse_draining 1 while the process drains.\n"
            "# TYPE gatehouse_draining gauge\ngatehouse_draining {}\n"
            "# HELP gatehouse_upstream_target_up 1 when the target is eligible for requests (not "
            "unreachable, unhealthy or ejected).\n"
            "# TYPE gatehouse_upstream_target_up gauge\n",
            logs_->dropped(), logs_->internal_errors(), health_->draining() ? 1 : 0);
        for (std::size_t u = 0; u < health_->upstream_count(); ++u) {
          if (!health_->active(u)) {
            continue;  // left out by a reload: not probed, so no current state
          }
          for (std::size_t t = 0; t < health_->target_count(u); ++t) {
            auto& th = health_->target(u, t);
            if (th.retired()) {
              continue;  // a re-resolved name's slot without an address
            }
            fmt::format_to(std::back_inserter(out),
                           "gatehouse_upstream_target_up{{upstream=\"{}\",target=\"{}\"}} {}\n",
                           health_->upstream_name(u), th.address(), th.reachable() ? 1 : 0);
          }
        }
        upstream::UpstreamHealth::render_metric_help(out);
        for (std::size_t u = 0; u < upstream_health_.size(); ++u) {
          // One series per name (Health::exported), counting the name's other units too.
          if (!health_->exported(u)) {
            continue;
          }
          std::vector<const upstream::UpstreamHealth*> others;
          for (std::size_t k = 0; k < upstream_health_.size(); ++k) {
            if (k != u && health_->upstream_name(k) == health_->upstream_name(u)) {
              others.push_back(upstream_health_[k].get());
            }
          }
          upstream_health_[u]->render_metrics(out, upstream::UpstreamHealth::Clock::now(), others);
        }
        resolver_->render_metrics(out);
        gen_->rate_limiter->render_metrics(out);
        render_reload_metrics(out);
        security_events_->render_metrics(out);
        if (sentry_) {
          sentry_->render_metrics(out);
        }
        if (redis_) {
          redis_->render_metrics(out);
        }
        if (cache_) {
          cache_->render_metrics(out);
        }
        invalidator_->render_metrics(out);  // issue 14
        if (jobs_) {
          jobs_->render_metrics(out);  // issue 13
        }
        if (cache_bus_) {
          cache_bus_->render_metrics(out);
        }
        fmt::format_to(
            std::back_inserter(out),
            "# HELP gatehouse_build_info Build information.\n# TYPE gatehouse_build_info gauge\n"
            "gatehouse_build_info{{version=\"{}\"}} 1\n",
            version_);
      });
    } else if (path == "/dashboard") {
      res.result(http::status::ok);
      res.set(http::field::content_type, "text/html; charset=utf-8");
      res.set("Content-Security-Policy", dashboard_csp());
      res.set(http::field::x_frame_options, "DENY");
      res.set("Referrer-Policy", "no-referrer");
      res.set("X-Content-Type-Options", "nosniff");
      res.body() = std::string(kDashboardHtml);
    } else if (path == "/dashboard.json") {
      res.result(http::status::ok);
      res.set("X-Content-Type-Options", "nosniff");
      res.body() = dashboard_json();
    } else if (path == "/health/detailed") {
      auto d = health_->detailed();
      add_process_details(d);
      if (cache_) {
        auto u = cache_->usage();
        d["components"]["cache"] = {{"status", "ok"},
                                    {"bytes", u.bytes},
                                    {"max_bytes", u.max_bytes},
                                    {"entries", u.entries},
                                    {"evictions", u.evictions}};
      }
      d["config"] = reload_details();
      // health.checks: a failing dependency makes the report degraded and the answer 503.
      const bool checks_ok = co_await dependency_checks_->add_to(d);
      if (!checks_ok && d["status"] == "ok") {
        d["status"] = "degraded";
      }
      res.result(observability::Health::is_down(d) || !checks_ok ? http::status::service_unavailable
                                                                 : http::status::ok);
      res.body() = observability::Health::to_json_text(d);
    } else if (path == h.live_path) {
      res.result(http::status::ok);
      res.body() = R"({"status":"ok"})";
    } else if (path == h.ready_path) {
      bool ready = health_->ready();
      res.result(ready ? http::status::ok : http::status::service_unavailable);
      res.body() = ready ? R"({"status":"ready"})"
                         : (health_->draining() ? R"({"status":"draining"})"
                                                : R"({"status":"unavailable"})");
    } else if (path == h.summary_path) {
      auto s = health_->summary();
      res.result(observability::Health::is_down(s) ? http::status::service_unavailable
                                                   : http::status::ok);
      res.body() = observability::Health::to_json_text(s);
    } else {
      res.result(http::status::not_found);
      res.body() =
          R"({"error":"not_found","message":"Admin endpoints: /metrics, /health/detailed, /health, /health/live, /health/ready, /admin/bans, /admin/cache, /admin/reload (POST), /admin/jobs, /dashboard, /dashboard.json."})";
    }
    res.prepare_payload();
    if (req.method() == http::verb::head) {
      res.body().clear();
    }
    auto [wec, wn] = co_await http::async_write(stream, res, nothrow);
    if (wec || !res.keep_alive()) {
      break;
    }
  }
  error_code ignore;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignore);
}

// GET lists bans; DELETE ?key=K lifts one (the key as listed), DELETE without a key lifts all.
// With a Redis store the bans live in Redis (shared by every instance): GET lists them from there
// ("source":"redis"; this instance's own view, "source":"local", when Redis does not answer) and
// DELETE lifts them there and here.
net::awaitable<void> Gateway::admin_bans(std::string_view method, std::string_view target,
                                         unsigned& status, std::string& body) {
  auto& limiter = *gen_->rate_limiter;
  const bool shared = admin_redis_ != nullptr;
  if (method == "GET" || method == "HEAD") {
    if (!shared) {
      body = limiter.bans_json();
      co_return;
    }
    std::vector<ratelimit::BanInfo> bans;
    if (co_await admin_redis_->list_bans(bans, 10'000)) {
      body = filters::rate_limit::bans_json(bans, "redis");
    } else {
      body = filters::rate_limit::bans_json(limiter.bans(), "local");
    }
    co_return;
  }
  if (method != "DELETE") {
    status = 405;
    body = R"({"error":"method_not_allowed","message":"Use GET or DELETE."})";
    co_return;
  }
  auto key = ghttp::query_param(target, "key");
  if (target.find('?') != std::string_view::npos && !key) {
    status = 400;
    body = R"({"error":"bad_request","message":"Expected ?key=KEY (percent-encoded)."})";
    co_return;
  }
  std::size_t lifted = 0;
  if (key) {
    lifted = limiter.lift_ban(*key) ? 1 : 0;
    if (shared) {
      auto remote = co_await admin_redis_->lift_bans(std::string(*key));
      if (!remote) {
        status = 503;
        body =
            R"({"error":"rate_limit_store_unavailable","message":"Redis did not answer; the ban was lifted on this instance only."})";
        co_return;
      }
      lifted = std::max(lifted, *remote);
    }
    if (lifted == 0) {
      status = 404;
      body = R"({"error":"not_found","message":"No active ban for this key."})";
      co_return;
    }
  } else {
    lifted = limiter.lift_all_bans();
    if (shared) {
      auto remote = co_await admin_redis_->lift_bans(std::nullopt);
      if (!remote) {
        status = 503;
        body =
            R"({"error":"rate_limit_store_unavailable","message":"Redis did not answer; bans were lifted on this instance only."})";
        co_return;
      }
      lifted = std::max(lifted, *remote);
    }
  }
  body = fmt::format(R"({{"lifted":{}}})", lifted);
  // An operator's action: never sampled.
  if (!security_events_->enabled(config::SecurityEvent::ban_lifted)) {
    co_return;
  }
  security_events_->note(config::SecurityEvent::ban_lifted);
  std::string line = "{\"time\":\"";
  observability::append_timestamp(line);
  line += "\",\"type\":\"security\",\"event\":\"ban_lifted\",\"key\":";
  ghttp::append_json_string(line, key ? *key : std::string("*"));
  line += fmt::format(",\"count\":{}}}", lifted);
  security_events_->write(line);
}

// issue 14: DELETE ?prefix=/PATH purges the cached entries under that canonical prefix here and,
// with cache.shared, queues it for the other instances (prefix=/ purges everything; no prefix is a
// 400, so that a mistyped query cannot empty the cache).
void Gateway::admin_cache(std::string_view method, std::string_view target, unsigned& status,
                          std::string& body) {
  if (method != "DELETE") {
    status = 405;
    body = R"({"error":"method_not_allowed","message":"Use DELETE /admin/cache?prefix=/PATH."})";
    return;
  }
  auto param = ghttp::query_param(target, "prefix");
  if (!param) {
    status = 400;
    body =
        R"({"error":"bad_request","message":"Expected ?prefix=/PATH (percent-encoded); prefix=/ purges everything."})";
    return;
  }
  auto prefix = filters::cache_bus::admin_prefix(*param, cfg_->paths.merge_slashes);
  if (!prefix.error.empty()) {
    status = 400;
    body = R"({"error":"bad_request","message":)";
    ghttp::append_json_string(body, prefix.error);
    body += "}";
    return;
  }
  const auto purged = invalidator_->invalidate(prefix.prefix, filters::cache_bus::Origin::admin);
  const char* shared = !cache_bus_ ? "off" : cache_bus_->up() ? "queued" : "unavailable";
  body = R"({"prefix":)";
  ghttp::append_json_string(body, prefix.prefix);
  body += fmt::format(R"(,"purged":{},"shared":"{}"}})", purged, shared);
  std::string line = "\"prefix\":";
  ghttp::append_json_string(line, prefix.prefix);
  line += fmt::format(",\"purged\":{},\"shared\":\"{}\"", purged, shared);
  logs_->error(spdlog::level::info, "cache purged by the admin endpoint", line);
}

}  // namespace gatehouse::server
