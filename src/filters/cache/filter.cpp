#include "filters/cache/filter.hpp"

#include <openssl/evp.h>

#include <mutex>
#include <optional>

#include "filters/cache/policy.hpp"
#include "http/canonical_path.hpp"
#include "io/net.hpp"

namespace gatehouse::filters::cache {
namespace {

namespace net = io::net;

// Key parts longer than this are replaced by their SHA-256: keys stay bounded whatever the
// request carries (a 10 MB prompt is a 33-byte key part).
constexpr std::size_t kMaxInlinePart = 128;

void append_part(std::string& out, std::string_view v) {
  if (v.size() <= kMaxInlinePart) {
    out += v;
  } else {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(v.data(), v.size(), digest, &n, EVP_sha256(), nullptr);
    out += '#';
    out.append(reinterpret_cast<const char*>(digest), n);
  }
  out += '\x1f';
}

}  // namespace

// A waiter's rendezvous with the fill it waits for, which may end on another worker's thread: the
// waker records the entry and, once the waiter sleeps, posts the wake-up to the waiter's executor.
struct Rendezvous {
  std::mutex mu;
  bool done = false;
  std::shared_ptr<const Entry> entry;
  std::optional<net::steady_timer> timer;  // set by the waiter, on its thread, under mu
};

CacheFilter::CacheFilter(CacheFilter&&) noexcept = default;
CacheFilter& CacheFilter::operator=(CacheFilter&&) noexcept = default;
CacheFilter::~CacheFilter() = default;

bool CacheFilter::wants_body(const pipeline::Context&) const {
  return state_ && state_->capturing;
}

pipeline::Next CacheFilter::look_up(pipeline::Context& ctx) {
  const RouteCache* rc = route_cache(*ctx.route_config);
  if (rc == nullptr) {
    return pipeline::Next::Continue;
  }
  state_ = std::make_unique<State>();
  State& st = *state_;
  st.route = rc;
  auto& counters = store_->counters(worker_);
  auto bypass = [&] {
    st.verdict = "BYPASS";
    ctx.cache = st.verdict;
    Counters::add(counters.bypass);
    return pipeline::Next::Continue;
  };
  const bool get = ctx.method == "GET" || ctx.head_request;
  const bool keyed_body = rc->keys_body();
  if (!get && !(keyed_body && ctx.method == "POST")) {
    return bypass();
  }
  if (keyed_body && ctx.body_pending && ctx.buffered_body.empty()) {
    return bypass();  // a body that did not come with the head (chunked, large): not keyed
  }
  // Another user's answer must never be served to a request that authenticates, unless the key
  // tells the users apart.
  if (!ctx.header("Authorization").empty() && !rc->keys_header("Authorization")) {
    return bypass();
  }
  const bool revalidate = rc->allow_client_bypass &&
                          request_no_cache(ctx.header("Cache-Control"), ctx.header("Pragma"));

  std::string parts;
  for (const auto& p : rc->key) {
    switch (p.kind) {
      case KeyPart::Kind::method:
        append_part(parts, ctx.head_request ? std::string_view("GET") : ctx.method);
        break;
      case KeyPart::Kind::path:
        break;  // the canonical path leads every key
      case KeyPart::Kind::query: {
        auto path = ::gatehouse::http::target_path(ctx.target);
        append_part(parts, ctx.target.substr(path.size()));
        break;
      }
      case KeyPart::Kind::body:
        append_part(parts, ctx.buffered_body);
        break;
      case KeyPart::Kind::header:
        append_part(parts, ctx.header(p.header));
        break;
    }
  }
  Key key(ctx.path, parts);
  auto rendezvous = std::make_shared<Rendezvous>();
  Waker waker = [rendezvous](std::shared_ptr<const Entry> e) {
    std::lock_guard lock(rendezvous->mu);
    rendezvous->done = true;
    rendezvous->entry = std::move(e);
    if (rendezvous->timer) {
      // The waiter sleeps on its own worker: wake it there.
      net::post(rendezvous->timer->get_executor(), [rendezvous] { rendezvous->timer->cancel(); });
    }
  };
  auto header = [&ctx](std::string_view name) { return ctx.header(name); };
  auto found =
      store_->lookup(key, header, pipeline::Clock::now(), rc->max_waiters, waker, revalidate);
  switch (found.outcome) {
    case Store::Outcome::hit:
      Counters::add(counters.hits);
      return reply_from(ctx, std::move(found.entry), "HIT");
    case Store::Outcome::stale:
      // Served at once; the background refresh (found.fill) is not run by this build: the entry
      // is refilled by the first miss after stale_while_revalidate (docs/configuration.md).
      Counters::add(counters.stale);
      return reply_from(ctx, std::move(found.entry), "STALE");
    case Store::Outcome::waiting:
      st.expired = std::move(found.entry);
      st.wait = std::move(rendezvous);
      return pipeline::Next::Suspend;
    case Store::Outcome::bypass:
      st.expired = std::move(found.entry);
      return bypass();
    case Store::Outcome::fill:
      break;
  }
  st.expired = std::move(found.entry);
  st.fill = std::move(found.fill);
  st.verdict = "MISS";
  ctx.cache = st.verdict;
  Counters::add(counters.misses);
  return pipeline::Next::Continue;
}

pipeline::net::awaitable<pipeline::Next> CacheFilter::resume(pipeline::Context& ctx) {
  State& st = *state_;
  auto rendezvous = st.wait;
  auto executor = co_await net::this_coro::executor;
  bool sleep = false;
  {
    std::lock_guard lock(rendezvous->mu);
    if (!rendezvous->done) {
      // Bounded by the route's deadline, else the upstream's response timeout.
      auto bound = ctx.route_config->timeout.count() > 0
                       ? ctx.route_config->timeout
                       : cfg_->upstreams[ctx.route_config->upstream_index].timeout;
      rendezvous->timer.emplace(executor, bound);
      sleep = true;
    }
  }
  if (sleep) {
    co_await rendezvous->timer->async_wait(io::nothrow);
  }
  std::shared_ptr<const Entry> entry;
  {
    std::lock_guard lock(rendezvous->mu);
    entry = rendezvous->entry;
  }
  if (entry) {
    auto& counters = store_->counters(worker_);
    Counters::add(counters.coalesced);
    Counters::add(counters.hits);
    co_return reply_from(ctx, std::move(entry), "HIT");
  }
  // The fill stored nothing (streamed, too large, failed) or took too long: go upstream now.
  st.verdict = "BYPASS";
  ctx.cache = st.verdict;
  Counters::add(store_->counters(worker_).bypass);
  co_return pipeline::Next::Continue;
}

pipeline::Next CacheFilter::reply_from(pipeline::Context& ctx, std::shared_ptr<const Entry> entry,
                                       const char* verdict) {
  State& st = *state_;
  st.verdict = verdict;
  ctx.cache = verdict;
  auto& r = ctx.reply;
  r.status = entry->status;
  r.body.clear();
  r.headers.clear();
  r.stored_lines = entry->lines;
  r.stored_body = entry->body;
  r.head_only = ctx.head_request || entry->status == 204 || entry->status == 304;
  // A body the session has not read closes the connection, unless it came with the head (then
  // the session drops it from the buffer).
  r.close = r.close || (ctx.body_pending && ctx.buffered_body.empty());
  r.error = false;
  st.served = entry;
  r.stored_owner = std::move(entry);
  return pipeline::Next::Reply;
}

bool CacheFilter::stale_on_error(pipeline::Context& ctx) {
  if (!state_ || !state_->expired || state_->route->stale_if_error.count() <= 0) {
    return false;
  }
  const auto status = ctx.reply.status;
  if (status != 502 && status != 503 && status != 504) {
    return false;
  }
  const auto& e = state_->expired;
  if (pipeline::Clock::now() >= e->fresh_until + state_->route->stale_if_error) {
    return false;
  }
  Counters::add(store_->counters(worker_).stale);
  const bool close = ctx.reply.close;
  reply_from(ctx, e, "STALE");
  ctx.reply.close = close;
  return true;
}

void CacheFilter::on_head(pipeline::Context& ctx, pipeline::ResponseHead& head) {
  State& st = *state_;
  const auto& name = settings(*cfg_).header;
  if (head.local()) {
    if (st.served) {
      head.lines += "Age: ";
      head.lines += std::to_string(st.served->age(pipeline::Clock::now()));
      head.lines += "\r\n";
    }
    st.fill.abandon();  // an error of ours: nothing to store, the waiters go upstream
  } else if (st.fill) {
    const auto& res = *head.upstream;
    auto field = [&](std::string_view n) {
      auto v = res[io::beast::string_view(n.data(), n.size())];
      return std::string_view(v.data(), v.size());
    };
    ResponseFacts facts;
    facts.status = head.status;
    facts.cache_control = field("Cache-Control");
    facts.set_cookie = res.find("Set-Cookie") != res.end();
    auto vary_names = parse_vary(field("Vary"), facts.vary_star);
    auto length = field("Content-Length");
    if (!length.empty() && res.find("Transfer-Encoding") == res.end()) {
      std::uint64_t n = 0;
      bool ok = true;
      for (char c : length) {
        ok = ok && c >= '0' && c <= '9';
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
      }
      if (ok && length.size() < 19) {
        facts.content_length = n;
      }
    }
    facts.content_type = field("Content-Type");
    facts.head_request = ctx.head_request;
    auto decision = decide(*st.route, settings(*cfg_).max_object, facts);
    if (decision.refusal != Refusal::none) {
      Counters::add(store_->counters(worker_).not_stored);
      st.fill.abandon();  // released at once: they go upstream themselves
    } else {
      auto e = std::make_shared<Entry>();
      auto now = pipeline::Clock::now();
      e->status = head.status;
      e->lines = stored_lines(std::string_view(head.lines)
                                  .substr(head.fields_begin, head.fields_end - head.fields_begin),
                              name);
      e->stored = now;
      if (!st.route->ignore_cache_control) {
        auto age = field("Age");
        std::int64_t a = 0;
        for (char c : age) {
          if (c < '0' || c > '9' || a > 1'000'000'000) {
            a = 0;
            break;
          }
          a = a * 10 + (c - '0');
        }
        e->initial_age = a;
      }
      e->fresh_until = now + decision.ttl;
      e->swr_until = e->fresh_until + st.route->stale_while_revalidate;
      e->stale_until =
          e->fresh_until + std::max(st.route->stale_while_revalidate, st.route->stale_if_error);
      auto header = [&ctx](std::string_view n) { return ctx.header(n); };
      e->vary_values = vary_values(vary_names, header);
      e->vary = std::move(vary_names);
      st.expected = facts.content_length.value_or(0);
      e->body.reserve(st.expected);
      st.building = std::move(e);
      st.capturing = st.expected > 0;
      if (!st.capturing) {
        st.fill.complete(std::move(st.building), now);  // 204 or an empty body: whole already
      }
    }
  }
  if (!name.empty() && st.verdict != nullptr) {
    head.lines += name;
    head.lines += ": ";
    head.lines += st.verdict;
    head.lines += "\r\n";
  }
}

void CacheFilter::on_data(pipeline::Context&, std::span<const char> data, bool last) {
  State& st = *state_;
  if (!st.capturing) {
    return;
  }
  auto& body = st.building->body;
  if (body.size() + data.size() > st.expected) {
    // More than announced: never buffer past what was checked against max_object.
    st.capturing = false;
    st.building.reset();
    Counters::add(store_->counters(worker_).not_stored);
    st.fill.abandon();
    return;
  }
  body.append(data.data(), data.size());
  if (last) {
    st.capturing = false;
    if (body.size() == st.expected) {
      st.fill.complete(std::move(st.building), pipeline::Clock::now());
    } else {
      st.building.reset();
      st.fill.abandon();
    }
  }
}

void CacheFilter::finish(pipeline::Context&) {
  // A fill still held here never completed (the upstream failed, the client left mid-body): its
  // waiters go upstream now rather than at their deadline.
  state_->fill.abandon();
  state_->building.reset();
}

}  // namespace gatehouse::filters::cache
