#include "server/redis_client.hpp"

#include <fmt/format.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <sys/socket.h>

#include <charconv>
#include <span>
#include <stdexcept>

#include "http/json.hpp"
#include "io/spawn.hpp"

namespace gatehouse::server::redis {
namespace {

using filters::rate_limit::redis::build_decide;
using filters::rate_limit::redis::key_slot;
using filters::rate_limit::redis::parse_decide;
using filters::rate_limit::redis::script;
using filters::rate_limit::redis::script_sha1;

constexpr std::size_t kSlots = 16384;
constexpr std::uint16_t kNoNode = 0xffff;
constexpr int kMaxRedirects = 4;

const char* failure_name(Failure f) {
  switch (f) {
    case Failure::timeout:
      return "timeout";
    case Failure::error:
      return "error";
    case Failure::connect:
      return "connect";
    case Failure::none:
      break;
  }
  return "none";
}

std::string json_string(std::string_view s) {
  std::string out;
  ghttp::append_json_string(out, s);
  return out;
}

std::int64_t ticks(Clock::time_point t) {
  return t.time_since_epoch().count();
}

// Blocking hiredis, start-up only.
struct SyncReply {
  redisReply* r = nullptr;
  ~SyncReply() {
    if (r != nullptr) {
      freeReplyObject(r);
    }
  }
  bool is_error() const { return r != nullptr && r->type == REDIS_REPLY_ERROR; }
  std::string text() const {
    return r != nullptr && r->str != nullptr ? std::string(r->str, r->len) : "";
  }
};

SyncReply sync_command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  SyncReply out;
  out.r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
  return out;
}

std::string resolve(const std::string& host, std::uint16_t port, const std::string& what) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0 || res == nullptr) {
    throw std::runtime_error(what + ": cannot resolve " + host + ": " + gai_strerror(rc));
  }
  char buf[NI_MAXHOST];
  rc = ::getnameinfo(res->ai_addr, res->ai_addrlen, buf, sizeof buf, nullptr, 0, NI_NUMERICHOST);
  ::freeaddrinfo(res);
  if (rc != 0) {
    throw std::runtime_error(what + ": cannot resolve " + host);
  }
  return buf;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Parsing

bool parse_cluster_slots(const redisReply* reply, std::vector<SlotRange>& out) {
  out.clear();
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY) {
    return false;
  }
  for (std::size_t i = 0; i < reply->elements; ++i) {
    const redisReply* e = reply->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER ||
        e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2) {
      return false;
    }
    const redisReply* master = e->element[2];
    if (master->element[0]->type != REDIS_REPLY_STRING ||
        master->element[1]->type != REDIS_REPLY_INTEGER) {
      return false;
    }
    SlotRange range;
    range.first = static_cast<std::uint16_t>(e->element[0]->integer);
    range.last = static_cast<std::uint16_t>(e->element[1]->integer);
    range.node.host.assign(master->element[0]->str, master->element[0]->len);
    range.node.port = static_cast<std::uint16_t>(master->element[1]->integer);
    if (range.first > range.last || range.last >= kSlots) {
      return false;
    }
    out.push_back(std::move(range));
  }
  return true;
}

bool parse_redirect(std::string_view error, std::uint16_t& slot, NodeAddress& to) {
  auto space = error.find(' ');
  if (space == std::string_view::npos) {
    return false;
  }
  auto rest = error.substr(space + 1);
  auto space2 = rest.find(' ');
  if (space2 == std::string_view::npos) {
    return false;
  }
  unsigned s = 0;
  auto slot_text = rest.substr(0, space2);
  auto r = std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), s);
  if (r.ec != std::errc() || s >= kSlots) {
    return false;
  }
  auto addr = rest.substr(space2 + 1);
  auto colon = addr.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return false;
  }
  unsigned port = 0;
  auto port_text = addr.substr(colon + 1);
  r = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (r.ec != std::errc() || port == 0 || port > 65535) {
    return false;
  }
  slot = static_cast<std::uint16_t>(s);
  to.host = std::string(addr.substr(0, colon));
  if (to.host.size() > 2 && to.host.front() == '[' && to.host.back() == ']') {
    to.host = to.host.substr(1, to.host.size() - 2);
  }
  to.port = static_cast<std::uint16_t>(port);
  return true;
}

// ------------------------------------------------------------------------------------------------
// RedisShared

RedisShared::RedisShared(const RedisSettings& settings, std::string on_failure,
                         observability::Logs& logs)
    : settings_(settings), on_failure_(std::move(on_failure)), logs_(logs) {
  for (auto& e : errors_) {
    e.store(0);
  }
}

