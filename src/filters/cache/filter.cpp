#include "filters/cache/filter.hpp"

#include <openssl/evp.h>

#include <cstring>
#include <mutex>
#include <optional>

#include "filters/cache/policy.hpp"
#include "http/canonical_path.hpp"
#include "http/fields.hpp"
#include "http/request_id.hpp"
#include "io/net.hpp"
#include "io/spawn.hpp"

namespace gatehouse::filters::cache {
namespace {

namespace net = io::net;

// Key parts longer than this are replaced by their SHA-256: keys stay bounded whatever the
// request carries (a 10 MB prompt is a 33-byte key part).
constexpr std::size_t kMaxInlinePart = 128;

// Writes a key into a buffer sized beforehand (bound()): plain stores, no capacity check per
// character. A miss builds one per request, so this is on the hot path of every caching route.
struct KeyWriter {
  char* at;

  static constexpr std::size_t kPart = 2 + kMaxInlinePart;  // the most a part takes
  static constexpr std::size_t kOrigin = 2 + 255 + 2;       // and the route's name

  void put(char c) { *at++ = c; }
  void put(std::string_view v) {
    if (v.empty()) {
      return;  // an empty view may have a null data(): memcpy from null is undefined
    }
    std::memcpy(at, v.data(), v.size());
    at += v.size();
  }

  // Each part is tagged and, inline, length-prefixed, so no two different part lists make the
  // same key: a short body that looks like another body's digest, or a value holding a
  // separator, cannot reach another request's entry.
  void part(std::string_view v) {
    if (v.size() <= kMaxInlinePart) {
      put('=');
      put(static_cast<char>(v.size()));  // at most 128: one byte
      put(v);
    } else {
      unsigned char digest[EVP_MAX_MD_SIZE];
      unsigned int n = 0;
      EVP_Digest(v.data(), v.size(), digest, &n, EVP_sha256(), nullptr);
      put('#');
      put(std::string_view(reinterpret_cast<const char*>(digest), n));
    }
  }

  // The origin the answer came from: scheme, host (lower case; the upstream sees the client's
  // Host and may build absolute URLs from it) and route (routes may match by host and send the
  // same path to different upstreams). Always in the key, whatever `key` lists. The route by
  // name, not by position: a reload may reorder routes, and an entry must never answer for
  // another route.
  void origin(bool tls, std::string_view host, std::string_view route) {
    host = host.substr(0, 255);
    put(tls ? 's' : 'p');
    put(static_cast<char>(host.size()));
    // Eight at a time: 0x20 added to each byte in 'A'..'Z' (high-bit bytes left alone). A host
    // that is not a multiple of 8 ends with its last 8 bytes again (lowering twice is harmless).
    auto lower8 = [](const char* from, char* to) {
      constexpr std::uint64_t ones = 0x0101010101010101ULL;
      std::uint64_t w;
      std::memcpy(&w, from, 8);
      const std::uint64_t low7 = w & (0x7f * ones);
      const std::uint64_t over_z = low7 + (0x7f - 'Z') * ones;  // high bit: byte > 'Z'
      const std::uint64_t from_a = low7 + (0x80 - 'A') * ones;  // high bit: byte >= 'A'
      w |= ((from_a & ~over_z & ~w) & (0x80 * ones)) >> 2;
      std::memcpy(to, &w, 8);
    };
    const std::size_t n = host.size();
    if (n >= 8) {
      for (std::size_t i = 0; i + 8 <= n; i += 8) {
        lower8(host.data() + i, at + i);
      }
      if (n % 8 != 0) {
        lower8(host.data() + n - 8, at + n - 8);
      }
      at += n;
    } else {
      for (char c : host) {
        *at++ = c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
      }
    }
    route = route.substr(0, 0xffff);
    put(static_cast<char>(route.size() >> 8));
    put(static_cast<char>(route.size() & 0xff));
    put(route);
  }
};

// A list-valued field sent on several lines is one list (RFC 9110 5.3): every line counts, so a
// second `Cache-Control: private` or `Vary: Cookie` cannot be missed. `joined` holds the text when
// there is more than one line.
void add_line(std::string_view& value, std::string& joined, std::string_view line) {
  if (value.empty() && joined.empty()) {
    value = line;
    return;
  }
  if (joined.empty()) {
    joined = value;
  }
  joined += ", ";
  joined += line;
  value = joined;
}

// One pass over an upstream response's fields for everything storability and freshness need:
// the fill's head (proxied) and the background refresh's response read the same way. Holds views
// into itself (a list on several lines is joined here): used in place, never moved.
struct ScannedFields {
  ResponseFacts facts;
  std::string_view vary;
  std::string_view length;
  std::string_view age;
  bool chunked = false;
  std::string cc_joined;
  std::string vary_joined;

