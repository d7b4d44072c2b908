#pragma once
// The Redis rate-limit store: hiredis's asynchronous API driven by a worker's io_context.
//
// - RedisShared (one per process): settings, the circuit breaker, counters for /metrics and
//   /health/detailed, the start-up check and the background probe that closes the breaker.
// - RedisClient (one per worker, plus one on the admin thread): connections (a pool per Redis
//   node), the cluster slot map, and decide(): one EVALSHA per request (per group with Redis
//   Cluster), pipelined with the other requests of the worker on the same connection.
//
// Nothing blocks a worker: hiredis does the protocol, our adapter maps its add/del read/write
// hooks onto Asio waits on the socket, and a per-connection timer enforces `redis.timeout`. A call
// that times out or fails counts towards the breaker; while it is open decide() returns false at
// once and the caller falls back (on_store_failure). Start-up (before the workers run) uses
// hiredis's blocking API once, to fail fast on a wrong password and to load the script.
#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "filters/rate_limit/config.hpp"
#include "filters/rate_limit/rate_limit_filter.hpp"
#include "filters/rate_limit/redis_protocol.hpp"
#include "io/net.hpp"
#include "observability/logging.hpp"
#include "ratelimit/bans.hpp"

struct redisAsyncContext;
struct redisReply;

namespace gatehouse::server::redis {

// The I/O primitives (src/io) are this layer's vocabulary.
using namespace ::gatehouse::io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;
namespace beast = io::beast;
namespace http = io::http;  // Beast's; ours is ghttp
namespace ghttp = io::ghttp;

// The I/O primitives (src/io) are this layer's vocabulary.
using namespace ::gatehouse::io;  // NOLINT(google-build-using-namespace)

using filters::rate_limit::RedisSettings;
using filters::rate_limit::StoreRequest;
using filters::rate_limit::redis::Command;

enum class Failure : std::uint8_t { none, timeout, error, connect };

struct NodeAddress {
  std::string host;  // numeric
  std::uint16_t port = 0;
  bool operator==(const NodeAddress&) const = default;
};

// Slot ranges from CLUSTER SLOTS (masters only).
struct SlotRange {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  NodeAddress node;
};

class RedisShared {
 public:
  RedisShared(const RedisSettings& settings, std::string on_failure, observability::Logs& logs);

  // Before the workers start: resolves the host, connects, authenticates, selects the database,
  // loads the script (on every master with Redis Cluster) and reads the slot map. Throws
  // std::runtime_error for a misconfiguration (authentication, database, cluster mode); an
  // unreachable or silent server only starts gatehouse degraded (breaker open).
  void start_up();

  const RedisSettings& settings() const { return settings_; }
  const NodeAddress& seed() const { return seed_; }
  std::vector<SlotRange> slots() const;
  void set_slots(std::vector<SlotRange> slots);

  // Circuit breaker. allow(): whether calls may go to Redis now.
  bool allow() const { return !open_.load(std::memory_order_acquire); }
  void success();          // a call answered: resets the consecutive-failure count
  void probe_succeeded();  // the background probe answered: closes the breaker
  void failure(Failure kind, std::string_view detail);
  bool up() const { return allow(); }
  // The background probe (admin thread): due when open and the cooldown has passed.
  bool probe_due(Clock::time_point now) const;
  void probe_failed(std::string_view detail);

  void count_fallback() { fallbacks_.fetch_add(1, std::memory_order_relaxed); }
  void count_call() { calls_.fetch_add(1, std::memory_order_relaxed); }
  void count_script_load() { script_loads_.fetch_add(1, std::memory_order_relaxed); }
  void count_redirect() { redirects_.fetch_add(1, std::memory_order_relaxed); }

  void render_metrics(std::string& out) const;
  std::string last_error() const;
  observability::Logs& logs() { return logs_; }

 private:
  void open_breaker(std::string_view detail);

  RedisSettings settings_;
  std::string on_failure_;  // on_store_failure, for the log line
  observability::Logs& logs_;
  NodeAddress seed_;
  std::atomic<bool> open_{false};
  std::atomic<unsigned> consecutive_failures_{0};
  std::atomic<std::int64_t> open_until_{0};  // steady-clock ticks
  std::atomic<std::uint64_t> calls_{0};
  std::atomic<std::uint64_t> fallbacks_{0};
  std::atomic<std::uint64_t> script_loads_{0};
  std::atomic<std::uint64_t> redirects_{0};
  std::array<std::atomic<std::uint64_t>, 4> errors_{};  // by Failure
  mutable std::mutex mu_;
  std::string last_error_;
  std::vector<SlotRange> slots_;
};

class RedisClient;

// A pending command: gets the reply (nullptr, with `failure` set, when the connection failed,
// was lost or the reply took longer than the timeout).
struct Op {
  virtual ~Op() = default;
  virtual void on_reply(const redisReply* reply) = 0;
  Failure failure = Failure::none;
  bool done = false;
  // The waiting coroutine's completion handler, type-erased.
  struct Resumer {
    virtual ~Resumer() = default;
    virtual void resume() = 0;
  };
  std::unique_ptr<Resumer> resumer;
};

class Connection {
 public:
  Connection(RedisClient& client, NodeAddress address);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Queues `cmd` (connecting first when needed) and waits for `op` to complete.
  net::awaitable<void> call(const Command& cmd, Op& op);
  // Queues `cmd` without waiting (ASKING before a redirected call).
  void send(const Command& cmd, Op& op);
  const NodeAddress& address() const { return address_; }
  bool connected() const { return ac_ != nullptr; }
  void close() { drop(Failure::error); }