void RedisShared::start_up() {
  const std::string what = "rate_limit.store " + settings_.url.redacted();
  seed_ = NodeAddress{resolve(settings_.url.host, settings_.url.port, what), settings_.url.port};
  auto tv_ms = std::max<long>(settings_.timeout.count(), 1000);  // start-up is not latency-bound
  timeval tv{tv_ms / 1000, (tv_ms % 1000) * 1000};

  // Returns false (degraded start) when the server cannot be reached or does not answer.
  auto prepare = [&](const NodeAddress& node, bool select) {
    redisContext* c = redisConnectWithTimeout(node.host.c_str(), node.port, tv);
    struct Free {
      redisContext* c;
      ~Free() {
        if (c != nullptr) {
          redisFree(c);
        }
      }
    } guard{c};
    if (c == nullptr || c->err != 0) {
      failure(Failure::connect, c != nullptr ? c->errstr : "cannot allocate a connection");
      return false;
    }
    redisSetTimeout(c, tv);
    if (!settings_.url.password.empty()) {
      std::vector<std::string> auth{"AUTH"};
      if (!settings_.url.username.empty()) {
        auth.push_back(settings_.url.username);
      }
      auth.push_back(settings_.url.password);
      auto r = sync_command(c, auth);
      if (r.r == nullptr) {
        failure(Failure::timeout, c->errstr);
        return false;
      }
      if (r.is_error()) {
        throw std::runtime_error(what + ": authentication failed: " + r.text());
      }
    }
    if (select && settings_.url.db != 0) {
      auto r = sync_command(c, {"SELECT", std::to_string(settings_.url.db)});
      if (r.r == nullptr) {
        failure(Failure::timeout, c->errstr);
        return false;
      }
      if (r.is_error()) {
        throw std::runtime_error(what + ": cannot select database " +
                                 std::to_string(settings_.url.db) + ": " + r.text());
      }
    }
    auto r = sync_command(c, {"SCRIPT", "LOAD", std::string(script())});
    if (r.r == nullptr) {
      failure(Failure::timeout, c->errstr);
      return false;
    }
    if (r.is_error()) {
      auto text = r.text();
      if (text.starts_with("NOAUTH")) {
        throw std::runtime_error(what + ": authentication failed: the server requires a " +
                                 "password (" + text + ")");
      }
      throw std::runtime_error(what + ": cannot load the rate-limit script: " + text);
    }
    if (r.text() != script_sha1()) {
      throw std::runtime_error(what + ": unexpected SCRIPT LOAD reply " + r.text());
    }
    count_script_load();
    if (settings_.cluster && node == seed_) {
      auto s = sync_command(c, {"CLUSTER", "SLOTS"});
      if (s.r == nullptr) {
        failure(Failure::timeout, c->errstr);
        return false;
      }
      std::vector<SlotRange> ranges;
      if (s.is_error() || !parse_cluster_slots(s.r, ranges) || ranges.empty()) {
        throw std::runtime_error(
            what + ": redis.cluster is set but the server is not a " +
            "working Redis Cluster node: " + (s.is_error() ? s.text() : std::string("no slots")));
      }
      set_slots(std::move(ranges));
    }
    return true;
  };

  bool ok = prepare(seed_, true);
  if (ok && settings_.cluster) {
    std::vector<NodeAddress> masters;
    for (const auto& r : slots()) {
      if (!(r.node == seed_) &&
          std::find(masters.begin(), masters.end(), r.node) == masters.end()) {
        masters.push_back(r.node);
      }
    }
    for (const auto& m : masters) {
      ok = prepare(m, false) && ok;
    }
  }
  if (!ok) {
    // Serve anyway, degraded: the probe starts using Redis as soon as it answers.
    open_breaker(last_error());
  } else {
    logs_.error(spdlog::level::info, "rate limit store connected",
                "\"store\":" + json_string(settings_.url.redacted()) +
                    (settings_.cluster ? ",\"cluster_ranges\":" + std::to_string(slots().size())
                                       : std::string()));
  }
}

std::vector<SlotRange> RedisShared::slots() const {
  std::lock_guard lock(mu_);
  return slots_;
}

void RedisShared::set_slots(std::vector<SlotRange> slots) {
  std::lock_guard lock(mu_);
  slots_ = std::move(slots);
}

void RedisShared::success() {
  consecutive_failures_.store(0, std::memory_order_relaxed);
}

void RedisShared::probe_succeeded() {
  consecutive_failures_.store(0, std::memory_order_relaxed);
  if (open_.load(std::memory_order_acquire)) {
    bool expected = true;
    if (open_.compare_exchange_strong(expected, false)) {
      logs_.error(spdlog::level::warn, "rate limit store recovered",
                  "\"store\":" + json_string(settings_.url.redacted()));
    }
  }
}

