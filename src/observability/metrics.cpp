#include "observability/metrics.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace gatehouse::observability {
namespace {

template <std::size_t N>
Cell& requests_seconds_bucket(std::array<Cell, N>& buckets, std::int64_t us) {
  double seconds = static_cast<double>(us) / 1e6;
  std::size_t b = 0;
  while (b < kDurationBuckets.size() && seconds > kDurationBuckets[b]) {
    ++b;
  }
  return buckets[b];
}

}  // namespace

void WorkerMetrics::record_request(std::size_t route, unsigned status, std::int64_t duration_us) {
  auto& r = routes[std::min(route, routes.size() - 1)];
  unsigned cls = status / 100;
  if (cls >= 1 && cls <= 5) {
    r.by_class[cls - 1].add();
  }
  double seconds = static_cast<double>(duration_us) / 1e6;
  std::size_t b = 0;
  while (b < kDurationBuckets.size() && seconds > kDurationBuckets[b]) {
    ++b;
  }
  r.buckets[b].add();
  r.duration_us_sum.add(duration_us);
}

void TargetStats::record_head(std::int64_t us) {
  requests_seconds_bucket(head_buckets, us).add();
  head_us_sum.add(us);
}

void WorkerMetrics::record_local_reply(unsigned status) {
  auto it = std::find(kLocalReplyStatuses.begin(), kLocalReplyStatuses.end(), status);
  local_replies[static_cast<std::size_t>(it - kLocalReplyStatuses.begin())].add();
}

Metrics::Metrics(unsigned workers, std::vector<std::string> route_names,
                 std::vector<std::string> upstream_names,
                 std::vector<std::vector<std::string>> target_names, std::size_t route_capacity,
                 std::size_t upstream_capacity)
    : route_names_(std::move(route_names)),
      route_capacity_(route_capacity != 0
                          ? std::max(route_capacity, route_names_.size())
                          : route_names_.size() +
                                std::max<std::size_t>(
                                    64, std::min<std::size_t>(3 * route_names_.size(), 1024))),
      upstream_capacity_(std::max(upstream_capacity, upstream_names.size())),
      upstream_names_(std::move(upstream_names)),
      target_names_(std::move(target_names)) {
  target_names_.resize(upstream_names_.size());
  for (const auto& names : target_names_) {
    baselines_.push_back(std::make_unique<TargetStats[]>(names.size()));
  }
  for (unsigned i = 0; i < workers; ++i) {
    auto w = std::make_unique<WorkerMetrics>();
    w->routes = std::vector<RouteStats>(route_capacity_ + 1);
    w->upstreams = std::make_unique<UpstreamStats[]>(upstream_capacity_);
    for (std::size_t u = 0; u < upstream_names_.size(); ++u) {
      w->upstreams[u].size_targets(target_names_[u].size());
    }
    shards_.push_back(std::move(w));
  }
}

std::size_t Metrics::add_upstream(std::string name, std::vector<std::string> target_names) {
  if (upstream_names_.size() >= upstream_capacity_) {
    throw std::length_error("no room for another upstream unit's metrics");
  }
  const std::size_t u = upstream_names_.size();
  for (auto& shard : shards_) {
    shard->upstreams[u].size_targets(target_names.size());
  }
  baselines_.push_back(std::make_unique<TargetStats[]>(target_names.size()));
  upstream_names_.push_back(std::move(name));
  target_names_.push_back(std::move(target_names));
  return u;
}

std::vector<std::vector<std::size_t>> Metrics::upstream_groups() const {
  std::vector<std::vector<std::size_t>> groups;
  std::vector<const std::string*> names;
  for (std::size_t u = 0; u < upstream_names_.size(); ++u) {
    std::size_t g = 0;
    while (g < names.size() && *names[g] != upstream_names_[u]) {
      ++g;
    }
    if (g == names.size()) {
      names.push_back(&upstream_names_[u]);
      groups.emplace_back();
    }
    groups[g].push_back(u);
  }
  return groups;
}

