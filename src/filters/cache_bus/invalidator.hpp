#pragma once
// Cache invalidation on this instance and the hand-off to the bus (issue 14). One per process,
// used from any thread: workers (a 2xx response on a route with `invalidates`), the admin thread
// (DELETE /admin/cache) and the bus (prefixes other instances published, and the purge after the
// subscriber reconnected).
//
// A local invalidation purges at once (the store's purge_prefix, thread-safe) and queues the
// prefix for the bus without waiting for Redis: the queue is bounded (kMaxOutbox); a prefix that
// does not fit is counted as dropped and turns the next publish into a purge of everything ("/"),
// so the other instances over-purge rather than keep a stale entry. Pure: no Asio; the bus is told
// through a callback, called when the queue becomes non-empty (it posts to its own thread).
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::filters::cache_bus {

enum class Origin : std::uint8_t {
  local,   // a successful write on a route with `invalidates`
  admin,   // DELETE /admin/cache
  remote,  // another instance's message
  resync,  // everything, after the subscriber (re)connected: messages may have been missed
};
inline constexpr std::size_t kOrigins = 4;
const char* origin_name(Origin o);

class Invalidator {
 public:
  static constexpr std::size_t kMaxOutbox = 1024;

  // `purge`: removes every cached entry whose canonical path starts with the prefix, returns how
  // many (thread-safe).
  using Purge = std::function<std::size_t(std::string_view prefix)>;
  explicit Invalidator(Purge purge);

  // With cache.shared: `wake` is called (on the invalidating thread, never under a lock the bus
  // takes) when the queue turns non-empty. Set before the workers start.
  void set_bus(std::function<void()> wake);
  bool shared() const { return static_cast<bool>(wake_); }

  // Purges `prefix` here; local and admin invalidations are also queued for the other instances.
  // Returns the number of entries purged on this instance.
  std::size_t invalidate(std::string_view prefix, Origin origin);

  // The bus: the queued prefixes, oldest first (the queue is left empty). After an overflow the
  // list is just "/".
  std::vector<std::string> take_outbox();

  std::uint64_t invalidations(Origin o) const {
    return invalidations_[static_cast<std::size_t>(o)].load(std::memory_order_relaxed);
  }
  std::uint64_t purged(Origin o) const {
    return purged_[static_cast<std::size_t>(o)].load(std::memory_order_relaxed);
  }
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  std::size_t queued() const;

  // gatehouse_cache_invalidations_total{origin}, gatehouse_cache_invalidated_entries_total{origin},
  // gatehouse_cache_bus_dropped_total.
  void render_metrics(std::string& out) const;

 private:
  Purge purge_;
  std::function<void()> wake_;
  mutable std::mutex mu_;
  std::vector<std::string> outbox_;
  bool overflow_ = false;
  std::array<std::atomic<std::uint64_t>, kOrigins> invalidations_{};
  std::array<std::atomic<std::uint64_t>, kOrigins> purged_{};
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace gatehouse::filters::cache_bus