void RedisShared::open_breaker(std::string_view detail) {
  open_until_.store(ticks(Clock::now() + settings_.breaker_cooldown), std::memory_order_relaxed);
  bool expected = false;
  if (open_.compare_exchange_strong(expected, true)) {
    logs_.error(
        spdlog::level::err, "rate limit store unavailable",
        fmt::format("\"store\":{},\"reason\":{},\"on_store_failure\":\"{}\"",
                    json_string(settings_.url.redacted()), json_string(detail), on_failure_));
  }
}

void RedisShared::failure(Failure kind, std::string_view detail) {
  errors_[static_cast<std::size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(mu_);
    last_error_ = fmt::format("{}: {}", failure_name(kind), detail);
  }
  if (consecutive_failures_.fetch_add(1, std::memory_order_relaxed) + 1 >=
      settings_.breaker_failures) {
    open_breaker(detail);
  }
}

bool RedisShared::probe_due(Clock::time_point now) const {
  return open_.load(std::memory_order_acquire) &&
         ticks(now) >= open_until_.load(std::memory_order_relaxed);
}

void RedisShared::probe_failed(std::string_view detail) {
  {
    std::lock_guard lock(mu_);
    last_error_ = std::string(detail);
  }
  open_until_.store(ticks(Clock::now() + settings_.breaker_cooldown), std::memory_order_relaxed);
}

std::string RedisShared::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

void RedisShared::render_metrics(std::string& out) const {
  auto it = std::back_inserter(out);
  fmt::format_to(
      it,
      "# HELP gatehouse_ratelimit_store_up Whether the shared rate-limit store (Redis) is in use "
      "(0: circuit breaker open, decisions fall back).\n"
      "# TYPE gatehouse_ratelimit_store_up gauge\n"
      "gatehouse_ratelimit_store_up {}\n"
      "# HELP gatehouse_ratelimit_store_calls_total Decisions answered by Redis.\n"
      "# TYPE gatehouse_ratelimit_store_calls_total counter\n"
      "gatehouse_ratelimit_store_calls_total {}\n"
      "# HELP gatehouse_ratelimit_store_errors_total Failed Redis calls by kind.\n"
      "# TYPE gatehouse_ratelimit_store_errors_total counter\n",
      up() ? 1 : 0, calls_.load(std::memory_order_relaxed));
  for (Failure f : {Failure::timeout, Failure::error, Failure::connect}) {
    fmt::format_to(it, "gatehouse_ratelimit_store_errors_total{{kind=\"{}\"}} {}\n",
                   failure_name(f),
                   errors_[static_cast<std::size_t>(f)].load(std::memory_order_relaxed));
  }
  fmt::format_to(
      it,
      "# HELP gatehouse_ratelimit_store_fallbacks_total Decisions made without Redis "
      "(on_store_failure).\n"
      "# TYPE gatehouse_ratelimit_store_fallbacks_total counter\n"
      "gatehouse_ratelimit_store_fallbacks_total {}\n"
      "# HELP gatehouse_ratelimit_store_script_loads_total Script loads (start-up and after "
      "NOSCRIPT).\n"
      "# TYPE gatehouse_ratelimit_store_script_loads_total counter\n"
      "gatehouse_ratelimit_store_script_loads_total {}\n"
      "# HELP gatehouse_ratelimit_store_redirects_total Redis Cluster MOVED/ASK redirections.\n"
      "# TYPE gatehouse_ratelimit_store_redirects_total counter\n"
      "gatehouse_ratelimit_store_redirects_total {}\n",
      fallbacks_.load(std::memory_order_relaxed), script_loads_.load(std::memory_order_relaxed),
      redirects_.load(std::memory_order_relaxed));
}

// ------------------------------------------------------------------------------------------------
// Connection: hiredis async context + Asio adapter