std::optional<std::vector<std::size_t>> Metrics::route_slots(
    const std::vector<std::string>& names) const {
  std::vector<std::size_t> out;
  out.reserve(names.size());
  std::size_t next = route_names_.size();
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto it = std::find(route_names_.begin(), route_names_.end(), names[i]);
    if (it != route_names_.end()) {
      out.push_back(static_cast<std::size_t>(it - route_names_.begin()));
      continue;
    }
    // Route names are unique in a file (the loader checks), so a new name is new once.
    if (next == route_capacity_) {
      return std::nullopt;
    }
    out.push_back(next++);
  }
  return out;
}

void Metrics::add_route_names(const std::vector<std::string>& names) {
  for (const auto& n : names) {
    if (route_names_.size() < route_capacity_ &&
        std::find(route_names_.begin(), route_names_.end(), n) == route_names_.end()) {
      route_names_.push_back(n);
    }
  }
}

namespace {

template <typename F>
std::int64_t sum(const std::vector<std::unique_ptr<WorkerMetrics>>& shards, F&& cell) {
  std::int64_t total = 0;
  for (const auto& s : shards) {
    total += cell(*s).get();
  }
  return total;
}

// The upstream cell `pick` of every unit in `units` (one upstream name's), summed over the shards.
template <typename F>
std::int64_t sum_units(const std::vector<std::unique_ptr<WorkerMetrics>>& shards,
                       const std::vector<std::size_t>& units, F&& pick) {
  std::int64_t total = 0;
  for (auto u : units) {
    total +=
        sum(shards, [&](const WorkerMetrics& w) -> const Cell& { return pick(w.upstreams[u]); });
  }
  return total;
}

}  // namespace