 private:
  friend struct Hooks;
  bool ensure_connected();
  void drop(Failure why);
  void arm_read();
  void arm_write();
  void handle_write();
  void arm_timer();
  void on_timer();

  RedisClient& client_;
  NodeAddress address_;
  redisAsyncContext* ac_ = nullptr;
  std::optional<net::posix::stream_descriptor> sd_;
  std::uint64_t gen_ = 0;  // bumps with every new hiredis context: stale waits are ignored
  bool want_read_ = false;
  bool want_write_ = false;
  bool read_armed_ = false;
  bool write_armed_ = false;
  bool flush_posted_ = false;
  bool in_write_ = false;
  Failure failure_ = Failure::none;            // why the context is being dropped
  std::deque<Clock::time_point> outstanding_;  // send times, in reply order
  net::steady_timer timer_;
  bool timer_armed_ = false;
  struct SetupOp;
  std::unique_ptr<SetupOp> setup_op_;
};

class RedisClient {
 public:
  RedisClient(RedisShared& shared, net::io_context& ioc);
  ~RedisClient();

  // Decides the request's groups in Redis. False: the store could not decide (error, timeout,
  // breaker open); the caller falls back.
  net::awaitable<bool> decide(StoreRequest& req);
  // PING on the seed node (the breaker's probe).
  net::awaitable<bool> ping();

  // Admin (/admin/bans): the bans in Redis (SCAN on every master; at most `limit`), and lifting
  // one identity's ban or all of them. False/nullopt when Redis could not answer.
  net::awaitable<bool> list_bans(std::vector<ratelimit::BanInfo>& out, std::size_t limit);
  net::awaitable<std::optional<std::size_t>> lift_bans(std::optional<std::string> identity);

  RedisShared& shared() { return shared_; }
  net::io_context& ioc() { return ioc_; }
  // Drain: closes every connection (pending calls fail and fall back); no new ones are opened.
  void close();
  bool closed() const { return closed_; }

 private:
  friend class Connection;
  struct Node {
    NodeAddress address;
    std::vector<std::unique_ptr<Connection>> conns;
    std::size_t next = 0;
  };
  Connection& connection(std::size_t node);
  std::size_t node_index(const NodeAddress& address);
  std::size_t node_for(std::string_view identity);
  void apply_slots(const std::vector<SlotRange>& slots);
  net::awaitable<void> refresh_slots();
  // Standalone Redis: the decisions a worker's coroutines ask for during one turn of its event
  // loop go out as one script call (up to kMaxBatch), answered together.
  struct Waiter {
    StoreRequest* req = nullptr;
    bool ok = false;
    std::unique_ptr<Op::Resumer> resumer;
  };
  static constexpr std::size_t kMaxBatch = 64;
  void start_batches();
  net::awaitable<void> run_batch(std::vector<Waiter*> batch);
  std::vector<Waiter*> queue_;
  bool batch_posted_ = false;

  struct Value;
  net::awaitable<bool> command(std::size_t node, const Command& cmd, Value& out);
  std::vector<std::size_t> masters();
  net::awaitable<bool> decide_groups(StoreRequest& req, std::size_t first, std::size_t last,
                                     Failure& failure, std::string& detail);

  RedisShared& shared_;
  net::io_context& ioc_;
  std::vector<Node> nodes_;               // [0]: the seed
  std::vector<std::uint16_t> slot_node_;  // cluster: slot -> node index
  bool refreshing_ = false;
  bool closed_ = false;
  Command cmd_;  // reused when no call is in flight
};

// Parses CLUSTER SLOTS; false when the reply is not one.
bool parse_cluster_slots(const redisReply* reply, std::vector<SlotRange>& out);
// "MOVED 3999 127.0.0.1:6381" / "ASK ...": the slot and the address.
bool parse_redirect(std::string_view error, std::uint16_t& slot, NodeAddress& to);

}  // namespace gatehouse::server::redis