namespace {

// Suspends the calling coroutine until the holder of `slot` resumes it (complete(), run_batch()).
auto suspend_on(std::unique_ptr<Op::Resumer>& slot) {
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

// Resumes the waiting coroutine from the event loop, never from inside hiredis's callback.
void complete(Op& op, net::io_context& ioc) {
  op.done = true;
  if (op.resumer) {
    net::post(ioc, [r = std::move(op.resumer)] { r->resume(); });
  }
}

struct IgnoreOp final : Op {
  void on_reply(const redisReply*) override {}
};
thread_local IgnoreOp ignore_op;  // per worker thread: completing it writes `done`

}  // namespace

// AUTH and SELECT sent ahead of the first command of a new connection.
struct Connection::SetupOp final : Op {
  explicit SetupOp(Connection& c) : conn(c) {}
  void on_reply(const redisReply* r) override {
    // An AUTH/SELECT error is not counted here: the command queued behind it fails too (NOAUTH)
    // and its caller counts that one failure.
    (void)r;
  }
  Connection& conn;
};

struct Hooks {
  static Connection& of(void* p) { return *static_cast<Connection*>(p); }
  static void add_read(void* p) {
    auto& c = of(p);
    c.want_read_ = true;
    if (!c.read_armed_) {
      c.arm_read();
    }
  }
  static void del_read(void* p) { of(p).want_read_ = false; }
  static void add_write(void* p) {
    auto& c = of(p);
    c.want_write_ = true;
    bool connected = c.ac_ != nullptr && (c.ac_->c.flags & REDIS_CONNECTED) != 0;
    if (!connected || c.in_write_) {
      // Connecting, or the socket buffer is full: wait for writability.
      if (!c.write_armed_) {
        c.arm_write();
      }
      return;
    }
    // Connected: write at the end of this turn of the event loop, so that every command issued
    // meanwhile goes out in the same write (pipelining), without an epoll round trip.
    if (!c.flush_posted_) {
      c.flush_posted_ = true;
      net::post(c.client_.ioc(), [&c, gen = c.gen_] {
        if (gen != c.gen_) {
          return;
        }
        c.flush_posted_ = false;
        if (c.ac_ != nullptr && c.want_write_ && !c.write_armed_) {
          c.handle_write();
        }
      });
    }
  }
  static void del_write(void* p) { of(p).want_write_ = false; }
  // hiredis calls this whenever it frees the context: an error, a lost or refused connection
  // (without a disconnect callback when it never connected), or our own redisAsyncFree.
  static void cleanup(void* p) {
    auto& c = of(p);
    c.ac_ = nullptr;
    c.outstanding_.clear();
    c.want_read_ = c.want_write_ = false;
    if (c.sd_) {
      c.sd_->release();  // hiredis closes the descriptor
      c.sd_.reset();
    }
    ++c.gen_;
    c.read_armed_ = c.write_armed_ = c.flush_posted_ = c.in_write_ = false;
  }
  static void on_connect(const redisAsyncContext* ac, int status) {
    if (status != REDIS_OK) {
      auto& c = of(ac->data);
      c.failure_ = Failure::connect;
    }
  }
  static void on_disconnect(const redisAsyncContext* ac, int) {
    auto& c = of(ac->data);
    if (c.ac_ == ac) {
      c.ac_ = nullptr;
      c.outstanding_.clear();
    }
  }
  static void on_reply(redisAsyncContext* ac, void* r, void* priv) {
    auto& c = of(ac->data);
    if (!c.outstanding_.empty()) {
      c.outstanding_.pop_front();
    }
    auto* op = static_cast<Op*>(priv);
    auto* reply = static_cast<redisReply*>(r);
    if (reply == nullptr) {
      op->failure = c.failure_ != Failure::none ? c.failure_ : Failure::error;
    }
    op->on_reply(reply);
    complete(*op, c.client_.ioc());
  }
};

Connection::Connection(RedisClient& client, NodeAddress address)
    : client_(client), address_(std::move(address)), timer_(client.ioc()) {}

Connection::~Connection() {
  if (ac_ != nullptr) {
    failure_ = Failure::error;
    auto* ac = ac_;
    redisAsyncFree(ac);
    ac_ = nullptr;
  }
}

void Connection::arm_read() {
  if (!sd_) {
    return;
  }
  read_armed_ = true;
  sd_->async_wait(net::posix::descriptor_base::wait_read, [this, gen = gen_](error_code ec) {
    if (gen != gen_) {
      return;
    }
    read_armed_ = false;
    if (ec || ac_ == nullptr || !want_read_) {
      return;
    }
    redisAsyncHandleRead(ac_);  // may free the context (EOF, error): then gen_ has moved on
    if (gen == gen_ && ac_ != nullptr && want_read_ && !read_armed_) {
      arm_read();
    }
  });
}

void Connection::handle_write() {
  const auto gen = gen_;
  in_write_ = true;  // an addWrite from inside means the socket is full: wait for writability
  redisAsyncHandleWrite(ac_);  // may free the context: then gen_ has moved on
  if (gen == gen_) {
    in_write_ = false;
  }
}

void Connection::arm_write() {
  if (!sd_) {
    return;
  }
  write_armed_ = true;
  sd_->async_wait(net::posix::descriptor_base::wait_write, [this, gen = gen_](error_code ec) {
    if (gen != gen_) {
      return;
    }
    write_armed_ = false;
    if (ec || ac_ == nullptr || !want_write_) {
      return;
    }
    handle_write();
  });
}

bool Connection::ensure_connected() {
  if (ac_ != nullptr) {
    return true;
  }
  if (client_.closed()) {
    return false;
  }
  failure_ = Failure::none;
  redisAsyncContext* ac = redisAsyncConnect(address_.host.c_str(), address_.port);
  // Failures here are counted by the caller, once per failed call.
  if (ac == nullptr) {
    return false;
  }
  if (ac->err != 0) {
    redisAsyncFree(ac);
    return false;
  }
  ac_ = ac;
  ++gen_;
  ac->data = this;
  ac->ev.data = this;
  ac->ev.addRead = &Hooks::add_read;
  ac->ev.delRead = &Hooks::del_read;
  ac->ev.addWrite = &Hooks::add_write;
  ac->ev.delWrite = &Hooks::del_write;
  ac->ev.cleanup = &Hooks::cleanup;
  redisAsyncSetConnectCallback(ac, &Hooks::on_connect);
  redisAsyncSetDisconnectCallback(ac, &Hooks::on_disconnect);
  error_code ec;
  sd_.emplace(client_.ioc());
  sd_->assign(ac->c.fd, ec);
  if (ec) {
    sd_.reset();
    drop(Failure::connect);
    return false;
  }
  // Authentication and database first, pipelined with whatever follows.
  const auto& s = client_.shared().settings();
  if (!setup_op_) {
    setup_op_ = std::make_unique<SetupOp>(*this);
  }
  Command setup;
  if (!s.url.password.empty()) {
    setup.add("AUTH");
    if (!s.url.username.empty()) {
      setup.add(s.url.username);
    }
    setup.add(s.url.password);
    send(setup, *setup_op_);
  }
  if (s.url.db != 0 && !s.cluster) {
    setup.clear();
    setup.add("SELECT");
    setup.add(std::to_string(s.url.db));
    send(setup, *setup_op_);
  }
  return ac_ != nullptr;
}

void Connection::send(const Command& cmd, Op& op) {
  if (!ensure_connected()) {
    op.failure = Failure::connect;
    op.on_reply(nullptr);
    complete(op, client_.ioc());
    return;
  }
  // RESP written here in one pass into a reused buffer: hiredis's argv formatting costs an
  // allocation per argument.
  thread_local std::string resp;
  resp.clear();
  char num[24];
  auto append_len = [&](char kind, std::size_t n) {
    resp += kind;
    auto r = std::to_chars(num, num + sizeof num, n);
    resp.append(num, static_cast<std::size_t>(r.ptr - num));
    resp += "\r\n";
  };
  append_len('*', cmd.size());
  for (std::size_t i = 0; i < cmd.size(); ++i) {
    auto a = cmd.arg(i);
    append_len('$', a.size());
    resp += a;
    resp += "\r\n";
  }
  if (redisAsyncFormattedCommand(ac_, &Hooks::on_reply, &op, resp.data(), resp.size()) !=
      REDIS_OK) {
    op.failure = Failure::error;
    op.on_reply(nullptr);
    complete(op, client_.ioc());
    return;
  }
  outstanding_.push_back(Clock::now());
  arm_timer();
}

net::awaitable<void> Connection::call(const Command& cmd, Op& op) {
  op.done = false;
  op.failure = Failure::none;
  send(cmd, op);
  if (!op.done) {
    co_await suspend_on(op.resumer);
  }
}

void Connection::arm_timer() {
  if (timer_armed_ || outstanding_.empty()) {
    return;
  }
  timer_armed_ = true;
  timer_.expires_at(outstanding_.front() + client_.shared().settings().timeout);
  timer_.async_wait([this](error_code ec) {
    timer_armed_ = false;
    if (!ec) {
      on_timer();
    } else {
      arm_timer();  // cancelled by a drop: a newer connection may have calls to time
    }
  });
}

void Connection::on_timer() {
  if (ac_ == nullptr || outstanding_.empty()) {
    return;
  }
  if (Clock::now() - outstanding_.front() >= client_.shared().settings().timeout) {
    client_.shared().failure(
        Failure::timeout, fmt::format("{}:{}: no reply within {} ms", address_.host, address_.port,
                                      client_.shared().settings().timeout.count()));
    drop(Failure::timeout);
    return;
  }
  arm_timer();
}

void Connection::drop(Failure why) {
  if (ac_ == nullptr) {
    return;
  }
  failure_ = why;
  auto* ac = ac_;
  redisAsyncFree(ac);  // every pending op gets a null reply
  ac_ = nullptr;
  outstanding_.clear();
  timer_.cancel();
}

// ------------------------------------------------------------------------------------------------
// RedisClient

RedisClient::RedisClient(RedisShared& shared, net::io_context& ioc)
    : shared_(shared), ioc_(ioc), slot_node_(kSlots, kNoNode) {
  node_index(shared.seed());
  if (shared.settings().cluster) {
    apply_slots(shared.slots());
  }
}

RedisClient::~RedisClient() {
  close();
}

void RedisClient::close() {
  closed_ = true;
  for (auto& n : nodes_) {
    for (auto& c : n.conns) {
      c->close();
    }
  }
}

std::size_t RedisClient::node_index(const NodeAddress& address) {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].address == address) {
      return i;
    }
  }
  Node n;
  n.address = address;
  for (unsigned i = 0; i < shared_.settings().pool; ++i) {
    n.conns.push_back(std::make_unique<Connection>(*this, address));
  }
  nodes_.push_back(std::move(n));
  return nodes_.size() - 1;
}

