#include "upstream/cluster.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "http/json.hpp"

namespace gatehouse::upstream {

using namespace io;  // NOLINT(google-build-using-namespace)
namespace net = io::net;

Connection::~Connection() {
  if (load) {
    if (in_use) {
      --load->active[target];
    }
    --load->open;
    if (load->owner != nullptr) {
      load->owner->connection_closed();
    }
  }
}

Cluster::Cluster(net::any_io_executor ex, DeadlineList& deadlines, std::size_t index,
                 const config::Upstream& cfg, std::vector<tcp::endpoint> targets,
                 observability::UpstreamStats& stats, observability::Health& health,
                 observability::Logs& logs, std::unique_ptr<LoadBalancer> balancer)
    : ex_(std::move(ex)),
      deadlines_(deadlines),
      index_(index),
      cfg_(cfg),
      targets_(std::move(targets)),
      load_(std::make_shared<Load>(targets_.size())),
      balancer_(balancer ? std::move(balancer) : make_balancer(cfg.balance, load_->active)),
      pool_(deadlines, cfg, targets_.size(), stats.idle),
      stats_(stats),
      logs_(logs),
      retry_policy_(cfg.retry),
      retry_budget_(cfg.retry.budget_percent, cfg.retry.budget_floor, Clock::now()),
      rng_(std::random_device{}()) {
  load_->owner = this;
  for (const auto& t : cfg_.targets) {
    addresses_.push_back(t.to_string());
  }
  // Re-resolved upstreams have more slots than config targets: follow() fills them.
  addresses_.resize(targets_.size());
  for (std::size_t t = 0; t < targets_.size(); ++t) {
    health_.push_back(&health.target(index_, t));
  }
  balancer_->set_addresses(addresses_);
}

void Cluster::follow(const TargetSlots* slots) {
  slots_ = slots;
  if (slots_ == nullptr) {
    return;
  }
  // Slots are not config targets: every one is taken from the view.
  addresses_.assign(targets_.size(), {});
  generations_.assign(targets_.size(), static_cast<std::uint32_t>(-1));
  refresh();
}

// Another worker, a request or the admin thread may not have seen the change yet; each goes by
// its own copy, and TargetHealth::kRetired keeps every balancer off a slot without an address.
void Cluster::refresh() {
  seen_version_ = slots_->version();
  const auto view = slots_->view();
  bool changed = false;
  for (std::size_t t = 0; t < targets_.size() && t < view->generations.size(); ++t) {
    if (view->generations[t] == generations_[t]) {
      continue;
    }
    changed = true;
    generations_[t] = view->generations[t];
    targets_[t] = view->endpoints[t];
    addresses_[t] = view->addresses[t];
    // Idle connections to the address the slot held go; those in use finish their request and
    // are closed on release (their generation is older).
    pool_.drop(t);
  }
  if (changed) {
    balancer_->set_addresses(addresses_);
  }
}

Cluster::~Cluster() {
  // Connections still in requests' frames die after the cluster: they only count themselves out.
  load_->owner = nullptr;
}

bool Cluster::must_queue() const {
  return queued_ != 0 || waking_ != 0 || (!slot_free() && pool_.idle_total() == 0);
}

bool Cluster::reserve_slot(bool& held) {
  if (held) {
    return true;
  }
  if (slot_free()) {
    ++load_->open;
    held = true;
    return true;
  }
  if (auto victim = pool_.evict_one()) {
    victim->load.reset();  // closed quietly: its place is handed over, not freed
    held = true;
    return true;
  }
  return false;
}

void Cluster::unreserve_slot(bool& held) {
  if (held) {
    held = false;
    --load_->open;
    wake_one();
  }
}

void Cluster::release(std::unique_ptr<Connection> conn) {
  if (conn->load && conn->in_use) {
    conn->in_use = false;
    --load_->active[conn->target];
  }
  if (slots_ != nullptr && conn->generation != generations_[conn->target]) {
    return;  // its slot holds another address now (or none): closed, not pooled
  }
  const std::size_t open = load_->open;
  pool_.release(std::move(conn), Clock::now());
  if (load_->open == open) {
    wake_one();  // kept idle: a queued request may reuse it (a closed one woke it already)
  }
}

void Cluster::wake_one() {
  if (waiters_.empty()) {
    return;
  }
  auto& w = waiters_.front();
  dequeue(w);
  w.woken = true;
  ++waking_;
  w.timer->cancel();
}

void Cluster::pass_on_wake() {
  if (!waiters_.empty() && waking_ == 0 && (slot_free() || pool_.idle_total() != 0)) {
    wake_one();
  }
}

bool Cluster::has_other_target(std::uint64_t excluded) const {
  for (std::size_t t = 0; t < health_.size(); ++t) {
    if ((excluded & target_bit(t)) == 0 && !health_[t]->out() && !slot_empty(t)) {
      return true;
    }
  }
  return false;
}

void Cluster::dequeue(Waiter& w) {
  if (w.is_linked()) {
    w.unlink();
    --queued_;
    stats_.queued.add(-1);
  }
}

namespace {

// The queued request's watch on its client: readable with nothing to read means EOF or a reset.
// Bytes (a request body, a pipelined request) say nothing, and stop the watch.
struct ClientWatch {
  net::steady_timer* timer;  // null once the wait is over
  bool gone = false;
};

bool peer_closed(tcp::socket& s) {
  char probe;
  ssize_t n = ::recv(s.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

}  // namespace

net::awaitable<Cluster::Queued> Cluster::wait_in_queue(tcp::socket* client) {
  if (queued_ >= cfg_.max_queued) {
    co_return Queued::full;
  }
  net::steady_timer timer(ex_);
  const auto deadline = Clock::now() + cfg_.queue_timeout;
  Waiter me;
  me.timer = &timer;
  std::shared_ptr<ClientWatch> watch;
  if (client != nullptr) {
    watch = std::make_shared<ClientWatch>(ClientWatch{&timer});
    client->async_wait(tcp::socket::wait_read, [watch, client](error_code ec) {
      if (watch->timer == nullptr || ec) {
        return;
      }
      if (peer_closed(*client)) {
        watch->gone = true;
        watch->timer->cancel();
      }
    });
  }
  Queued out = Queued::timed_out;
  bool front = false;  // woken but beaten to the connection: first in line again
  for (;;) {
    if (front) {
      waiters_.push_front(me);
    } else {
      waiters_.push_back(me);
    }
    ++queued_;
    stats_.queued.add(1);
    timer.expires_at(deadline);
    co_await timer.async_wait(nothrow);
    dequeue(me);
    const bool gone = watch && watch->gone;
    if (me.woken) {
      me.woken = false;
      --waking_;
      if (gone) {
        wake_one();  // what was freed goes to the next in line
        out = Queued::client_gone;
        break;
      }
      if (slot_free() || pool_.idle_total() != 0) {
        out = Queued::go;
        break;
      }
      front = true;
      continue;
    }
    if (gone) {
      out = Queued::client_gone;
      pass_on_wake();
      break;
    }
    if (Clock::now() >= deadline) {
      out = Queued::timed_out;
      pass_on_wake();  // a place freed while this one waited out its time goes to the next
      break;
    }
    front = true;  // woken by something else: back in place
  }
  if (watch) {
    watch->timer = nullptr;
    error_code ignore;
    client->cancel(ignore);  // the watch's handler runs later and sees the wait is over
  }
  co_return out;
}

net::awaitable<Acquired> Cluster::acquire(bool fresh, std::string_view request_id,
                                          std::size_t avoid, std::uint64_t never, Pick pick) {
  Acquired failure{nullptr, 502, {}};
  refresh_if_changed();
  // An upstream whose every target is out answers at once (below) rather than after a wait.
  if (cfg_.max_connections != 0 && must_queue() && !(shared_ != nullptr && shared_->all_out())) {
    auto queued = co_await wait_in_queue(pick.client);
    if (queued == Queued::client_gone) {
      co_return Acquired{nullptr, 0, "client closed the connection while queued", true};
    }
    if (queued != Queued::go) {
      stats_.busy.add();
      co_return Acquired{
          nullptr, 503,
          "upstream " + cfg_.name + " busy: max_connections reached, " +
              (queued == Queued::full ? "the queue is full" : "queue_timeout passed"),
          false};
    }
  }
  Walk walk;
  walk.key = pick.key;
  walk.avoid = avoid;
  bool held = false;  // a place under max_connections, kept across failed connects
  bool tried = false;
  while (auto candidate = balancer_->next(walk, health_)) {
    const std::size_t t = candidate->target;
    // Out (unhealthy, ejected or retired) means no request at all, whichever balancer offered
    // it; a target in `never` answered this request 429 already. A connect attempt may have
    // taken a while: a slot may have changed meanwhile.
    refresh_if_changed();
    if ((never & target_bit(t)) != 0 || health_[t]->out() || slot_empty(t)) {
      continue;
    }
    tried = true;
    auto* ts = stats_.target(t);
    if (!fresh) {
      if (auto c = pool_.take(t, Clock::now())) {
        unreserve_slot(held);
        if (c->load) {
          c->in_use = true;
          ++load_->active[t];
        }
        if (ts != nullptr) {
          ts->requests.add();
        }
        co_return Acquired{std::move(c), 0, {}};
      }
    }
    if (!reserve_slot(held)) {
      break;  // cannot happen after must_queue() said no; fail safe rather than exceed the cap
    }
    auto c = std::make_unique<Connection>(ex_);
    c->target = t;
    c->generation = slots_ != nullptr ? generations_[t] : 0;
    c->load = load_;  // the reserved place is the connection's now
    c->in_use = true;
    ++load_->active[t];
    held = false;
    deadlines_.push_back(c->deadline);
    c->deadline.arm(cfg_.connect_timeout);
    auto [ec] = co_await c->socket.async_connect(targets_[t], nothrow);
    bool timed_out = c->deadline.expired();
    c->deadline.disarm();
    if (!ec) {
      error_code ignore;
      c->socket.set_option(tcp::no_delay(true), ignore);
      // Reads are tried without waiting first (see relay_response: a head with no body behind it
      // yet is sent at once).
      c->socket.non_blocking(true, ignore);
      stats_.opened.add();
      if (ts != nullptr) {
        ts->requests.add();
      }
      connect_succeeded(*candidate);
      co_return Acquired{std::move(c), 0, {}};
    }
    // The place goes back to this acquire for the next candidate.
    --load_->active[t];
    c->in_use = false;
    c->load.reset();
    held = true;
    std::string what = timed_out ? "connect timed out" : ec.message();
    (timed_out ? stats_.timeouts : stats_.connect_errors).add();
    if (ts != nullptr) {
      ts->errors.add();
    }
    connect_failed(t, what, request_id);
    failure.status = timed_out ? 504 : 502;
    failure.detail = "connect to " + addresses_[t] + ": " + what;
  }
  unreserve_slot(held);
  pass_on_wake();  // nothing taken here: what woke this request goes to the next in line
  if (!tried) {
    // Every target is out (or answered this request 429): answer at once rather than connect to
    // targets known to be dead. No connect was tried, so nothing is reported as a failure.
    failure.status = 503;
    failure.unavailable = true;
    failure.retry_after_s =
        shared_ != nullptr ? shared_->unavailable_retry_after_s(Clock::now()) : 1;
    failure.detail = never != 0
                         ? "no target of upstream " + cfg_.name + " is left for this request"
                         : "every target of upstream " + cfg_.name + " is unhealthy or ejected";
    if (shared_ != nullptr) {
      shared_->unavailable.fetch_add(1, std::memory_order_relaxed);
    }
  }
  co_return failure;
}

void Cluster::connect_succeeded(const Candidate& c) {
  if (!c.reachable) {
    health_[c.target]->report(true);
  }
}

void Cluster::connect_failed(std::size_t t, std::string_view what, std::string_view request_id) {
  health_[t]->report(false, what);
  if (shared_ != nullptr) {
    shared_->connect_failed(t, Clock::now(), request_id);
  }
  if (logs_.should_log(spdlog::level::warn)) {
    std::string extra = "\"request_id\":";
    ghttp::append_json_string(extra, request_id);
    extra += ",\"upstream\":";
    ghttp::append_json_string(extra, cfg_.name);
    extra += ",\"target\":";
    ghttp::append_json_string(extra, addresses_[t]);
    extra += ",\"error\":";
    ghttp::append_json_string(extra, what);
    logs_.error(spdlog::level::warn, "upstream connect failed", extra);
  }
}

}  // namespace gatehouse::upstream
