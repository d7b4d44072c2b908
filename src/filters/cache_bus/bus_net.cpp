#include "filters/cache_bus/bus_net.hpp"

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <iterator>

#include "filters/cache_bus/message.hpp"
#include "http/json.hpp"
#include "io/spawn.hpp"

namespace gatehouse::filters::cache_bus {
namespace {

redis::Options options_of(const Settings& s) {
  redis::Options o;
  o.url = *s.url;
  o.timeout = Bus::kTimeout;
  o.pool = 1;
  o.name = "cache.shared " + s.url->redacted();
  return o;
}

const char* error_kind_name(std::size_t k) {
  static constexpr const char* kNames[] = {"subscribe", "publish", "heartbeat", "message"};
  return k < std::size(kNames) ? kNames[k] : "?";
}

std::string_view str_of(const redisReply* r) {
  return r != nullptr && r->str != nullptr ? std::string_view(r->str, r->len) : std::string_view();
}

}  // namespace

// The subscriber connection's one pending command: hiredis calls it for the SUBSCRIBE
// confirmation, for every message, and with null when the connection is lost.
struct Bus::SubscriberOp final : redis::Op {
  explicit SubscriberOp(Bus& b) : bus(b) {}
  void on_reply(const redisReply* reply) override { bus.on_subscriber_reply(reply, failure); }
  Bus& bus;
};

Bus::Bus(const Settings& settings, Invalidator& invalidator, observability::Logs& logs,
         net::io_context& ioc)
    : settings_(settings),
      invalidator_(invalidator),
      logs_(logs),
      ioc_(ioc),
      instance_(new_instance_id()),
      shared_(options_of(settings), redis::Events{}, logs),
      sub_op_(std::make_unique<SubscriberOp>(*this)),
      sub_event_(ioc),
      pub_event_(ioc) {}

Bus::~Bus() {
  stopping_ = true;
  subscriber_.reset();  // calls sub_op_ with null: ignored while stopping
  client_.reset();
}

void Bus::start_up() {
  shared_.start_up();
  client_ = std::make_unique<redis::Client>(shared_, ioc_);
  subscriber_ = std::make_unique<redis::Connection>(*client_, shared_.seed());
  invalidator_.set_bus([this] { wake(); });
}

void Bus::start() {
  io::spawn(ioc_, subscribe_loop(), logs_, "cache bus subscriber");
  io::spawn(ioc_, publish_loop(), logs_, "cache bus publisher");
}

void Bus::wake() {
  net::post(ioc_, [this] {
    woken_ = true;
    pub_event_.cancel();
  });
}

net::awaitable<void> Bus::wait_event(net::steady_timer& timer, Clock::duration at_most) {
  timer.expires_after(at_most);
  co_await timer.async_wait(io::nothrow);
}

void Bus::on_subscriber_reply(const redisReply* reply, redis::Failure failure) {
  if (stopping_) {
    return;
  }
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) {
    if (reply != nullptr && reply->type != REDIS_REPLY_ERROR) {
      return;  // nothing the subscription sends
    }
    if (sub_state_ == SubState::subscribing || sub_state_ == SubState::subscribed) {
      error(ErrorKind::subscribe,
            reply != nullptr
                ? fmt::format("subscriber: {}", str_of(reply))
                : fmt::format("subscriber: connection {}", sub_state_ == SubState::subscribed
                                                               ? "lost"
                                                               : redis::failure_name(failure)));
      sub_state_ = SubState::lost;
      sub_event_.cancel();
    }
    return;
  }
  auto kind = str_of(reply->element[0]);
  if (kind == "message") {
    on_message(str_of(reply->element[2]));
  } else if (kind == "subscribe" && sub_state_ == SubState::subscribing) {
    sub_state_ = SubState::subscribed;
    sub_event_.cancel();
  }
}