Connection& RedisClient::connection(std::size_t node) {
  auto& n = nodes_[node];
  auto& c = *n.conns[n.next];
  n.next = (n.next + 1) % n.conns.size();
  return c;
}

void RedisClient::apply_slots(const std::vector<SlotRange>& slots) {
  for (const auto& r : slots) {
    auto idx = static_cast<std::uint16_t>(node_index(r.node));
    for (std::size_t s = r.first; s <= r.last; ++s) {
      slot_node_[s] = idx;
    }
  }
}

std::size_t RedisClient::node_for(std::string_view identity) {
  if (!shared_.settings().cluster) {
    return 0;
  }
  // The key's hash tag is the identity: hash "{identity}" the same way Redis does.
  std::string tagged = "{";
  tagged += identity;
  tagged += '}';
  auto node = slot_node_[key_slot(tagged)];
  return node == kNoNode ? 0 : node;
}

namespace {

struct DecideOp final : Op {
  DecideOp(StoreRequest& r, std::size_t f, std::size_t l) : req(r), first(f), last(l) {}
  void on_reply(const redisReply* reply) override {
    ok = reply != nullptr && parse_decide(reply, req, first, last, error);
  }
  StoreRequest& req;
  std::size_t first;
  std::size_t last;
  bool ok = false;
  std::string error;
};

struct SlotsOp final : Op {
  void on_reply(const redisReply* reply) override { ok = parse_cluster_slots(reply, slots); }
  std::vector<SlotRange> slots;
  bool ok = false;
};

struct PingOp final : Op {
  void on_reply(const redisReply* reply) override {
    ok = reply != nullptr && reply->type == REDIS_REPLY_STATUS;
    if (reply != nullptr && reply->type == REDIS_REPLY_ERROR) {
      error.assign(reply->str, reply->len);
    }
  }
  bool ok = false;
  std::string error;
};

}  // namespace

