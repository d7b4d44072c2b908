#include "upstream/resolver.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

#include "http/cidr.hpp"
#include "http/json.hpp"
#include "io/spawn.hpp"

namespace gatehouse::upstream {

using namespace io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;

namespace {

bool needs_resolving(const config::Endpoint& e) {
  return !ghttp::parse_ip(e.host);
}

std::string address_text(const tcp::endpoint& ep) {
  return config::Endpoint{ep.address().to_string(), ep.port()}.to_string();
}

std::int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<tcp::endpoint> endpoints_of(const tcp::resolver::results_type& results) {
  std::vector<tcp::endpoint> out;
  for (const auto& r : results) {
    out.push_back(r.endpoint());
  }
  return out;
}

}  // namespace

bool Resolver::resolves(const config::Upstream& u) {
  return u.resolve_interval.count() != 0 &&
         std::any_of(u.targets.begin(), u.targets.end(), needs_resolving);
}

Resolver::UpstreamState Resolver::state_for(const config::Upstream& uc) const {
  UpstreamState st;
  st.cfg = &uc;
  if (!resolves(uc)) {
    return st;
  }
  const std::size_t n = uc.slot_count();
  st.view.endpoints.resize(n);
  st.view.addresses.resize(n);
  st.view.generations.assign(n, 0);
  std::size_t slot = 0;
  for (std::size_t i = 0; i < uc.targets.size(); ++i) {
    const auto& t = uc.targets[i];
    if (needs_resolving(t)) {
      st.names.push_back(Name{t, t.to_string(), slot, uc.slots_of(i), {}, 0});
    } else {
      error_code ec;
      auto address = net::ip::make_address(t.host, ec);
      if (ec) {
        throw std::runtime_error("upstreams." + uc.name + ": invalid address " + t.host);
      }
      st.view.endpoints[slot] = tcp::endpoint(address, t.port);
      st.view.addresses[slot] = t.to_string();
      st.view.generations[slot] = 1;
    }
    slot += uc.slots_of(i);
  }
  st.slots = std::make_unique<TargetSlots>(st.view);
  return st;
}

Resolver::Resolver(net::io_context& ioc, const config::Config& cfg, observability::Health& health,
                   observability::Metrics* metrics, observability::Logs* logs,
                   std::size_t unit_capacity)
    : ioc_(ioc), health_(health), metrics_(metrics), logs_(logs) {
  // Workers read slots(u) while the admin thread may add units: never reallocated.
  upstreams_.reserve(std::max(unit_capacity, cfg.upstreams.size()));
  for (const auto& uc : cfg.upstreams) {
    upstreams_.push_back(state_for(uc));
  }
}

std::vector<std::vector<tcp::endpoint>> Resolver::lookup(const config::Upstream& uc) {
  std::vector<std::vector<tcp::endpoint>> found;
  if (!resolves(uc)) {
    return found;
  }
  for (const auto& t : uc.targets) {
    if (!needs_resolving(t)) {
      continue;
    }
    tcp::resolver resolver(ioc_);
    error_code ec;
    auto results = resolver.resolve(t.host, std::to_string(t.port), ec);
    if (ec || results.empty()) {
      throw std::runtime_error("upstreams." + uc.name + ": cannot resolve " + t.host + ": " +
                               (ec ? ec.message() : "no address"));
    }
    found.push_back(endpoints_of(results));
  }
  return found;
}

void Resolver::start_up() {
  for (std::size_t u = 0; u < upstreams_.size(); ++u) {
    auto found = lookup(*upstreams_[u].cfg);
    for (std::size_t k = 0; k < found.size(); ++k) {
      apply(u, k, found[k]);
    }
  }
}

void Resolver::add_upstream(std::size_t u, const config::Upstream& uc,
                            const std::vector<std::vector<tcp::endpoint>>& found,
                            UpstreamHealth* shared) {
  if (u != upstreams_.size() || u >= upstreams_.capacity()) {
    throw std::length_error("no room for another upstream unit in the resolver");
  }
  upstreams_.push_back(state_for(uc));  // within the reserved capacity: nothing moves
  upstreams_[u].shared = shared;
  for (std::size_t k = 0; k < found.size() && k < upstreams_[u].names.size(); ++k) {
    apply(u, k, found[k]);
  }
  if (running_ && !stopped_ && !upstreams_[u].names.empty() && logs_ != nullptr) {
    spawn(ioc_, run_upstream(u), *logs_, "resolve loop");
  }
}

void Resolver::log(spdlog::level::level_enum level, std::string_view message,
                   std::string_view event, std::size_t u, const Name& n, std::string_view address,
                   std::string_view extra) const {
  if (logs_ == nullptr || !logs_->should_log(level)) {
    return;
  }
  std::string line = "\"event\":";
  ghttp::append_json_string(line, event);
  line += ",\"upstream\":";
  ghttp::append_json_string(line, upstreams_[u].cfg->name);
  line += ",\"name\":";
  ghttp::append_json_string(line, n.text);
  if (!address.empty()) {
    line += ",\"target\":";
    ghttp::append_json_string(line, address);
  }
  line += extra;
  logs_->error(level, message, line);
}

SlotChanges Resolver::apply(std::size_t u, std::size_t name,
                            const std::vector<tcp::endpoint>& found) {
  auto& st = upstreams_[u];
  auto& n = st.names[name];
  std::vector<std::string> resolved;
  resolved.reserve(found.size());
  for (const auto& ep : found) {
    resolved.push_back(address_text(tcp::endpoint(ep.address(), n.endpoint.port)));
  }
  auto block = std::span<const std::string>(st.view.addresses).subspan(n.first, n.count);
  auto changes = diff_slots(block, resolved);
  {
    std::lock_guard lock(mu_);
    n.last_error.clear();
    n.last_resolved_unix_ms = unix_ms_now();
  }
  // Removed first: the slot leaves every balancer at once (kRetired), then the workers' views.
  for (auto i : changes.removed) {
    const auto t = n.first + i;
    auto& th = health_.target(u, t);
    th.set(observability::TargetHealth::kRetired, true);
    if (st.shared != nullptr) {
      st.shared->target_replaced(t);
    }
    const std::string old = st.view.addresses[t];
    st.view.addresses[t].clear();
    ++st.view.generations[t];
    if (metrics_ != nullptr) {
      metrics_->set_target_name(u, t, {});
    }
    st.counts->removed.fetch_add(1, std::memory_order_relaxed);
    log(spdlog::level::info, "upstream target removed", "target_removed", u, n, old,
        ",\"reason\":\"address no longer resolved\"");
  }
  std::vector<std::size_t> added;
  for (const auto& [i, address] : changes.added) {
    const auto t = n.first + i;
    auto& th = health_.target(u, t);
    if (st.shared != nullptr) {
      st.shared->target_replaced(t);
    }
    th.reuse(address);
    auto it = std::find(resolved.begin(), resolved.end(), address);
    st.view.endpoints[t] = tcp::endpoint(
        found[static_cast<std::size_t>(it - resolved.begin())].address(), n.endpoint.port);
    st.view.addresses[t] = address;
    ++st.view.generations[t];
    if (metrics_ != nullptr) {
      metrics_->set_target_name(u, t, address);
    }
    added.push_back(t);
    st.counts->added.fetch_add(1, std::memory_order_relaxed);
    log(spdlog::level::info, "upstream target added", "target_added", u, n, address, {});
  }
  if (!changes.overflow.empty()) {
    st.counts->overflow.fetch_add(changes.overflow.size(), std::memory_order_relaxed);
    std::string extra = fmt::format(",\"max_addresses\":{},\"left_out\":[", n.count);
    for (std::size_t k = 0; k < changes.overflow.size(); ++k) {
      extra += k == 0 ? "" : ",";
      ghttp::append_json_string(extra, changes.overflow[k]);
    }
    extra += "]";
    log(spdlog::level::warn, "upstream resolve: more addresses than max_addresses",
        "resolve_overflow", u, n, {}, extra);
  }
  if (changes.removed.empty() && changes.added.empty()) {
    return changes;
  }
  if (st.shared != nullptr) {
    st.shared->set_live_targets(
        static_cast<std::size_t>(std::count_if(st.view.addresses.begin(), st.view.addresses.end(),
                                               [](const std::string& a) { return !a.empty(); })));
  }
  // Workers see the new endpoints before an added slot becomes eligible; either order would be
  // safe (a worker also skips slots its own view has no address for), this one is simpler.
  st.slots->publish(st.view);
  for (auto t : added) {
    health_.target(u, t).set(observability::TargetHealth::kRetired, false);
  }
  return changes;
}

void Resolver::failed(std::size_t u, std::size_t name, const std::string& error) {
  auto& st = upstreams_[u];
  auto& n = st.names[name];
  {
    std::lock_guard lock(mu_);
    n.last_error = error;
  }
  st.counts->failures.fetch_add(1, std::memory_order_relaxed);
  std::string extra = ",\"error\":";
  ghttp::append_json_string(extra, error);
  std::size_t kept = 0;
  for (std::size_t t = n.first; t < n.first + n.count; ++t) {
    kept += st.view.addresses[t].empty() ? 0 : 1;
  }
  fmt::format_to(std::back_inserter(extra), ",\"kept_addresses\":{}", kept);
  log(spdlog::level::warn, "upstream resolve failed; keeping the previous addresses",
      "resolve_failed", u, n, {}, extra);
}

net::awaitable<void> Resolver::run_upstream(std::size_t u) {
  auto& st = upstreams_[u];
  net::steady_timer timer(ioc_);
  tcp::resolver resolver(ioc_);
  for (;;) {
    timer.expires_after(st.cfg->resolve_interval);
    auto [tec] = co_await timer.async_wait(nothrow);
    if (tec || stopped_) {
      co_return;
    }
    // A unit no generation serves (an upstream left out or re-targeted by a reload) is not
    // re-resolved; put back, it is at its next interval.
    const std::size_t names = health_.active(u) ? st.names.size() : 0;
    for (std::size_t k = 0; k < names; ++k) {
      const auto host = st.names[k].endpoint.host;
      const auto port = std::to_string(st.names[k].endpoint.port);
      // getaddrinfo on Asio's internal resolver thread: the admin loop is never blocked.
      auto [ec, results] = co_await resolver.async_resolve(host, port, nothrow);
      if (stopped_) {
        co_return;
      }
      if (ec || results.empty()) {
        failed(u, k, ec ? ec.message() : "no address");
        continue;
      }
      apply(u, k, endpoints_of(results));
    }
  }
}

net::awaitable<void> Resolver::run() {
  running_ = true;
  for (std::size_t u = 0; u < upstreams_.size(); ++u) {
    if (!upstreams_[u].names.empty() && logs_ != nullptr) {
      spawn(ioc_, run_upstream(u), *logs_, "resolve loop");
    }
  }
  co_return;
}

void Resolver::report(std::size_t u, observability::ComponentReport& r) const {
  const auto& st = upstreams_[u];
  if (st.names.empty()) {
    return;
  }
  nlohmann::json names = nlohmann::json::array();
  bool failing = false;
  std::lock_guard lock(mu_);
  for (const auto& n : st.names) {
    nlohmann::json j = {{"name", n.text}, {"max_addresses", n.count}};
    std::size_t held = 0;
    for (std::size_t t = n.first; t < n.first + n.count; ++t) {
      held += health_.target(u, t).retired() ? 0 : 1;
    }
    j["addresses"] = held;
    j["last_resolved_unix_ms"] = n.last_resolved_unix_ms;
    if (!n.last_error.empty()) {
      j["last_error"] = n.last_error;
      failing = true;
    }
    names.push_back(std::move(j));
  }
  const auto& c = *st.counts;
  r.detail["resolve"] = {
      {"interval_s", std::chrono::duration<double>(upstreams_[u].cfg->resolve_interval).count()},
      {"names", std::move(names)},
      {"targets_added", c.added.load(std::memory_order_relaxed)},
      {"targets_removed", c.removed.load(std::memory_order_relaxed)},
      {"failures", c.failures.load(std::memory_order_relaxed)}};
  if (failing && r.status == observability::Status::ok) {
    r.status = observability::Status::degraded;
  }
}

void Resolver::render_metrics(std::string& out) const {
  out +=
      "# HELP gatehouse_upstream_target_changes_total Targets added or removed because a host "
      "name's addresses changed (resolve_interval).\n"
      "# TYPE gatehouse_upstream_target_changes_total counter\n"
      "# HELP gatehouse_upstream_resolve_failures_total Re-resolutions of a host name that "
      "failed (the previous addresses were kept).\n"
      "# TYPE gatehouse_upstream_resolve_failures_total counter\n"
      "# HELP gatehouse_upstream_resolve_overflow_total Addresses left out because a host name "
      "resolved to more than max_addresses.\n"
      "# TYPE gatehouse_upstream_resolve_overflow_total counter\n";
  auto it = std::back_inserter(out);
  for (std::size_t u = 0; u < upstreams_.size(); ++u) {
    // One unit per name is exported, with the counts of the name's other units added in.
    if (upstreams_[u].names.empty() || !health_.exported(u)) {
      continue;
    }
    const auto& name = upstreams_[u].cfg->name;
    Counts c;
    for (const auto& st : upstreams_) {
      if (st.cfg->name == name) {
        c.added += st.counts->added.load(std::memory_order_relaxed);
        c.removed += st.counts->removed.load(std::memory_order_relaxed);
        c.failures += st.counts->failures.load(std::memory_order_relaxed);
        c.overflow += st.counts->overflow.load(std::memory_order_relaxed);
      }
    }
    fmt::format_to(
        it,
        "gatehouse_upstream_target_changes_total{{upstream=\"{0}\",change=\"added\"}} "
        "{1}\n"
        "gatehouse_upstream_target_changes_total{{upstream=\"{0}\",change=\"removed\"}}"
        " {2}\n"
        "gatehouse_upstream_resolve_failures_total{{upstream=\"{0}\"}} {3}\n"
        "gatehouse_upstream_resolve_overflow_total{{upstream=\"{0}\"}} {4}\n",
        name, c.added.load(std::memory_order_relaxed), c.removed.load(std::memory_order_relaxed),
        c.failures.load(std::memory_order_relaxed), c.overflow.load(std::memory_order_relaxed));
  }
}

}  // namespace gatehouse::upstream
