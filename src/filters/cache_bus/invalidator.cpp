#include "filters/cache_bus/invalidator.hpp"

#include <fmt/format.h>

#include <iterator>

namespace gatehouse::filters::cache_bus {

const char* origin_name(Origin o) {
  switch (o) {
    case Origin::local:
      return "local";
    case Origin::admin:
      return "admin";
    case Origin::remote:
      return "remote";
    case Origin::resync:
      return "resync";
  }
  return "?";
}

Invalidator::Invalidator(Purge purge) : purge_(std::move(purge)) {}

void Invalidator::set_bus(std::function<void()> wake) {
  wake_ = std::move(wake);
}

std::size_t Invalidator::invalidate(std::string_view prefix, Origin origin) {
  const std::size_t n = purge_ ? purge_(prefix) : 0;
  const auto o = static_cast<std::size_t>(origin);
  invalidations_[o].fetch_add(1, std::memory_order_relaxed);
  purged_[o].fetch_add(n, std::memory_order_relaxed);
  if (!wake_ || (origin != Origin::local && origin != Origin::admin)) {
    return n;
  }
  bool was_empty = false;
  {
    std::lock_guard lock(mu_);
    was_empty = outbox_.empty() && !overflow_;
    if (overflow_) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
    } else if (outbox_.size() >= kMaxOutbox) {
      // Everything queued and this one become one purge of "/": the others over-purge once.
      dropped_.fetch_add(outbox_.size() + 1, std::memory_order_relaxed);
      outbox_.clear();
      overflow_ = true;
    } else {
      outbox_.emplace_back(prefix);
    }
  }
  if (was_empty) {
    wake_();
  }
  return n;
}

std::vector<std::string> Invalidator::take_outbox() {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  if (overflow_) {
    out.emplace_back("/");
    overflow_ = false;
    outbox_.clear();
  } else {
    out.swap(outbox_);
  }
  return out;
}

std::size_t Invalidator::queued() const {
  std::lock_guard lock(mu_);
  return overflow_ ? 1 : outbox_.size();
}

void Invalidator::render_metrics(std::string& out) const {
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP gatehouse_cache_invalidations_total Prefix purges applied to this "
                 "instance's cache, by origin (local: a write on a route with invalidates; admin: "
                 "DELETE /admin/cache; remote: another instance; resync: everything, after the "
                 "bus's subscriber connected).\n"
                 "# TYPE gatehouse_cache_invalidations_total counter\n");
  for (std::size_t o = 0; o < kOrigins; ++o) {
    fmt::format_to(it, "gatehouse_cache_invalidations_total{{origin=\"{}\"}} {}\n",
                   origin_name(static_cast<Origin>(o)),
                   invalidations_[o].load(std::memory_order_relaxed));
  }
  fmt::format_to(it,
                 "# HELP gatehouse_cache_invalidated_entries_total Cache entries those purges "
                 "removed, by origin.\n"
                 "# TYPE gatehouse_cache_invalidated_entries_total counter\n");
  for (std::size_t o = 0; o < kOrigins; ++o) {
    fmt::format_to(it, "gatehouse_cache_invalidated_entries_total{{origin=\"{}\"}} {}\n",
                   origin_name(static_cast<Origin>(o)), purged_[o].load(std::memory_order_relaxed));
  }
  if (wake_) {
    fmt::format_to(it,
                   "# HELP gatehouse_cache_bus_dropped_total Prefixes that did not fit the bus's "
                   "queue (the other instances got a purge of everything instead).\n"
                   "# TYPE gatehouse_cache_bus_dropped_total counter\n"
                   "gatehouse_cache_bus_dropped_total {}\n",
                   dropped_.load(std::memory_order_relaxed));
  }
}

}  // namespace gatehouse::filters::cache_bus
