#pragma once
// i12-resolve: `upstreams.<name>.resolve_interval`. Host-name targets of such an upstream are
// resolved at start-up (blocking, before the workers start: a name that does not resolve stops
// the start) and then every interval on the admin thread with Asio's asynchronous resolver, so
// no worker ever waits for DNS. Every address a name resolves to fills a slot of the name's block
// (TargetSlots); an address that appears takes a free slot, one that disappears retires its slot
// (no new requests; requests in flight finish; workers close its idle connections when they
// notice). A resolution that fails or finds nothing keeps the previous addresses. Each change is
// logged and counted; the state of every name shows in /health/detailed.
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "io/net.hpp"
#include "observability/health.hpp"
#include "observability/logging.hpp"
#include "observability/metrics.hpp"
#include "upstream/target_slots.hpp"
#include "upstream/upstream_health.hpp"

namespace gatehouse::upstream {

class Resolver {
 public:
  // `logs` may be null (tests). References must outlive the resolver. One unit per upstream of
  // `cfg`, with room for `unit_capacity` (0: as many as cfg has).
  Resolver(io::net::io_context& ioc, const config::Config& cfg, observability::Health& health,
           observability::Metrics* metrics, observability::Logs* logs,
           std::size_t unit_capacity = 0);

  // Whether upstream u re-resolves host names (resolve_interval set and a host-name target).
  static bool resolves(const config::Upstream& u);
  // Start-up: resolves every name now (blocking) and fills the slots; throws std::runtime_error
  // naming the upstream and host when one does not resolve. Address targets take their slot.
  void start_up();
  // Reload, admin thread: resolves the names `cfg` re-resolves (blocking, like start-up); throws
  // as start_up does. Empty when it re-resolves none.
  std::vector<std::vector<io::tcp::endpoint>> lookup(const config::Upstream& cfg);
  // Reload, admin thread: unit `u` (the next one; Health::add_upstream and Metrics::add_upstream
  // made its slots) for upstream `cfg`, which must outlive the resolver, filled with what
  // lookup(cfg) found, and re-resolved every interval once run() has started.
  void add_upstream(std::size_t u, const config::Upstream& cfg,
                    const std::vector<std::vector<io::tcp::endpoint>>& found,
                    UpstreamHealth* shared);
  // Null when upstream u's targets never change.
  const TargetSlots* slots(std::size_t u) const { return upstreams_[u].slots.get(); }
  // Each upstream's outlier detector learns of replaced slots (call before run()).
  void attach(std::size_t u, UpstreamHealth* shared) { upstreams_[u].shared = shared; }

  // Resolves every interval until stop().
  io::net::awaitable<void> run();
  void stop() { stopped_ = true; }

  // One name's new addresses (admin thread): the slot changes made, logged and counted. Public
  // for tests; run() calls it.
  SlotChanges apply(std::size_t u, std::size_t name, const std::vector<io::tcp::endpoint>& found);
  // A failed resolution (admin thread): logged, counted, kept for /health/detailed.
  void failed(std::size_t u, std::size_t name, const std::string& error);

  // `resolve` block of upstream u's /health/detailed component (any thread); degraded while a
  // name's last resolution failed.
  void report(std::size_t u, observability::ComponentReport& r) const;
  // Prometheus series (admin thread).
  void render_metrics(std::string& out) const;

  struct Counts {
    std::atomic<std::uint64_t> added{0}, removed{0}, failures{0}, overflow{0};
  };
  const Counts& counts(std::size_t u) const { return *upstreams_[u].counts; }

 private:
  struct Name {
    config::Endpoint endpoint;  // as written
    std::string text;           // "app.internal:8000"
    std::size_t first = 0;      // its block of slots: [first, first + count)
    std::size_t count = 0;
    // Guarded by Resolver::mu_ (read by report() on any thread).
    std::string last_error;
    std::int64_t last_resolved_unix_ms = 0;
  };
  struct UpstreamState {
    std::unique_ptr<TargetSlots> slots;  // null: not re-resolved
    SlotView view;                       // the admin thread's copy of what was published
    std::vector<Name> names;
    UpstreamHealth* shared = nullptr;
    std::unique_ptr<Counts> counts = std::make_unique<Counts>();
    const config::Upstream* cfg = nullptr;  // the definition (outlives the resolver)
  };

  io::net::awaitable<void> run_upstream(std::size_t u);
  UpstreamState state_for(const config::Upstream& uc) const;
  void log(spdlog::level::level_enum level, std::string_view message, std::string_view event,
           std::size_t u, const Name& n, std::string_view address, std::string_view extra) const;

  io::net::io_context& ioc_;
  observability::Health& health_;
  observability::Metrics* metrics_;
  observability::Logs* logs_;
  std::vector<UpstreamState> upstreams_;
  mutable std::mutex mu_;
  bool running_ = false;
  bool stopped_ = false;
};

}  // namespace gatehouse::upstream
