#include "upstream/health_checker.hpp"

#include "http/json.hpp"
#include "io/spawn.hpp"

namespace gatehouse::upstream {

using namespace io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;
namespace beast = io::beast;

HealthChecker::HealthChecker(net::io_context& ioc, const config::Config& cfg,
                             const std::vector<std::vector<tcp::endpoint>>& endpoints,
                             observability::Health& health, observability::Logs& logs)
    : ioc_(ioc), cfg_(cfg), endpoints_(endpoints), health_(health), logs_(logs) {}

net::awaitable<void> HealthChecker::check(std::size_t u, std::size_t t) {
  beast::tcp_stream stream(ioc_);
  stream.expires_after(cfg_.upstreams[u].connect_timeout);
  auto [ec] = co_await stream.async_connect(endpoints_[u][t], nothrow);
  auto& th = health_.target(u, t);
  bool was = th.reachable();
  std::string what = ec ? (ec == beast::error::timeout ? "connect timed out" : ec.message()) : "";
  th.report(!ec, what);
  if (was != !ec) {
    std::string extra = "\"upstream\":";
    ghttp::append_json_string(extra, cfg_.upstreams[u].name);
    extra += ",\"target\":";
    ghttp::append_json_string(extra, th.address());
    if (ec) {
      extra += ",\"error\":";
      ghttp::append_json_string(extra, what);
    }
    logs_.error(ec ? spdlog::level::warn : spdlog::level::info,
                ec ? "upstream target unreachable" : "upstream target reachable again", extra);
  }
}

net::awaitable<void> HealthChecker::run() {
  net::steady_timer timer(ioc_);
  for (;;) {
    for (std::size_t u = 0; u < endpoints_.size(); ++u) {
      for (std::size_t t = 0; t < endpoints_[u].size(); ++t) {
        spawn(ioc_, check(u, t), logs_, "health check");
      }
    }
    timer.expires_after(cfg_.health.check_interval);
    auto [ec] = co_await timer.async_wait(nothrow);
    if (ec || stopped_) {
      co_return;
    }
  }
}

}  // namespace gatehouse::upstream