void Bus::on_message(std::string_view payload) {
  auto m = decode(payload);
  if (!m) {
    std::string head(payload.substr(0, 64));
    error(ErrorKind::message, "a message that is not an invalidation: " + head);
    return;
  }
  if (m->instance == instance_) {
    return;  // our own, purged when it was sent
  }
  invalidator_.invalidate(m->prefix, Origin::remote);
}

net::awaitable<void> Bus::subscribe_loop() {
  auto backoff = kMinBackoff;
  redis::Command cmd;
  cmd.add("SUBSCRIBE");
  cmd.add(settings_.channel);
  while (!stopping_) {
    sub_state_ = SubState::subscribing;
    subscriber_->send(cmd, *sub_op_);
    if (sub_state_ == SubState::subscribing) {
      // The connection's own timeout drops it first; this bound only guards against a lost wake.
      co_await wait_event(sub_event_, kTimeout * 2);
    }
    if (stopping_) {
      co_return;
    }
    if (sub_state_ == SubState::subscribing) {
      error(ErrorKind::subscribe, "subscriber: no answer to SUBSCRIBE");
      sub_state_ = SubState::lost;
    }
    if (sub_state_ == SubState::subscribed) {
      backoff = kMinBackoff;
      // Whatever was published while we were not subscribed is lost: start from an empty cache.
      invalidator_.invalidate("/", Origin::resync);
      subscribed_.store(true);
      report_state();
      while (sub_state_ == SubState::subscribed && !stopping_) {
        co_await wait_event(sub_event_, std::chrono::hours(1));
      }
      subscribed_.store(false);
      report_state();
    }
    if (stopping_) {
      co_return;
    }
    sub_state_ = SubState::idle;  // the drop below calls the op again: not news
    subscriber_->close();
    co_await wait_event(sub_event_, backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

// Queued prefixes join the pending ones, deduplicated; "/" covers everything.
void Bus::take_outbox() {
  for (auto& p : invalidator_.take_outbox()) {
    if (!pending_.empty() && pending_.front() == "/") {
      break;
    }
    if (p == "/" || pending_.size() >= kMaxPending) {
      pending_.assign(1, "/");
      break;
    }
    if (std::find(pending_.begin(), pending_.end(), p) == pending_.end()) {
      pending_.push_back(std::move(p));
    }
  }
  pending_count_.store(pending_.size());
}

net::awaitable<void> Bus::publish_loop() {
  auto next_ping = Clock::now();
  redis::Client::Value reply;
  while (!stopping_) {
    auto now = Clock::now();
    if (now >= next_ping) {
      next_ping = now + kHeartbeat;
      redis::Command ping;
      ping.add("PING");
      const bool ok = co_await client_->command(0, ping, reply);
      if (!ok && publisher_up_.load()) {
        error(ErrorKind::heartbeat, "publisher: PING failed: " + shared_.last_error());
        // The subscriber may sit on a half-open connection: make it reconnect (and resync).
        subscriber_->close();
      } else if (!ok) {
        error(ErrorKind::heartbeat, "publisher: " + shared_.last_error());
      }
      publisher_up_.store(ok);
      report_state();
    }
    take_outbox();
    if (publisher_up_.load()) {
      std::size_t sent = 0;
      for (; sent < pending_.size() && !stopping_; ++sent) {
        redis::Command publish;
        publish.add("PUBLISH");
        publish.add(settings_.channel);
        publish.add(encode(instance_, pending_[sent]));
        const bool ok = co_await client_->command(0, publish, reply);
        if (!ok) {
          error(ErrorKind::publish, "publisher: PUBLISH failed: " +
                                        (reply.str.empty() ? shared_.last_error() : reply.str));
          publisher_up_.store(false);
          report_state();
          break;
        }
        published_.fetch_add(1, std::memory_order_relaxed);
      }
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(sent));
      pending_count_.store(pending_.size());
    }
    if (woken_ && publisher_up_.load()) {
      woken_ = false;
      continue;  // more may have been queued while publishing
    }
    woken_ = false;
    auto wait = std::max<Clock::duration>(next_ping - Clock::now(), Clock::duration::zero());
    co_await wait_event(pub_event_, wait);
  }
}

void Bus::error(ErrorKind kind, std::string detail) {
  errors_[static_cast<std::size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(mu_);
    last_error_ = detail;
  }
  if (kind == ErrorKind::message) {
    // Someone else publishes on our channel: worth a line, but not one per message.
    if (errors_[static_cast<std::size_t>(kind)].load(std::memory_order_relaxed) % 1000 == 1) {
      std::string extra = "\"channel\":";
      gatehouse::http::append_json_string(extra, settings_.channel);
      extra += ",\"detail\":";
      gatehouse::http::append_json_string(extra, detail);
      logs_.error(spdlog::level::warn, "cache bus: message ignored", extra);
    }
    return;
  }
  if (reported_ != Reported::down) {
    reported_ = Reported::down;
    std::string extra = "\"redis\":";
    gatehouse::http::append_json_string(extra, settings_.url->redacted());
    extra += ",\"error\":";
    gatehouse::http::append_json_string(extra, detail);
    logs_.error(spdlog::level::warn,
                "cache bus unavailable; invalidations stay on this instance until Redis answers",
                extra);
  }
}

void Bus::report_state() {
  if (!up() || reported_ == Reported::up) {
    return;
  }
  const bool recovered = reported_ == Reported::down;
  reported_ = Reported::up;
  std::string extra = "\"redis\":";
  gatehouse::http::append_json_string(extra, settings_.url->redacted());
  extra += ",\"channel\":";
  gatehouse::http::append_json_string(extra, settings_.channel);
  extra += ",\"instance\":";
  gatehouse::http::append_json_string(extra, instance_);
  logs_.error(spdlog::level::info,
              recovered ? "cache bus recovered; local cache purged (invalidations may have been "
                          "missed)"
                        : "cache bus connected",
              extra);
}

observability::ComponentReport Bus::health() const {
  nlohmann::json d{{"redis", settings_.url->redacted()},
                   {"channel", settings_.channel},
                   {"instance", instance_},
                   {"subscribed", subscribed_.load()},
                   {"publisher", publisher_up_.load() ? "ok" : "down"},
                   {"pending", pending_count_.load() + invalidator_.queued()},
                   {"dropped", invalidator_.dropped()}};
  auto status = observability::Status::ok;
  if (!up()) {
    status = observability::Status::degraded;
    std::lock_guard lock(mu_);
    d["last_error"] = last_error_;
    d["mode"] = "local only";
  }
  return {status, std::move(d)};
}

void Bus::render_metrics(std::string& out) const {
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP gatehouse_cache_bus_up 1 while the invalidation bus is subscribed and "
                 "Redis answers its publisher.\n"
                 "# TYPE gatehouse_cache_bus_up gauge\ngatehouse_cache_bus_up {}\n"
                 "# HELP gatehouse_cache_bus_published_total Invalidations published to the other "
                 "instances.\n"
                 "# TYPE gatehouse_cache_bus_published_total counter\n"
                 "gatehouse_cache_bus_published_total {}\n"
                 "# HELP gatehouse_cache_bus_pending Invalidations waiting for Redis.\n"
                 "# TYPE gatehouse_cache_bus_pending gauge\ngatehouse_cache_bus_pending {}\n"
                 "# HELP gatehouse_cache_bus_errors_total Bus failures by kind (subscribe, "
                 "publish, heartbeat, message: a payload that is not an invalidation).\n"
                 "# TYPE gatehouse_cache_bus_errors_total counter\n",
                 up() ? 1 : 0, published_.load(std::memory_order_relaxed),
                 pending_count_.load() + invalidator_.queued());
  for (std::size_t k = 0; k < errors_.size(); ++k) {
    fmt::format_to(it, "gatehouse_cache_bus_errors_total{{kind=\"{}\"}} {}\n", error_kind_name(k),
                   errors_[k].load(std::memory_order_relaxed));
  }
}

}  // namespace gatehouse::filters::cache_bus