net::awaitable<void> RedisClient::refresh_slots() {
  if (refreshing_) {
    co_return;
  }
  refreshing_ = true;
  Command cmd;
  cmd.add("CLUSTER");
  cmd.add("SLOTS");
  // Any node that answers will do: after a failover the seed may be the one that died.
  for (std::size_t n = 0; n < nodes_.size(); ++n) {
    SlotsOp op;
    co_await connection(n).call(cmd, op);
    if (op.ok && !op.slots.empty()) {
      std::fill(slot_node_.begin(), slot_node_.end(), kNoNode);
      apply_slots(op.slots);
      break;
    }
  }
  refreshing_ = false;
}

net::awaitable<bool> RedisClient::decide_groups(StoreRequest& req, std::size_t first,
                                                std::size_t last, Failure& failure,
                                                std::string& detail) {
  const auto& s = shared_.settings();
  std::size_t node = node_for(req.groups[first].identity);
  bool with_body = false;
  bool asking = false;
  for (int attempt = 0; attempt <= kMaxRedirects; ++attempt) {
    DecideOp op(req, first, last);
    auto& conn = connection(node);
    if (asking) {
      Command ask;
      ask.add("ASKING");
      conn.send(ask, ignore_op);
    }
    build_decide(req, first, last, s.key_prefix, with_body, -1, cmd_);
    co_await conn.call(cmd_, op);
    if (op.ok) {
      co_return true;
    }
    if (op.failure != Failure::none) {
      failure = op.failure;
      detail = fmt::format("{}:{}: {}", conn.address().host, conn.address().port,
                           op.failure == Failure::timeout ? "timeout" : "connection failed");
      co_return false;
    }
    std::string_view err = op.error;
    if (err.starts_with("NOSCRIPT")) {
      shared_.count_script_load();
      with_body = true;  // EVAL caches the script again (after ASKING again when redirected)
      continue;
    }
    if (err.starts_with("TRYAGAIN")) {  // keys of the slot are being migrated: retry shortly
      net::steady_timer pause(ioc_, std::chrono::milliseconds(2));
      co_await pause.async_wait(nothrow);
      continue;
    }
    asking = false;
    std::uint16_t slot = 0;
    NodeAddress to;
    if ((err.starts_with("MOVED ") || err.starts_with("ASK ")) && parse_redirect(err, slot, to)) {
      shared_.count_redirect();
      auto target = node_index(to);
      if (err.starts_with("MOVED ")) {
        slot_node_[slot] = static_cast<std::uint16_t>(target);
        spawn(ioc_, refresh_slots(), shared_.logs(), "redis slot refresh");
      } else {
        asking = true;
      }
      node = target;
      continue;
    }
    failure = Failure::error;
    detail = std::string(err.substr(0, 200));
    co_return false;
  }
  failure = Failure::error;
  detail = "too many redirections";
  co_return false;
}

