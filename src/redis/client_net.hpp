#pragma once
// A general Redis client: hiredis's asynchronous API driven by a worker's io_context. It knows
// connections, AUTH/SELECT, pipelining, timeouts, Redis Cluster (slot map, MOVED/ASK) and a
// circuit breaker; what the commands mean is its user's business (the rate-limit store,
// src/filters/rate_limit/store/).
//
// - Shared (one per process): options, the circuit breaker, error and redirection counters, the
//   start-up check.
// - Client (one per worker, plus one on the admin thread): connections (a pool per Redis node),
//   the cluster slot map, PING (the breaker's probe).
//
// Nothing blocks a worker: hiredis does the protocol, our adapter maps its add/del read/write
// hooks onto Asio waits on the socket, and a per-connection timer enforces `timeout`. A call that
// times out or fails counts towards the breaker (timeouts here, other failures by the caller).
// Start-up (before the workers run) uses hiredis's blocking API once, to fail fast on a wrong
// password.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "io/net.hpp"
#include "observability/logging.hpp"
#include "redis/cluster.hpp"
#include "redis/command.hpp"
#include "redis/url.hpp"

struct redisAsyncContext;
struct redisContext;
struct redisReply;

namespace gatehouse::redis {

// The I/O primitives (src/io) are this layer's vocabulary.
using namespace ::gatehouse::io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;

enum class Failure : std::uint8_t { none, timeout, error, connect };
const char* failure_name(Failure f);

struct Options {
  Url url;
  std::chrono::milliseconds timeout{50};  // per call, connection set-up included
  unsigned pool = 1;                      // connections per worker (and per cluster node)
  bool cluster = false;                   // Redis Cluster: slot map from CLUSTER SLOTS, MOVED/ASK
  unsigned breaker_failures = 3;          // consecutive failed calls that open the breaker
  std::chrono::milliseconds breaker_cooldown{1000};  // open this long, then the probe may close it
  std::string name;  // prefixes start-up errors ("rate_limit.store redis://...")
};

// A blocking hiredis connection (start-up only).
struct SyncReply {
  redisReply* r = nullptr;
  SyncReply() = default;
  SyncReply(SyncReply&& o) noexcept : r(o.r) { o.r = nullptr; }
  SyncReply& operator=(SyncReply&&) = delete;
  ~SyncReply();
  bool is_error() const;
  std::string text() const;
};
class SyncConnection {
 public:
  explicit SyncConnection(redisContext* c) : c_(c) {}
  SyncReply command(const std::vector<std::string>& args);
  const char* errstr() const;

 private:
  redisContext* c_;
};

// What the user of the client adds to the start-up and reports of the breaker's changes.
struct Events {
  // Each node, after AUTH and SELECT (e.g. loading a script). False: the node did not answer
  // (call Shared::failure and start degraded); throw std::runtime_error for a misconfiguration.
  std::function<bool(SyncConnection&)> prepare_node;
  std::function<void()> connected;                           // start-up reached every node
  std::function<void(std::string_view detail)> unavailable;  // the breaker opened
  std::function<void()> recovered;                           // the probe closed it
};

class Shared {
 public:
  Shared(Options options, Events events, observability::Logs& logs);

  // Before the workers start: resolves the host, connects, authenticates, selects the database,
  // runs Events::prepare_node (on every master with Redis Cluster) and reads the slot map. Throws
  // std::runtime_error for a misconfiguration (authentication, database, cluster mode); an
  // unreachable or silent server only starts degraded (breaker open).
  void start_up();

  const Options& options() const { return options_; }
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

  void count_redirect() { redirects_.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t errors(Failure kind) const {
    return errors_[static_cast<std::size_t>(kind)].load(std::memory_order_relaxed);
  }
  std::uint64_t redirects() const { return redirects_.load(std::memory_order_relaxed); }

  std::string last_error() const;
  observability::Logs& logs() { return logs_; }

 private:
  void open_breaker(std::string_view detail);

  Options options_;
  Events events_;
  observability::Logs& logs_;
  NodeAddress seed_;
  std::atomic<bool> open_{false};
  std::atomic<unsigned> consecutive_failures_{0};
  std::atomic<std::int64_t> open_until_{0};  // steady-clock ticks
  std::atomic<std::uint64_t> redirects_{0};
  std::array<std::atomic<std::uint64_t>, 4> errors_{};  // by Failure
  mutable std::mutex mu_;
  std::string last_error_;
  std::vector<SlotRange> slots_;
};

class Client;

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

// Suspends the calling coroutine until the holder of `slot` resumes it (a reply, or a user that
// answers several waiters at once).
inline auto suspend_on(std::unique_ptr<Op::Resumer>& slot) {
  return net::async_initiate<decltype(net::use_awaitable), void()>(
      [&slot](auto handler) {
        using H = decltype(handler);
        struct Impl final : Op::Resumer {
          explicit Impl(H&& h) : h(std::move(h)) {}
          void resume() override { std::move(h)(); }
          H h;
        };
        slot = std::make_unique<Impl>(std::move(handler));
      },
      net::use_awaitable);
}

class Connection {
 public:
  Connection(Client& client, NodeAddress address);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Queues `cmd` (connecting first when needed) and waits for `op` to complete.
  net::awaitable<void> call(const Command& cmd, Op& op);
  // Queues `cmd` without waiting.
  void send(const Command& cmd, Op& op);
  // Queues ASKING, whose reply is ignored (before a command redirected by ASK).
  void send_asking();
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

  Client& client_;
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

class Client {
 public:
  Client(Shared& shared, net::io_context& ioc);
  ~Client();

  // PING on every master (the breaker's probe; with a cluster, a fresh slot map first).
  net::awaitable<bool> ping();

  Shared& shared() { return shared_; }
  net::io_context& ioc() { return ioc_; }
  // Drain: closes every connection (pending calls fail); no new ones are opened.
  void close();
  bool closed() const { return closed_; }

  // The next connection (round robin) to node `node`; 0 is the seed.
  Connection& connection(std::size_t node);
  // The node serving `key`'s slot with Redis Cluster (0 when unknown or without a cluster).
  std::size_t node_for_key(std::string_view key);
  // Every master's node (the seed alone without a cluster).
  std::vector<std::size_t> masters();
  net::awaitable<void> refresh_slots();
  // When `error` is a MOVED or ASK redirection: counts it, patches the slot map (MOVED, with a
  // refresh in the background), sets `node` to the target and `asking` for ASK; returns true.
  bool follow_redirect(std::string_view error, std::size_t& node, bool& asking);

  // Off the hot path (admin): a reply copied into a small tree.
  struct Value {
    int type = 0;
    long long integer = 0;
    std::string str;
    std::vector<Value> elements;
  };
  // False when the call failed or Redis answered an error.
  net::awaitable<bool> command(std::size_t node, const Command& cmd, Value& out);

 private:
  friend class Connection;
  struct Node {
    NodeAddress address;
    std::vector<std::unique_ptr<Connection>> conns;
    std::size_t next = 0;
  };
  std::size_t node_index(const NodeAddress& address);
  void apply_slots(const std::vector<SlotRange>& slots);

  Shared& shared_;
  net::io_context& ioc_;
  std::vector<Node> nodes_;               // [0]: the seed
  std::vector<std::uint16_t> slot_node_;  // cluster: slot -> node index
  bool refreshing_ = false;
  bool closed_ = false;
};

}  // namespace gatehouse::redis
