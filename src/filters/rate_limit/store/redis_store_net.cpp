#include "filters/rate_limit/store/redis_store_net.hpp"

#include <fmt/format.h>
#include <hiredis/hiredis.h>

#include <span>
#include <stdexcept>

#include "filters/rate_limit/store/redis_protocol.hpp"
#include "http/json.hpp"
#include "io/spawn.hpp"

namespace gatehouse::filters::rate_limit::store {
namespace {

using io::spawn;
using redis::Failure;
using redis::Op;

constexpr int kMaxRedirects = 4;

std::string json_string(std::string_view s) {
  std::string out;
  http::append_json_string(out, s);
  return out;
}

redis::Options client_options(const RedisSettings& s) {
  redis::Options o;
  o.url = s.url;
  o.timeout = s.timeout;
  o.pool = s.pool;
  o.cluster = s.cluster;
  o.breaker_failures = s.breaker_failures;
  o.breaker_cooldown = s.breaker_cooldown;
  o.name = "rate_limit.store " + s.url.redacted();
  return o;
}

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

// ------------------------------------------------------------------------------------------------
// RedisStore

RedisStore::RedisStore(const RedisSettings& settings, std::string on_failure,
                       observability::Logs& logs)
    : settings_(settings),
      on_failure_(std::move(on_failure)),
      logs_(logs),
      shared_(client_options(settings),
              redis::Events{
                  .prepare_node = [this](redis::SyncConnection& c) { return load_script(c); },
                  .connected = [this] { log_connected(); },
                  .unavailable = [this](std::string_view detail) { log_unavailable(detail); },
                  .recovered = [this] { log_recovered(); },
              },
              logs) {}

void RedisStore::log_connected() {
  logs_.error(
      spdlog::level::info, "rate limit store connected",
      "\"store\":" + json_string(settings_.url.redacted()) +
          (settings_.cluster ? ",\"cluster_ranges\":" + std::to_string(shared_.slots().size())
                             : std::string()));
}

void RedisStore::log_unavailable(std::string_view detail) {
  logs_.error(spdlog::level::err, "rate limit store unavailable",
              fmt::format("\"store\":{},\"reason\":{},\"on_store_failure\":\"{}\"",
                          json_string(settings_.url.redacted()), json_string(detail), on_failure_));
}

void RedisStore::log_recovered() {
  logs_.error(spdlog::level::warn, "rate limit store recovered",
              "\"store\":" + json_string(settings_.url.redacted()));
}

bool RedisStore::load_script(redis::SyncConnection& c) {
  const std::string what = "rate_limit.store " + settings_.url.redacted();
  auto r = c.command({"SCRIPT", "LOAD", std::string(script())});
  if (r.r == nullptr) {
    shared_.failure(Failure::timeout, c.errstr());
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
  return true;
}

void RedisStore::render_metrics(std::string& out) const {
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
                   redis::failure_name(f), shared_.errors(f));
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
      shared_.redirects());
}

// ------------------------------------------------------------------------------------------------
// RedisStoreClient

RedisStoreClient::RedisStoreClient(RedisStore& store, net::io_context& ioc)
    : store_(store), client_(store.shared(), ioc) {}

std::size_t RedisStoreClient::node_for(std::string_view identity) {
  if (!store_.settings().cluster) {
    return 0;
  }
  // The key's hash tag is the identity: hash "{identity}" the same way Redis does.
  std::string tagged = "{";
  tagged += identity;
  tagged += '}';
  return client_.node_for_key(tagged);
}

net::awaitable<bool> RedisStoreClient::decide_groups(StoreRequest& req, std::size_t first,
                                                     std::size_t last, Failure& failure,
                                                     std::string& detail) {
  const auto& s = store_.settings();
  std::size_t node = node_for(req.groups[first].identity);
  bool with_body = false;
  bool asking = false;
  for (int attempt = 0; attempt <= kMaxRedirects; ++attempt) {
    DecideOp op(req, first, last);
    auto& conn = client_.connection(node);
    if (asking) {
      conn.send_asking();
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
      store_.count_script_load();
      with_body = true;  // EVAL caches the script again (after ASKING again when redirected)
      continue;
    }
    if (err.starts_with("TRYAGAIN")) {  // keys of the slot are being migrated: retry shortly
      net::steady_timer pause(client_.ioc(), std::chrono::milliseconds(2));
      co_await pause.async_wait(io::nothrow);
      continue;
    }
    asking = false;
    if (client_.follow_redirect(err, node, asking)) {
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

void RedisStoreClient::start_batches() {
  batch_posted_ = false;
  while (!queue_.empty()) {
    std::size_t n = std::min(queue_.size(), kMaxBatch);
    std::vector<Waiter*> batch(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    spawn(client_.ioc(), run_batch(std::move(batch)), store_.shared().logs(), "redis batch");
  }
}

net::awaitable<void> RedisStoreClient::run_batch(std::vector<Waiter*> batch) {
  std::vector<StoreRequest*> reqs;
  reqs.reserve(batch.size());
  for (auto* w : batch) {
    w->req->all = true;
    w->req->banned_group = -1;
    w->req->new_bans = 0;
    reqs.push_back(w->req);
  }
  const auto& s = store_.settings();
  bool ok = false;
  Failure failure = Failure::none;
  std::string detail;
  for (bool with_body : {false, true}) {
    DecideBatch b;
    b.start(s.key_prefix, -1);
    for (auto* r : reqs) {
      b.add(*r, 0, r->groups.size());
    }
    b.finish(with_body, cmd_);
    BatchOp op(reqs);
    auto& conn = client_.connection(0);
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
      store_.count_script_load();  // EVAL caches the script again
      continue;
    }
    failure = Failure::error;
    detail = op.error.substr(0, 200);
    break;
  }
  if (ok) {
    store_.shared().success();
  } else if (failure != Failure::timeout) {  // timeouts were counted by the connection
    store_.shared().failure(failure == Failure::connect ? Failure::connect : Failure::error,
                            detail);
  }
  for (auto* w : batch) {
    w->ok = ok;
    if (w->resumer) {
      net::post(client_.ioc(), [r = std::move(w->resumer)] { r->resume(); });
    }
  }
}

net::awaitable<bool> RedisStoreClient::decide(StoreRequest& req) {
  if (!store_.shared().allow() || req.groups.empty() || client_.closed()) {
    store_.count_fallback();
    co_return false;
  }
  if (!store_.settings().cluster) {
    Waiter w;
    w.req = &req;
    queue_.push_back(&w);
    if (!batch_posted_) {
      batch_posted_ = true;
      net::post(client_.ioc(), [this] { start_batches(); });
    }
    co_await redis::suspend_on(w.resumer);
    if (!w.ok) {
      store_.count_fallback();
      co_return false;
    }
    store_.count_call();
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
        spawn(client_.ioc(), client_.refresh_slots(), store_.shared().logs(),
              "redis slot refresh");  // a master may have failed over
      }
      if (failure != Failure::timeout) {  // timeouts were counted by the connection
        store_.shared().failure(failure == Failure::connect ? Failure::connect : Failure::error,
                                detail);
      }
      store_.count_fallback();
      co_return false;
    }
    if (req.banned_group >= 0) {
      break;
    }
  }
  store_.count_call();
  store_.shared().success();
  co_return true;
}

net::awaitable<bool> RedisStoreClient::list_bans(std::vector<ratelimit::BanInfo>& out,
                                                 std::size_t limit) {
  const auto& prefix = store_.settings().key_prefix;
  const std::string pattern = glob_escape(prefix) + "{*}:ban";
  if (store_.settings().cluster) {
    co_await client_.refresh_slots();
  }
  for (auto node : client_.masters()) {
    std::string cursor = "0";
    do {
      redis::Command scan;
      scan.add("SCAN");
      scan.add(cursor);
      scan.add("MATCH");
      scan.add(pattern);
      scan.add("COUNT");
      scan.add("1000");
      redis::Client::Value v;
      if (!co_await client_.command(node, scan, v) || v.elements.size() != 2) {
        co_return false;
      }
      cursor = v.elements[0].str;
      for (const auto& key : v.elements[1].elements) {
        if (out.size() >= limit) {
          co_return true;
        }
        redis::Command get;
        get.add("GET");
        get.add(key.str);
        redis::Command pttl;
        pttl.add("PTTL");
        pttl.add(key.str);
        redis::Client::Value reason, ttl;
        if (!co_await client_.command(node, get, reason) ||
            !co_await client_.command(node, pttl, ttl)) {
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

net::awaitable<std::optional<std::size_t>> RedisStoreClient::lift_bans(
    std::optional<std::string> identity) {
  const auto& prefix = store_.settings().key_prefix;
  std::vector<std::string> identities;
  if (identity) {
    if (store_.settings().cluster) {
      co_await client_.refresh_slots();
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
    std::string ban = ban_key(prefix, id);
    std::string rej = rejection_key(prefix, id);
    redis::Command del;
    del.add("DEL");
    del.add(ban);
    redis::Client::Value v;
    if (!co_await client_.command(node_for(id), del, v)) {
      co_return std::nullopt;
    }
    lifted += v.integer > 0 ? 1 : 0;
    del.clear();
    del.add("DEL");
    del.add(rej);  // the rejection count starts again too
    co_await client_.command(node_for(id), del, v);
  }
  co_return lifted;
}

}  // namespace gatehouse::filters::rate_limit::store