namespace {

struct BatchOp final : Op {
  explicit BatchOp(std::span<StoreRequest* const> r) : reqs(r) {}
  void on_reply(const redisReply* reply) override {
    if (reply == nullptr) {
      return;
    }
    std::size_t offset = 0;
    for (auto* req : reqs) {
      if (!parse_decide(reply, *req, 0, req->groups.size(), error, offset)) {
        return;
      }
    }
    ok = offset == reply->elements;
    if (!ok) {
      error = "unexpected reply to the decision script";
    }
  }
  std::span<StoreRequest* const> reqs;
  bool ok = false;
  std::string error;
};

}  // namespace

void RedisClient::start_batches() {
  batch_posted_ = false;
  while (!queue_.empty()) {
    std::size_t n = std::min(queue_.size(), kMaxBatch);
    std::vector<Waiter*> batch(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    spawn(ioc_, run_batch(std::move(batch)), shared_.logs(), "redis batch");
  }
}

net::awaitable<void> RedisClient::run_batch(std::vector<Waiter*> batch) {
  std::vector<StoreRequest*> reqs;
  reqs.reserve(batch.size());
  for (auto* w : batch) {
    w->req->all = true;
    w->req->banned_group = -1;
    w->req->new_bans = 0;
    reqs.push_back(w->req);
  }
  const auto& s = shared_.settings();
  bool ok = false;
  Failure failure = Failure::none;
  std::string detail;
  for (bool with_body : {false, true}) {
    filters::rate_limit::redis::DecideBatch b;
    b.start(s.key_prefix, -1);
    for (auto* r : reqs) {
      b.add(*r, 0, r->groups.size());
    }
    b.finish(with_body, cmd_);
    BatchOp op(reqs);
    auto& conn = connection(0);
    co_await conn.call(cmd_, op);
    if (op.ok) {
      ok = true;
      break;
    }
    if (op.failure != Failure::none) {
      failure = op.failure;
      detail = fmt::format("{}:{}: {}", conn.address().host, conn.address().port,
                           op.failure == Failure::timeout ? "timeout" : "connection failed");
      break;
    }
    if (op.error.starts_with("NOSCRIPT") && !with_body) {
      shared_.count_script_load();  // EVAL caches the script again
      continue;
    }
    failure = Failure::error;
    detail = op.error.substr(0, 200);
    break;
  }
  if (ok) {
    shared_.success();
  } else if (failure != Failure::timeout) {  // timeouts were counted by the connection
    shared_.failure(failure == Failure::connect ? Failure::connect : Failure::error, detail);
  }
  for (auto* w : batch) {
    w->ok = ok;
    if (w->resumer) {
      net::post(ioc_, [r = std::move(w->resumer)] { r->resume(); });
    }
  }
}

net::awaitable<bool> RedisClient::decide(StoreRequest& req) {
  if (!shared_.allow() || req.groups.empty() || closed_) {
    shared_.count_fallback();
    co_return false;
  }
  if (!shared_.settings().cluster) {
    Waiter w;
    w.req = &req;
    queue_.push_back(&w);
    if (!batch_posted_) {
      batch_posted_ = true;
      net::post(ioc_, [this] { start_batches(); });
    }
    co_await suspend_on(w.resumer);
    if (!w.ok) {
      shared_.count_fallback();
      co_return false;
    }
    shared_.count_call();
    co_return true;
  }
  req.all = true;
  req.banned_group = -1;
  req.new_bans = 0;
  Failure failure = Failure::none;
  std::string detail;
  // Redis Cluster: one call per group, each in its own slot.
  for (std::size_t first = 0; first < req.groups.size(); ++first) {
    if (!co_await decide_groups(req, first, first + 1, failure, detail)) {
      if (failure == Failure::connect || failure == Failure::timeout) {
        spawn(ioc_, refresh_slots(), shared_.logs(),
              "redis slot refresh");  // a master may have failed over
      }
      if (failure != Failure::timeout) {  // timeouts were counted by the connection
        shared_.failure(failure == Failure::connect ? Failure::connect : Failure::error, detail);
      }
      shared_.count_fallback();
      co_return false;
    }
    if (req.banned_group >= 0) {
      break;
    }
  }
  shared_.count_call();
  shared_.success();
  co_return true;
}

net::awaitable<bool> RedisClient::ping() {
  // With a cluster: a fresh slot map first, then every master must answer.
  if (shared_.settings().cluster) {
    co_await refresh_slots();
  }
  Command cmd;
  cmd.add("PING");
  for (auto node : masters()) {
    PingOp op;
    co_await connection(node).call(cmd, op);
    if (!op.ok) {
      shared_.probe_failed(op.failure == Failure::timeout ? "probe: timeout"
                           : op.error.empty()             ? "probe: connection failed"
                                                          : "probe: " + op.error);
      co_return false;
    }
  }
  shared_.probe_succeeded();
  co_return true;
}

// ------------------------------------------------------------------------------------------------
// Admin commands (off the hot path: replies are copied into a small tree)

struct RedisClient::Value {
  int type = 0;
  long long integer = 0;
  std::string str;
  std::vector<Value> elements;
  static void copy(const redisReply* r, Value& out) {
    out.type = r->type;
    out.integer = r->integer;
    if (r->str != nullptr) {
      out.str.assign(r->str, r->len);
    }
    out.elements.resize(r->type == REDIS_REPLY_ARRAY ? r->elements : 0);
    for (std::size_t i = 0; i < out.elements.size(); ++i) {
      copy(r->element[i], out.elements[i]);
    }
  }
};

namespace {
struct CopyOp final : Op {
  explicit CopyOp(void (*f)(const redisReply*, void*), void* o) : fn(f), out(o) {}
  void on_reply(const redisReply* reply) override {
    if (reply != nullptr) {
      ok = true;
      fn(reply, out);
    }
  }
  void (*fn)(const redisReply*, void*);
  void* out;
  bool ok = false;
};

std::string glob_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out;
}
}  // namespace