std::string Metrics::render(const std::function<void(std::string&)>& extra) const {
  std::string out;
  out.reserve(8192);
  // Rows: every name's slot, then "none" (slot route_capacity_).
  auto route_label = [&](std::size_t i) {
    return i < route_names_.size() ? route_names_[i] : std::string("none");
  };
  auto slot_of = [&](std::size_t i) { return i < route_names_.size() ? i : route_capacity_; };
  static constexpr const char* kClass[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

  out += "# HELP gatehouse_requests_total Requests answered, by route and status class.\n";
  out += "# TYPE gatehouse_requests_total counter\n";
  for (std::size_t i = 0; i <= route_names_.size(); ++i) {
    const auto r = slot_of(i);
    for (std::size_t c = 0; c < 5; ++c) {
      auto v = sum(shards_,
                   [&](const WorkerMetrics& w) -> const Cell& { return w.routes[r].by_class[c]; });
      fmt::format_to(std::back_inserter(out),
                     "gatehouse_requests_total{{route=\"{}\",status_class=\"{}\"}} {}\n",
                     route_label(i), kClass[c], v);
    }
  }

  out +=
      "# HELP gatehouse_request_duration_seconds Time from request head to last response byte.\n";
  out += "# TYPE gatehouse_request_duration_seconds histogram\n";
  for (std::size_t i = 0; i <= route_names_.size(); ++i) {
    const auto r = slot_of(i);
    std::int64_t cumulative = 0;
    for (std::size_t b = 0; b <= kDurationBuckets.size(); ++b) {
      cumulative += sum(
          shards_, [&](const WorkerMetrics& w) -> const Cell& { return w.routes[r].buckets[b]; });
      if (b < kDurationBuckets.size()) {
        fmt::format_to(std::back_inserter(out),
                       "gatehouse_request_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {}\n",
                       route_label(i), kDurationBuckets[b], cumulative);
      } else {
        fmt::format_to(std::back_inserter(out),
                       "gatehouse_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {}\n",
                       route_label(i), cumulative);
      }
    }
    auto us = sum(shards_, [&](const WorkerMetrics& w) -> const Cell& {
      return w.routes[r].duration_us_sum;
    });
    fmt::format_to(std::back_inserter(out),
                   "gatehouse_request_duration_seconds_sum{{route=\"{}\"}} {}\n"
                   "gatehouse_request_duration_seconds_count{{route=\"{}\"}} {}\n",
                   route_label(i), static_cast<double>(us) / 1e6, route_label(i), cumulative);
  }

  auto gauge = [&](const char* name, const char* type, const char* help, std::int64_t v) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name,
                   type, name, v);
  };
  gauge("gatehouse_requests_in_flight", "gauge", "Requests being processed.",
        sum(shards_, [](const WorkerMetrics& w) -> const Cell& { return w.in_flight; }));
  gauge("gatehouse_connections_active", "gauge", "Open client connections.",
        sum(shards_, [](const WorkerMetrics& w) -> const Cell& { return w.connections_active; }));
  gauge("gatehouse_connections_total", "counter", "Client connections accepted.",
        sum(shards_, [](const WorkerMetrics& w) -> const Cell& { return w.connections_total; }));
  gauge("gatehouse_connections_rejected_total", "counter",
        "Client connections closed at accept: over max_connections or max_connections_per_ip.",
        sum(shards_, [](const WorkerMetrics& w) -> const Cell& { return w.connections_rejected; }));
  gauge("gatehouse_tls_handshake_errors_total", "counter", "TLS handshakes that failed.",
        sum(shards_, [](const WorkerMetrics& w) -> const Cell& { return w.tls_handshake_errors; }));
  gauge(
      "gatehouse_proxy_protocol_errors_total", "counter",
      "Connections closed without a reply: PROXY protocol header missing, malformed, slow, or "
      "from a peer not in trusted_proxies.",
      sum(shards_, [](const WorkerMetrics& w) -> const Cell& { return w.proxy_protocol_errors; }));

  gauge("gatehouse_websocket_upgrades_total", "counter",
        "WebSocket handshakes the upstream accepted (101); the tunnel then relays bytes.",
        sum(shards_, [](const WorkerMetrics& w) -> const Cell& { return w.websocket_upgrades; }));
  gauge("gatehouse_websockets_open", "gauge", "WebSocket tunnels open now.",
        sum(shards_, [](const WorkerMetrics& w) -> const Cell& { return w.websockets_open; }));

  struct UpMetric {
    const char* name;
    const char* type;
    const char* help;
    const Cell UpstreamStats::*cell;
  };
  static constexpr UpMetric kUp[] = {
      {"gatehouse_upstream_connect_errors_total", "counter", "Failed upstream connects.",
       &UpstreamStats::connect_errors},
      {"gatehouse_upstream_timeouts_total", "counter", "Upstream connect or response timeouts.",
       &UpstreamStats::timeouts},
      {"gatehouse_upstream_connections_opened_total", "counter", "Upstream connections opened.",
       &UpstreamStats::opened},
      {"gatehouse_upstream_pool_idle_connections", "gauge", "Idle pooled upstream connections.",
       &UpstreamStats::idle},
      {"gatehouse_upstream_failures_total", "counter",
       "Requests the upstream failed: no usable response head (502/504), or a response cut off "
       "after its head was sent.",
       &UpstreamStats::failures},
      {"gatehouse_upstream_retries_total", "counter",
       "Requests sent again after a failed try (every reason).", &UpstreamStats::retries},
      {"gatehouse_upstream_retry_budget_exhausted_total", "counter",
       "Retries not made because the upstream's retry budget was spent.",
       &UpstreamStats::retry_budget_exhausted},
  };
  // Units of one name (a re-targeted upstream) are one series: their cells summed.
  const auto groups = upstream_groups();
  for (const auto& m : kUp) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", m.name, m.help, m.name,
                   m.type);
    for (const auto& g : groups) {
      auto v =
          sum_units(shards_, g, [&](const UpstreamStats& us) -> const Cell& { return us.*m.cell; });
      fmt::format_to(std::back_inserter(out), "{}{{upstream=\"{}\"}} {}\n", m.name,
                     upstream_names_[g.front()], v);
    }
  }

  render_targets(out, groups);

  // Labels in upstream::RetryReason order (observability does not include upstream/).
  static constexpr std::array<const char*, 7> kRetryReasons = {
      "stale_connection", "connect_failure", "reset", "timeout", "429", "5xx", "invalid_json"};
  static_assert(kRetryReasons.size() == std::tuple_size_v<decltype(UpstreamStats::retry_reasons)>);
  out +=
      "# HELP gatehouse_upstream_retries_by_reason_total Requests sent again, by why the try "
      "before failed.\n";
  out += "# TYPE gatehouse_upstream_retries_by_reason_total counter\n";
  for (const auto& g : groups) {
    for (std::size_t r = 0; r < kRetryReasons.size(); ++r) {
      auto v = sum_units(
          shards_, g, [&](const UpstreamStats& us) -> const Cell& { return us.retry_reasons[r]; });
      fmt::format_to(std::back_inserter(out),
                     "gatehouse_upstream_retries_by_reason_total{{upstream=\"{}\",reason=\"{}\"}} "
                     "{}\n",
                     upstream_names_[g.front()], kRetryReasons[r], v);
    }
  }

  out += "# HELP gatehouse_local_replies_total Replies made by gatehouse itself, by status.\n";
  out += "# TYPE gatehouse_local_replies_total counter\n";
  for (std::size_t i = 0; i <= kLocalReplyStatuses.size(); ++i) {
    auto v =
        sum(shards_, [&](const WorkerMetrics& w) -> const Cell& { return w.local_replies[i]; });
    if (i < kLocalReplyStatuses.size()) {
      fmt::format_to(std::back_inserter(out), "gatehouse_local_replies_total{{status=\"{}\"}} {}\n",
                     kLocalReplyStatuses[i], v);
    } else {
      fmt::format_to(std::back_inserter(out),
                     "gatehouse_local_replies_total{{status=\"other\"}} {}\n", v);
    }
  }
  if (extra) {
    extra(out);
  }
  return out;
}

