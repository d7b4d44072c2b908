#pragma once
// The invalidation bus (issue 14, `cache.shared`): prefixes purged on one instance reach every
// instance subscribed to the same Redis channel. It runs on the admin thread's io_context over the
// general Redis client (src/redis/client_net.*), with two connections:
//
// - subscriber: SUBSCRIBE <channel>; each message is decoded (message.hpp), its own echoes
//   skipped, and the prefix purged here (Origin::remote). Lost or refused: reconnect after a
//   backoff (100 ms doubling to 5 s). Every successful SUBSCRIBE purges the whole local cache
//   (Origin::resync): messages published while it was away are lost, and a stale entry after a
//   partition is the bug users would see.
// - publisher: PUBLISH for the prefixes the Invalidator queued (workers never wait for Redis),
//   and a PING every second, whose failure also drops the subscriber (a half-open connection
//   would otherwise look subscribed forever). Prefixes that could not be published wait, deduped
//   and bounded (kMaxPending, beyond which they collapse into "/"), and go out once Redis answers,
//   so an instance cut off from Redis still reaches the others afterwards.
//
// Redis down: invalidations are local only; the `cache_bus` health component is degraded; errors
// are counted and logged on each change of state (never per request).
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "filters/cache_bus/config.hpp"
#include "filters/cache_bus/invalidator.hpp"
#include "io/net.hpp"
#include "observability/health.hpp"
#include "observability/logging.hpp"
#include "redis/client_net.hpp"

namespace gatehouse::filters::cache_bus {

namespace net = io::net;
using io::Clock;

class Bus {
 public:
  static constexpr std::chrono::milliseconds kTimeout{2'000};  // per Redis call, connect included
  static constexpr std::chrono::milliseconds kHeartbeat{1'000};
  static constexpr std::chrono::milliseconds kMinBackoff{100};
  static constexpr std::chrono::milliseconds kMaxBackoff{5'000};
  static constexpr std::size_t kMaxPending = 256;

  enum class ErrorKind : std::uint8_t { subscribe, publish, heartbeat, message };

  Bus(const Settings& settings, Invalidator& invalidator, observability::Logs& logs,
      net::io_context& ioc);
  ~Bus();
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  // Before the workers run (blocking): resolves, connects, authenticates. Throws
  // std::runtime_error for a misconfiguration (wrong password, unknown database); an unreachable
  // Redis only starts the bus disconnected.
  void start_up();
  // Starts the subscriber and publisher loops on the io_context.
  void start();
  // Any thread: the Invalidator's queue has prefixes.
  void wake();

  bool up() const { return subscribed_.load() && publisher_up_.load(); }
  const std::string& instance() const { return instance_; }
  observability::ComponentReport health() const;
  void render_metrics(std::string& out) const;

 private:
  struct SubscriberOp;
  enum class SubState : std::uint8_t { idle, subscribing, subscribed, lost };

  net::awaitable<void> subscribe_loop();
  net::awaitable<void> publish_loop();
  net::awaitable<void> wait_event(net::steady_timer& timer, Clock::duration at_most);
  void on_subscriber_reply(const redisReply* reply, redis::Failure failure);
  void on_message(std::string_view payload);
  void take_outbox();
  void error(ErrorKind kind, std::string detail);
  void report_state();

  Settings settings_;
  Invalidator& invalidator_;
  observability::Logs& logs_;
  net::io_context& ioc_;
  std::string instance_;
  redis::Shared shared_;
  std::unique_ptr<SubscriberOp> sub_op_;  // outlives the connection: freeing it calls the op
  std::unique_ptr<redis::Client> client_;
  std::unique_ptr<redis::Connection> subscriber_;
  net::steady_timer sub_event_;
  net::steady_timer pub_event_;
  SubState sub_state_ = SubState::idle;
  std::vector<std::string> pending_;  // admin thread
  bool stopping_ = false;
  bool woken_ = false;
  enum class Reported : std::uint8_t { none, up, down } reported_ = Reported::none;

  std::atomic<bool> subscribed_{false};
  std::atomic<bool> publisher_up_{false};
  std::atomic<std::size_t> pending_count_{0};
  std::atomic<std::uint64_t> published_{0};
  std::array<std::atomic<std::uint64_t>, 4> errors_{};
  mutable std::mutex mu_;
  std::string last_error_;
};

}  // namespace gatehouse::filters::cache_bus