net::awaitable<bool> RedisClient::command(std::size_t node, const Command& cmd, Value& out) {
  CopyOp op([](const redisReply* r, void* o) { Value::copy(r, *static_cast<Value*>(o)); }, &out);
  co_await connection(node).call(cmd, op);
  co_return op.ok&& out.type != REDIS_REPLY_ERROR;
}

std::vector<std::size_t> RedisClient::masters() {
  if (!shared_.settings().cluster) {
    return {0};
  }
  std::vector<std::size_t> out;
  for (auto n : slot_node_) {
    if (n != kNoNode && std::find(out.begin(), out.end(), n) == out.end()) {
      out.push_back(n);
    }
  }
  if (out.empty()) {
    out.push_back(0);
  }
  return out;
}

net::awaitable<bool> RedisClient::list_bans(std::vector<ratelimit::BanInfo>& out,
                                            std::size_t limit) {
  const auto& prefix = shared_.settings().key_prefix;
  const std::string pattern = glob_escape(prefix) + "{*}:ban";
  if (shared_.settings().cluster) {
    co_await refresh_slots();
  }
  for (auto node : masters()) {
    std::string cursor = "0";
    do {
      Command scan;
      scan.add("SCAN");
      scan.add(cursor);
      scan.add("MATCH");
      scan.add(pattern);
      scan.add("COUNT");
      scan.add("1000");
      Value v;
      if (!co_await command(node, scan, v) || v.elements.size() != 2) {
        co_return false;
      }
      cursor = v.elements[0].str;
      for (const auto& key : v.elements[1].elements) {
        if (out.size() >= limit) {
          co_return true;
        }
        Command get;
        get.add("GET");
        get.add(key.str);
        Command pttl;
        pttl.add("PTTL");
        pttl.add(key.str);
        Value reason, ttl;
        if (!co_await command(node, get, reason) || !co_await command(node, pttl, ttl)) {
          co_return false;
        }
        if (ttl.integer <= 0) {
          continue;
        }
        // prefix{identity}:ban
        auto identity = std::string_view(key.str).substr(prefix.size() + 1);
        identity = identity.substr(0, identity.size() - 5);
        out.push_back(ratelimit::BanInfo{std::string(identity), reason.str,
                                         static_cast<ratelimit::Nanos>(ttl.integer) * 1'000'000});
      }
    } while (cursor != "0");
  }
  co_return true;
}

net::awaitable<std::optional<std::size_t>> RedisClient::lift_bans(
    std::optional<std::string> identity) {
  const auto& prefix = shared_.settings().key_prefix;
  std::vector<std::string> identities;
  if (identity) {
    if (shared_.settings().cluster) {
      co_await refresh_slots();
    }
    identities.push_back(*identity);
  } else {
    std::vector<ratelimit::BanInfo> all;
    if (!co_await list_bans(all, 1'000'000)) {
      co_return std::nullopt;
    }
    for (auto& b : all) {
      identities.push_back(std::move(b.key));
    }
  }
  std::size_t lifted = 0;
  for (const auto& id : identities) {
    std::string ban = filters::rate_limit::redis::ban_key(prefix, id);
    std::string rej = filters::rate_limit::redis::rejection_key(prefix, id);
    Command del;
    del.add("DEL");
    del.add(ban);
    Value v;
    if (!co_await command(node_for(id), del, v)) {
      co_return std::nullopt;
    }
    lifted += v.integer > 0 ? 1 : 0;
    del.clear();
    del.add("DEL");
    del.add(rej);  // the rejection count starts again too
    co_await command(node_for(id), del, v);
  }
  co_return lifted;
}

}  // namespace gatehouse::server::redis
