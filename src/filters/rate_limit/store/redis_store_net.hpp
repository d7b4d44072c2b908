#pragma once
// The Redis rate-limit store: decisions (the script of redis_protocol.*) and bans, over the
// general Redis client (src/redis/).
//
// - RedisStore (one per process): the client's shared state (breaker, start-up), the script
//   loaded on every node at start-up, counters for /metrics and /health/detailed.
// - RedisStoreClient (one per worker, plus one on the admin thread): decide(): one EVALSHA per
//   request (per group with Redis Cluster), batched with the worker's other decisions of the same
//   event-loop turn; the breaker's probe; bans for /admin/bans.
//
// While the breaker is open decide() returns false at once and the caller falls back
// (on_store_failure).
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "filters/rate_limit/config.hpp"
#include "filters/rate_limit/rate_limit_filter.hpp"
#include "observability/logging.hpp"
#include "ratelimit/bans.hpp"
#include "redis/client_net.hpp"

namespace gatehouse::filters::rate_limit::store {

namespace net = io::net;

class RedisStore {
 public:
  RedisStore(const RedisSettings& settings, std::string on_failure, observability::Logs& logs);

  // Before the workers start: see redis::Shared::start_up; loads the script on every node.
  void start_up() { shared_.start_up(); }

  const RedisSettings& settings() const { return settings_; }
  redis::Shared& shared() { return shared_; }
  bool up() const { return shared_.up(); }
  bool probe_due(io::Clock::time_point now) const { return shared_.probe_due(now); }
  std::string last_error() const { return shared_.last_error(); }

  void count_fallback() { fallbacks_.fetch_add(1, std::memory_order_relaxed); }
  void count_call() { calls_.fetch_add(1, std::memory_order_relaxed); }
  void count_script_load() { script_loads_.fetch_add(1, std::memory_order_relaxed); }

  void render_metrics(std::string& out) const;

 private:
  // redis::Events: the script on every node at start-up, and the log lines of the breaker.
  bool load_script(redis::SyncConnection& conn);
  void log_connected();
  void log_unavailable(std::string_view detail);
  void log_recovered();

  RedisSettings settings_;
  std::string on_failure_;  // on_store_failure, for the log line
  observability::Logs& logs_;
  redis::Shared shared_;
  std::atomic<std::uint64_t> calls_{0};
  std::atomic<std::uint64_t> fallbacks_{0};
  std::atomic<std::uint64_t> script_loads_{0};
};

class RedisStoreClient {
 public:
  RedisStoreClient(RedisStore& store, net::io_context& ioc);

  // Decides the request's groups in Redis. False: the store could not decide (error, timeout,
  // breaker open); the caller falls back.
  net::awaitable<bool> decide(StoreRequest& req);
  // PING on every master (the breaker's probe).
  net::awaitable<bool> ping() { return client_.ping(); }

  // Admin (/admin/bans): the bans in Redis (SCAN on every master; at most `limit`), and lifting
  // one identity's ban or all of them. False/nullopt when Redis could not answer.
  net::awaitable<bool> list_bans(std::vector<ratelimit::BanInfo>& out, std::size_t limit);
  net::awaitable<std::optional<std::size_t>> lift_bans(std::optional<std::string> identity);

  // Drain: closes every connection (pending calls fail and fall back); no new ones are opened.
  void close() { client_.close(); }

 private:
  std::size_t node_for(std::string_view identity);
  // Standalone Redis: the decisions a worker's coroutines ask for during one turn of its event
  // loop go out as one script call (up to kMaxBatch), answered together.
  struct Waiter {
    StoreRequest* req = nullptr;
    bool ok = false;
    std::unique_ptr<redis::Op::Resumer> resumer;
  };
  static constexpr std::size_t kMaxBatch = 64;
  void start_batches();
  net::awaitable<void> run_batch(std::vector<Waiter*> batch);
  net::awaitable<bool> decide_groups(StoreRequest& req, std::size_t first, std::size_t last,
                                     redis::Failure& failure, std::string& detail);

  RedisStore& store_;
  redis::Client client_;
  std::vector<Waiter*> queue_;
  bool batch_posted_ = false;
  redis::Command cmd_;  // reused when no call is in flight
};

}  // namespace gatehouse::filters::rate_limit::store
