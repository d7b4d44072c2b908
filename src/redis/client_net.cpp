#include "redis/client_net.hpp"

#include <fmt/format.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "io/spawn.hpp"

namespace gatehouse::redis {
namespace {

constexpr std::uint16_t kNoNode = 0xffff;

std::int64_t ticks(Clock::time_point t) {
  return t.time_since_epoch().count();
}

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

// ------------------------------------------------------------------------------------------------
// Blocking connection (start-up)

SyncReply::~SyncReply() {
  if (r != nullptr) {
    freeReplyObject(r);
  }
}

bool SyncReply::is_error() const {
  return r != nullptr && r->type == REDIS_REPLY_ERROR;
}

std::string SyncReply::text() const {
  return r != nullptr && r->str != nullptr ? std::string(r->str, r->len) : "";
}

SyncReply SyncConnection::command(const std::vector<std::string>& args) {
  return sync_command(c_, args);
}

const char* SyncConnection::errstr() const {
  return c_->errstr;
}

// ------------------------------------------------------------------------------------------------
// Shared

Shared::Shared(Options options, Events events, observability::Logs& logs)
    : options_(std::move(options)), events_(std::move(events)), logs_(logs) {
  for (auto& e : errors_) {
    e.store(0);
  }
}

void Shared::start_up() {
  const std::string& what = options_.name;
  seed_ = NodeAddress{resolve(options_.url.host, options_.url.port, what), options_.url.port};
  auto tv_ms = std::max<long>(options_.timeout.count(), 1000);  // start-up is not latency-bound
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
    if (!options_.url.password.empty()) {
      std::vector<std::string> auth{"AUTH"};
      if (!options_.url.username.empty()) {
        auth.push_back(options_.url.username);
      }
      auth.push_back(options_.url.password);
      auto r = sync_command(c, auth);
      if (r.r == nullptr) {
        failure(Failure::timeout, c->errstr);
        return false;
      }
      if (r.is_error()) {
        throw std::runtime_error(what + ": authentication failed: " + r.text());
      }
    }
    if (select && options_.url.db != 0) {
      auto r = sync_command(c, {"SELECT", std::to_string(options_.url.db)});
      if (r.r == nullptr) {
        failure(Failure::timeout, c->errstr);
        return false;
      }
      if (r.is_error()) {
        throw std::runtime_error(what + ": cannot select database " +
                                 std::to_string(options_.url.db) + ": " + r.text());
      }
    }
    if (events_.prepare_node) {
      SyncConnection conn(c);
      if (!events_.prepare_node(conn)) {
        return false;
      }
    }
    if (options_.cluster && node == seed_) {
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
  if (ok && options_.cluster) {
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
  } else if (events_.connected) {
    events_.connected();
  }
}

std::vector<SlotRange> Shared::slots() const {
  std::lock_guard lock(mu_);
  return slots_;
}

void Shared::set_slots(std::vector<SlotRange> slots) {
  std::lock_guard lock(mu_);
  slots_ = std::move(slots);
}

void Shared::success() {
  consecutive_failures_.store(0, std::memory_order_relaxed);
}

void Shared::probe_succeeded() {
  consecutive_failures_.store(0, std::memory_order_relaxed);
  if (open_.load(std::memory_order_acquire)) {
    bool expected = true;
    if (open_.compare_exchange_strong(expected, false)) {
      if (events_.recovered) {
        events_.recovered();
      }
    }
  }
}

void Shared::open_breaker(std::string_view detail) {
  open_until_.store(ticks(Clock::now() + options_.breaker_cooldown), std::memory_order_relaxed);
  bool expected = false;
  if (open_.compare_exchange_strong(expected, true)) {
    if (events_.unavailable) {
      events_.unavailable(detail);
    }
  }
}

void Shared::failure(Failure kind, std::string_view detail) {
  errors_[static_cast<std::size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(mu_);
    last_error_ = fmt::format("{}: {}", failure_name(kind), detail);
  }
  if (consecutive_failures_.fetch_add(1, std::memory_order_relaxed) + 1 >=
      options_.breaker_failures) {
    open_breaker(detail);
  }
}

bool Shared::probe_due(Clock::time_point now) const {
  return open_.load(std::memory_order_acquire) &&
         ticks(now) >= open_until_.load(std::memory_order_relaxed);
}

void Shared::probe_failed(std::string_view detail) {
  {
    std::lock_guard lock(mu_);
    last_error_ = std::string(detail);
  }
  open_until_.store(ticks(Clock::now() + options_.breaker_cooldown), std::memory_order_relaxed);
}

std::string Shared::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

// ------------------------------------------------------------------------------------------------
// Connection: hiredis async context + Asio adapter

namespace {

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

Connection::Connection(Client& client, NodeAddress address)
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
  const auto& s = client_.shared().options();
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

void Connection::send_asking() {
  Command ask;
  ask.add("ASKING");
  send(ask, ignore_op);
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
  timer_.expires_at(outstanding_.front() + client_.shared().options().timeout);
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
  if (Clock::now() - outstanding_.front() >= client_.shared().options().timeout) {
    client_.shared().failure(
        Failure::timeout, fmt::format("{}:{}: no reply within {} ms", address_.host, address_.port,
                                      client_.shared().options().timeout.count()));
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
// Client

Client::Client(Shared& shared, net::io_context& ioc)
    : shared_(shared), ioc_(ioc), slot_node_(kSlots, kNoNode) {
  node_index(shared.seed());
  if (shared.options().cluster) {
    apply_slots(shared.slots());
  }
}

Client::~Client() {
  close();
}

void Client::close() {
  closed_ = true;
  for (auto& n : nodes_) {
    for (auto& c : n.conns) {
      c->close();
    }
  }
}

std::size_t Client::node_index(const NodeAddress& address) {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].address == address) {
      return i;
    }
  }
  Node n;
  n.address = address;
  for (unsigned i = 0; i < shared_.options().pool; ++i) {
    n.conns.push_back(std::make_unique<Connection>(*this, address));
  }
  nodes_.push_back(std::move(n));
  return nodes_.size() - 1;
}

Connection& Client::connection(std::size_t node) {
  auto& n = nodes_[node];
  auto& c = *n.conns[n.next];
  n.next = (n.next + 1) % n.conns.size();
  return c;
}

void Client::apply_slots(const std::vector<SlotRange>& slots) {
  for (const auto& r : slots) {
    auto idx = static_cast<std::uint16_t>(node_index(r.node));
    for (std::size_t s = r.first; s <= r.last; ++s) {
      slot_node_[s] = idx;
    }
  }
}

std::size_t Client::node_for_key(std::string_view key) {
  if (!shared_.options().cluster) {
    return 0;
  }
  auto node = slot_node_[key_slot(key)];
  return node == kNoNode ? 0 : node;
}

namespace {

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

void copy_value(const redisReply* r, Client::Value& out) {
  out.type = r->type;
  out.integer = r->integer;
  if (r->str != nullptr) {
    out.str.assign(r->str, r->len);
  }
  out.elements.resize(r->type == REDIS_REPLY_ARRAY ? r->elements : 0);
  for (std::size_t i = 0; i < out.elements.size(); ++i) {
    copy_value(r->element[i], out.elements[i]);
  }
}

struct CopyOp final : Op {
  explicit CopyOp(Client::Value& o) : out(o) {}
  void on_reply(const redisReply* reply) override {
    if (reply != nullptr) {
      ok = true;
      copy_value(reply, out);
    }
  }
  Client::Value& out;
  bool ok = false;
};

}  // namespace

net::awaitable<bool> Client::command(std::size_t node, const Command& cmd, Value& out) {
  CopyOp op(out);
  co_await connection(node).call(cmd, op);
  co_return op.ok&& out.type != REDIS_REPLY_ERROR;
}

std::vector<std::size_t> Client::masters() {
  if (!shared_.options().cluster) {
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

net::awaitable<void> Client::refresh_slots() {
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

bool Client::follow_redirect(std::string_view error, std::size_t& node, bool& asking) {
  std::uint16_t slot = 0;
  NodeAddress to;
  const bool moved = error.starts_with("MOVED ");
  if (!(moved || error.starts_with("ASK ")) || !parse_redirect(error, slot, to)) {
    return false;
  }
  shared_.count_redirect();
  auto target = node_index(to);
  if (moved) {
    slot_node_[slot] = static_cast<std::uint16_t>(target);
    spawn(ioc_, refresh_slots(), shared_.logs(), "redis slot refresh");
  }
  asking = !moved;
  node = target;
  return true;
}

net::awaitable<bool> Client::ping() {
  // With a cluster: a fresh slot map first, then every master must answer.
  if (shared_.options().cluster) {
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

}  // namespace gatehouse::redis