void Metrics::set_target_name(std::size_t u, std::size_t t, std::string name) {
  if (u >= target_names_.size() || t >= target_names_[u].size()) {
    return;
  }
  target_names_[u][t] = std::move(name);
  auto& base = baselines_[u][t];
  auto rebase = [&](Cell& b, auto&& pick) {
    std::int64_t now = 0;
    for (const auto& s : shards_) {
      if (t < s->upstreams[u].target_count) {
        now += pick(s->upstreams[u].targets[t]).get();
      }
    }
    b.add(now - b.get());
  };
  rebase(base.requests, [](const TargetStats& ts) -> const Cell& { return ts.requests; });
  rebase(base.errors, [](const TargetStats& ts) -> const Cell& { return ts.errors; });
  rebase(base.head_us_sum, [](const TargetStats& ts) -> const Cell& { return ts.head_us_sum; });
  for (std::size_t b = 0; b < base.head_buckets.size(); ++b) {
    rebase(base.head_buckets[b],
           [b](const TargetStats& ts) -> const Cell& { return ts.head_buckets[b]; });
  }
}

// Per upstream: the queue gauge and busy replies; per target (labels upstream, target): tries,
// errors and the time to response head.
void Metrics::render_targets(std::string& out,
                             const std::vector<std::vector<std::size_t>>& groups) const {
  auto per_upstream = [&](const char* name, const char* type, const char* help,
                          const Cell UpstreamStats::*cell) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    for (const auto& g : groups) {
      const auto v =
          sum_units(shards_, g, [&](const UpstreamStats& us) -> const Cell& { return us.*cell; });
      fmt::format_to(std::back_inserter(out), "{}{{upstream=\"{}\"}} {}\n", name,
                     upstream_names_[g.front()], v);
    }
  };
  per_upstream("gatehouse_upstream_queue_length", "gauge",
               "Requests waiting for an upstream connection (max_connections reached).",
               &UpstreamStats::queued);
  per_upstream("gatehouse_upstream_busy_total", "counter",
               "Requests answered 503 upstream_busy: queue full or queue_timeout passed.",
               &UpstreamStats::busy);

  auto slot_cell = [&](std::size_t u, std::size_t t, auto&& pick) {
    std::int64_t total = -pick(baselines_[u][t]).get();
    for (const auto& s : shards_) {
      const auto& us = s->upstreams[u];
      if (t < us.target_count) {
        total += pick(us.targets[t]).get();
      }
    }
    return total;
  };
  // One series per (upstream name, target label): the slots of every unit of that name holding
  // that address, summed (a target kept by a re-targeted upstream continues its counts).
  struct Series {
    std::size_t upstream;  // a unit of the name, for the label
    const std::string* target;
    std::vector<std::pair<std::size_t, std::size_t>> slots;
  };
  std::vector<Series> series;
  for (const auto& g : groups) {
    const std::size_t first = series.size();
    for (auto u : g) {
      for (std::size_t t = 0; t < target_names_[u].size(); ++t) {
        const auto& tn = target_names_[u][t];
        if (tn.empty()) {
          continue;  // a re-resolved name's slot without an address
        }
        auto it = std::find_if(series.begin() + static_cast<std::ptrdiff_t>(first), series.end(),
                               [&](const Series& x) { return *x.target == tn; });
        if (it == series.end()) {
          series.push_back(Series{u, &tn, {}});
          it = series.end() - 1;
        }
        it->slots.emplace_back(u, t);
      }
    }
  }
  auto target_cell = [&](const Series& x, auto&& pick) {
    std::int64_t total = 0;
    for (const auto& [u, t] : x.slots) {
      total += slot_cell(u, t, pick);
    }
    return total;
  };
  auto each_target = [&](auto&& f) {
    for (const auto& x : series) {
      f(x);
    }
  };
  auto counter = [&](const char* name, const char* help, Cell TargetStats::*cell) {
    fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} counter\n", name, help, name);
    each_target([&](const Series& x) {
      auto v = target_cell(x, [&](const TargetStats& ts) -> const Cell& { return ts.*cell; });
      fmt::format_to(std::back_inserter(out), "{}{{upstream=\"{}\",target=\"{}\"}} {}\n", name,
                     upstream_names_[x.upstream], *x.target, v);
    });
  };
  counter("gatehouse_upstream_target_requests_total",
          "Tries sent to the upstream target (a connection acquired for a request).",
          &TargetStats::requests);
  counter("gatehouse_upstream_target_errors_total",
          "Failed connects, tries without a usable response head and responses cut off, by "
          "upstream target.",
          &TargetStats::errors);

  const char* h = "gatehouse_upstream_target_response_head_seconds";
  fmt::format_to(std::back_inserter(out),
                 "# HELP {} Time from sending the request to the upstream target to its response "
                 "head.\n# TYPE {} histogram\n",
                 h, h);
  each_target([&](const Series& x) {
    const auto& un = upstream_names_[x.upstream];
    const auto& tn = *x.target;
    std::int64_t cumulative = 0;
    for (std::size_t b = 0; b <= kDurationBuckets.size(); ++b) {
      cumulative +=
          target_cell(x, [&](const TargetStats& ts) -> const Cell& { return ts.head_buckets[b]; });
      if (b < kDurationBuckets.size()) {
        fmt::format_to(std::back_inserter(out),
                       "{}_bucket{{upstream=\"{}\",target=\"{}\",le=\"{}\"}} {}\n", h, un, tn,
                       kDurationBuckets[b], cumulative);
      } else {
        fmt::format_to(std::back_inserter(out),
                       "{}_bucket{{upstream=\"{}\",target=\"{}\",le=\"+Inf\"}} {}\n", h, un, tn,
                       cumulative);
      }
    }
    auto us = target_cell(x, [](const TargetStats& ts) -> const Cell& { return ts.head_us_sum; });
    fmt::format_to(std::back_inserter(out),
                   "{}_sum{{upstream=\"{}\",target=\"{}\"}} {}\n"
                   "{}_count{{upstream=\"{}\",target=\"{}\"}} {}\n",
                   h, un, tn, static_cast<double>(us) / 1e6, h, un, tn, cumulative);
  });
}

}  // namespace gatehouse::observability