  ScannedFields() = default;
  ScannedFields(const ScannedFields&) = delete;
  ScannedFields& operator=(const ScannedFields&) = delete;

  template <class Fields>
  void scan(const Fields& fields) {
    for (const auto& f : fields) {
      add(f.name(), std::string_view(f.value().data(), f.value().size()));
    }
  }
  // A fetched response's fields (upstream::FetchResult), as received.
  void scan(const std::vector<std::pair<std::string, std::string>>& fields) {
    for (const auto& [name, value] : fields) {
      add(io::http::string_to_field(name), value);
    }
  }

  void add(io::http::field name, std::string_view value) {
    switch (name) {
      case io::http::field::cache_control:
        add_line(facts.cache_control, cc_joined, value);
        break;
      case io::http::field::set_cookie:
        facts.set_cookie = true;
        break;
      case io::http::field::vary:
        add_line(vary, vary_joined, value);
        break;
      case io::http::field::content_length:
        length = value;
        break;
      case io::http::field::transfer_encoding:
        chunked = true;
        break;
      case io::http::field::content_type:
        facts.content_type = value;
        break;
      case io::http::field::age:
        age = value;
        break;
      default:
        break;
    }
  }

  // Content-Length as announced, when it is one plain number and the body is not chunked.
  void take_length() {
    if (length.empty() || chunked || length.size() >= 19) {
      return;
    }
    std::uint64_t n = 0;
    for (char c : length) {
      if (c < '0' || c > '9') {
        return;
      }
      n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    facts.content_length = n;
  }
};

void set_windows(Entry& e, const RouteCache& route, std::chrono::milliseconds ttl, std::int64_t age,
                 Clock::time_point now) {
  const auto w = windows(route, ttl, age, now);
  e.fresh_until = w.fresh_until;
  e.swr_until = w.swr_until;
  e.stale_until = w.stale_until;
}

}  // namespace

// stale_while_revalidate: the refresh runs on the worker's executor, detached from the request
// that triggered it (that client may be gone long before it ends). It sends the request's GET
// through the route's upstream cluster (ProxyHooks::fetch, upstream/fetch.hpp) like any other
// exchange: a pooled keep-alive connection, the max_connections queue, the balancer's target, the
// circuit breaker (open: no refresh, the stale copy is served until its windows end), passive
// health and outlier reports, the upstream's retries. Each read is bounded by the route's timeout
// (else the upstream's), and the answer is stored under the same storability rules as a fill.
// The head sent and the fields stored are the proxy path's (ProxyHooks): the app sees
// X-Forwarded-* and a request id of the refresh's own, and a field the chain strips (Server,
// X-Powered-By) is never stored, since a hit replays the stored fields as they are.
struct Refresh {
  std::shared_ptr<void> pin;  // first: released last, after everything pointing into it
  Fill fill;
  std::string head;  // the request sent upstream
  std::string request_id;
  const ProxyHooks* hooks = nullptr;
  std::size_t upstream = 0;
  std::chrono::milliseconds timeout{0};
  const RouteCache* route = nullptr;
  std::size_t max_object = 0;
  std::string cache_header;
  std::string request_id_header;
  std::vector<std::pair<std::string, std::string>> request_headers;  // for Vary
};

net::awaitable<void> run_refresh(std::shared_ptr<Refresh> job) {
  auto res = co_await job->hooks->fetch(job->upstream, {.head = job->head,
                                                        .body = {},
                                                        .request_id = job->request_id,
                                                        .timeout = job->timeout,
                                                        .max_response = job->max_object,
                                                        .head_request = false});
  if (res.failure != upstream::FetchFailure::none) {
    co_return;  // job->fill is abandoned with the job: the stale copy stays until stale_until
  }
  ScannedFields scanned;
  ResponseFacts& facts = scanned.facts;
  facts.status = res.status;
  scanned.scan(res.fields);
  auto vary_names = parse_vary(scanned.vary, facts.vary_star);
  if (!scanned.chunked) {
    facts.content_length = res.body.size();  // read whole, within max_object
  }
  auto decision = decide(*job->route, job->max_object, facts);
  if (decision.refusal != Refusal::none) {
    co_return;
  }
  auto e = std::make_shared<Entry>();
  auto now = Clock::now();
  e->status = facts.status;
  e->stored = now;
  // The fields build_client_head passes on: no framing, hop-by-hop, Connection-named or stripped.
  std::vector<std::string_view> tokens;
  for (const auto& [name, value] : res.fields) {
    if (::gatehouse::http::iequals(name, "Connection")) {
      for (auto t : ::gatehouse::http::split_tokens(value)) {
        tokens.push_back(t);
      }
    }
  }
  for (const auto& [name, value] : res.fields) {
    if (::gatehouse::http::iequals(name, "Content-Length") ||
        ::gatehouse::http::is_hop_by_hop(name) ||
        (job->hooks->strips && job->hooks->strips(name)) ||
        (!tokens.empty() && ::gatehouse::http::named_by_connection(name, tokens))) {
      continue;
    }
    e->lines += name;
    e->lines += ": ";
    e->lines += value;
    e->lines += "\r\n";
  }
  e->lines = stored_lines(e->lines, job->cache_header, job->request_id_header);
  e->body = std::move(res.body);
  if (!job->route->ignore_cache_control) {
    e->initial_age = parse_age(scanned.age);
  }
  set_windows(*e, *job->route, decision.ttl, e->initial_age, now);
  auto header = [&](std::string_view n) -> std::string_view {
    for (const auto& [k, v] : job->request_headers) {
      if (::gatehouse::http::iequals(k, n)) {
        return v;
      }
    }
    return {};
  };
  e->vary_values = vary_values(vary_names, header);
  e->vary = std::move(vary_names);
  job->fill.complete(std::move(e), now);
}

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
  state_.emplace();
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
  if (!get && !(ctx.method == "POST" && rc->keys_body())) {
    return bypass();
  }
  // Another user's answer must never be served to a request that authenticates, unless the key
  // tells the users apart.
  if (!ctx.header("Authorization").empty() && !rc->keys_header("Authorization")) {
    return bypass();
  }
  if (ctx.body_pending && ctx.buffered_body.empty() && rc->keys_body()) {
    // The body did not come with the head: the session reads it first (bounded by max_object),
    // then resume() looks the key up.
    const auto length = ctx.parser->content_length();
    if (ctx.parser->chunked() || !length || *length > settings(*cfg_).max_object) {
      return bypass();  // not keyed: a chunked or oversized body goes upstream as is
    }
    ctx.buffer_body = static_cast<std::size_t>(*length);
    st.need_body = true;
    return pipeline::Next::Suspend;
  }
  return look_up_key(ctx);
}

pipeline::Next CacheFilter::look_up_key(pipeline::Context& ctx) {
  State& st = *state_;
  const RouteCache* rc = st.route;
  auto& counters = store_->counters(worker_);
  auto bypass = [&] {
    st.verdict = "BYPASS";
    ctx.cache = st.verdict;
    Counters::add(counters.bypass);
    return pipeline::Next::Continue;
  };
  const bool revalidate = rc->allow_client_bypass &&
                          request_no_cache(ctx.header("Cache-Control"), ctx.header("Pragma"));

  // Built in a buffer of this thread's that only grows: the canonical path, a separator, the
  // origin, the parts. Only a fill copies it (into the store's pending entry).
  thread_local std::string key_text;
  const std::size_t bound = ctx.path.size() + 1 + KeyWriter::kOrigin +
                            ctx.route_config->name.size() +
                            rc->key.size() * std::max<std::size_t>(KeyWriter::kPart, 1 + 64);
  if (key_text.size() < bound) {
    key_text.resize(std::max(bound, 2 * key_text.size()));
  }
  KeyWriter out{key_text.data()};
  out.put(ctx.path);
  out.put('\0');
  out.origin(ctx.tls, ctx.host, ctx.route_config->name);
  for (const auto& p : rc->key) {
    switch (p.kind) {
      case KeyPart::Kind::method:
        out.part(ctx.head_request ? std::string_view("GET") : ctx.method);
        break;
      case KeyPart::Kind::path:
        break;  // the canonical path leads every key
      case KeyPart::Kind::query: {
        auto path = ::gatehouse::http::target_path(ctx.target);
        out.part(ctx.target.substr(path.size()));
        break;
      }
      case KeyPart::Kind::body:
        out.part(ctx.buffered_body);
        break;
      case KeyPart::Kind::header:
        out.part(ctx.header(p.header));
        break;
    }
  }
  const std::string_view text(key_text.data(), static_cast<std::size_t>(out.at - key_text.data()));
  const KeyView key{text, ctx.path.size(), hash_key(text)};
  // The rendezvous is made only for a request that is to wait.
  auto make_waker = [&st]() -> Waker {
    st.wait = std::make_shared<Rendezvous>();
    return [rendezvous = st.wait](std::shared_ptr<const Entry> e) {
      std::lock_guard lock(rendezvous->mu);
      rendezvous->done = true;
      rendezvous->entry = std::move(e);
      if (rendezvous->timer) {
        // The waiter sleeps on its own worker: wake it there.
        net::post(rendezvous->timer->get_executor(), [rendezvous] {
          if (rendezvous->timer) {  // on the waiter's thread: the waiter may be gone already
            rendezvous->timer->cancel();
          }
        });
      }
    };
  };
  auto header = [&ctx](std::string_view name) { return ctx.header(name); };
  // A HEAD's response has no body to store: it never takes the fill, so a GET arriving meanwhile
  // still fills (and the HEAD waits for a GET's fill in progress like any miss).
  auto found = store_->lookup(key, header, pipeline::Clock::now(), rc->max_waiters, make_waker,
                              revalidate, !ctx.head_request);
  switch (found.outcome) {
    case Store::Outcome::hit:
      Counters::add(counters.hits);
      return reply_from(ctx, std::move(found.entry), "HIT");
    case Store::Outcome::stale:
      Counters::add(counters.stale);
      if (found.fill && start_refresh(ctx, std::move(found.fill))) {
        // Suspended only to reach this worker's executor: resume() starts the refresh, then
        // answers with the stale copy at once.
        st.served = std::move(found.entry);
        return pipeline::Next::Suspend;
      }
      return reply_from(ctx, std::move(found.entry), "STALE");
    case Store::Outcome::waiting:
      st.expired = std::move(found.entry);
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
  auto executor = co_await net::this_coro::executor;
  if (st.need_body) {
    st.need_body = false;
    if (ctx.buffered_body.size() != ctx.parser->content_length().value_or(0)) {
      st.verdict = "BYPASS";
      ctx.cache = st.verdict;
      Counters::add(store_->counters(worker_).bypass);
      co_return pipeline::Next::Continue;
    }
    auto next = look_up_key(ctx);
    if (next != pipeline::Next::Suspend) {
      co_return next;
    }
  }
  if (st.refresh) {
    auto* logs = logs_;
    net::co_spawn(executor, run_refresh(std::move(st.refresh)), [logs](std::exception_ptr e) {
      if (e) {
        logs->internal_error("cache refresh", io::exception_text(e));
      }
    });
    co_return reply_from(ctx, std::move(st.served), "STALE");
  }
  auto rendezvous = st.wait;
  // The timer belongs to this worker's io_context: it must not outlive this frame in the store's
  // waiter list (a fill still pending at shutdown, or one that ends after the wait timed out).
  struct ForgetTimer {
    Rendezvous& r;
    ~ForgetTimer() {
      std::lock_guard lock(r.mu);
      r.timer.reset();
    }
  } forget{*rendezvous};
  bool sleep = false;
  {
    std::lock_guard lock(rendezvous->mu);
    if (!rendezvous->done) {
      // Bounded by the route's deadline, else the upstream's response timeout.
      auto bound = ctx.route_config->timeout.count() > 0
                       ? ctx.route_config->timeout
                       : cfg_->upstreams[ctx.route_config->upstream_index].timeout;
      rendezvous->timer.emplace(executor, bound);
      st.wait_began = pipeline::Clock::now();
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
  if (entry && !entry->vary.empty()) {
    // The fill answered another variant (a different Accept-Language, say): not ours.
    auto header = [&ctx](std::string_view name) { return ctx.header(name); };
    if (vary_values(entry->vary, header) != entry->vary_values) {
      entry.reset();
    }
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

bool CacheFilter::start_refresh(pipeline::Context& ctx, Fill fill) {
  const auto& route = *ctx.route_config;
  // A refresh is a GET: an entry keyed on a POST's body is filled again by a POST once stale.
  if (!hooks_->fetch || !hooks_->upstream_head || ctx.method == "POST") {
    return false;
  }
  auto job = std::make_shared<Refresh>();
  if (hooks_->pin) {
    job->pin = hooks_->pin();
  }
  job->fill = std::move(fill);
  job->upstream = route.upstream_index;
  const auto& up = cfg_->upstreams[route.upstream_index];
  job->timeout = route.timeout.count() > 0 ? route.timeout : up.timeout;
  job->route = state_->route;
  job->max_object = settings(*cfg_).max_object;
  job->cache_header = settings(*cfg_).header;
  job->request_id_header = cfg_->request_id.header;
  job->hooks = hooks_;
  // The request as proxy_request would send it, as a GET, under a request id of its own (the
  // refresh outlives the request that found the entry stale).
  job->request_id = ::gatehouse::http::thread_id_generator().request_id();
  std::string& head = job->head;
  hooks_->upstream_head(ctx, job->request_id, head);
  // The client's validators and ranges are its own: the refresh fetches the whole representation.
  strip_conditional_fields(head);
  for (const auto& f : *ctx.request) {
    job->request_headers.emplace_back(
        std::string_view(f.name_string().data(), f.name_string().size()),
        std::string_view(f.value().data(), f.value().size()));
  }
  state_->refresh = std::move(job);
  return true;
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
  const auto status = ctx.reply.status;
  if (status != 502 && status != 503 && status != 504) {
    return false;
  }
  const bool close = ctx.reply.close;
  if (!serve_stale(ctx)) {
    return false;
  }
  ctx.reply.close = close;
  return true;
}

bool CacheFilter::stale_for_status(pipeline::Context& ctx, unsigned upstream_status) {
  if (upstream_status != 500 && upstream_status != 502 && upstream_status != 503 &&
      upstream_status != 504) {
    return false;
  }
  return serve_stale(ctx);
}

bool CacheFilter::serve_stale(pipeline::Context& ctx) {
  if (!state_ || !state_->expired || state_->route->stale_if_error.count() <= 0) {
    return false;
  }
  const auto& e = state_->expired;
  if (pipeline::Clock::now() >= e->fresh_until + state_->route->stale_if_error) {
    return false;
  }
  Counters::add(store_->counters(worker_).stale);
  // The failed response stores nothing; whoever waits for this fill goes upstream itself.
  state_->fill.abandon();
  reply_from(ctx, e, "STALE");
  return true;
}

void CacheFilter::on_head(pipeline::Context& ctx, pipeline::ResponseHead& head) {
  State& st = *state_;
  const Settings& cs = settings(*cfg_);
  const auto& name = cs.header;
  if (head.local()) {
    if (st.served) {
      head.lines += "Age: ";
      head.lines += std::to_string(st.served->age(pipeline::Clock::now()));
      head.lines += "\r\n";
    }
    st.fill.abandon();  // an error of ours: nothing to store, the waiters go upstream
  } else if (st.fill) {
    ScannedFields scanned;
    ResponseFacts& facts = scanned.facts;
    facts.status = head.status;
    scanned.scan(*head.upstream);
    auto vary_names = parse_vary(scanned.vary, facts.vary_star);
    scanned.take_length();
    facts.head_request = ctx.head_request;
    auto decision = decide(*st.route, cs.max_object, facts);
    if (decision.refusal != Refusal::none) {
      Counters::add(store_->counters(worker_).not_stored);
      st.fill.abandon();  // released at once: they go upstream themselves
    } else {
      auto e = std::make_shared<Entry>();
      auto now = pipeline::Clock::now();
      e->status = head.status;
      e->lines = stored_lines(std::string_view(head.lines)
                                  .substr(head.fields_begin, head.fields_end - head.fields_begin),
                              name, cfg_->request_id.header);
      e->stored = now;
      if (!st.route->ignore_cache_control) {
        e->initial_age = parse_age(scanned.age);
      }
      set_windows(*e, *st.route, decision.ttl, e->initial_age, now);
      auto header = [&ctx](std::string_view n) { return ctx.header(n); };
      e->vary_values = vary_values(vary_names, header);
      e->vary = std::move(vary_names);
      st.expected = facts.content_length.value_or(0);
      if (st.expected == 0) {
        st.fill.complete(std::move(e), now);  // 204 or an empty body: whole already
      } else if (!store_->reserve(st.fill, e->bytes() + st.expected)) {
        // The body being read counts against max_memory from its first byte: concurrent large
        // misses that do not fit beside what is stored and what others are reading are relayed.
        Counters::add(store_->counters(worker_).not_stored);
        st.fill.abandon();
      } else {
        e->body.reserve(st.expected);
        st.building = std::move(e);
        st.capturing = true;
      }
    }
  }
  if (!name.empty() && st.verdict != nullptr) {
    // Lengths known up front: one reservation, no strlen.
    const std::string_view verdict(st.verdict);
    head.lines.reserve(head.lines.size() + name.size() + verdict.size() + 4);
    head.lines.append(name).append(": ", 2).append(verdict).append("\r\n", 2);
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
