#pragma once
// The response cache in the chain (issue 14), after rate_limit: a cached answer is still a
// request, so access rules and rate limits judge it first (a client over its limit gets 429,
// not the cached page). decode_headers looks the key up in the process-wide store
// (filters/cache/store.hpp): a fresh entry is answered locally (Context::reply carries the stored
// head and a view of the stored body, owned by the entry); a miss becomes the key's fill and goes
// upstream, where encode_headers decides whether the response may be stored and encode_data
// captures its body; concurrent misses suspend until the fill ends (resume()).
//
// A route without `cache` pays one null check per phase: no state is allocated, and the relay
// skips encode_data (wants_body) unless this request fills.
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "filters/cache/config.hpp"
#include "filters/cache/store.hpp"
#include "io/net.hpp"
#include "observability/logging.hpp"
#include "pipeline/context.hpp"
#include "upstream/fetch.hpp"

namespace gatehouse::filters::cache {

struct Rendezvous;  // filter.cpp
struct Refresh;     // filter.cpp

// What a stale_while_revalidate refresh borrows from the proxy path, supplied by the server
// (server/worker.cpp) so that a refreshed entry is what a fill would have stored, the app sees
// the refresh as a proxied request, and the refresh is one of the upstream's exchanges (its pool,
// queue, breaker and target health).
struct ProxyHooks {
  // The filter chain's strips(): upstream response fields never passed on (Server, X-Powered-By).
  std::function<bool(std::string_view)> strips;
  // The upstream head proxy_request would send for `ctx`'s request, as a GET without a body
  // (X-Forwarded-*, traceparent) carrying `request_id`.
  std::function<void(const pipeline::Context& ctx, std::string_view request_id, std::string& out)>
      upstream_head;
  // Runs the refresh's exchange through the pinned generation's cluster of upstream `upstream`
  // (upstream::fetch: a stale keep-alive connection is retried once), with the upstream's
  // configured retries. An open circuit breaker answers FetchFailure::unavailable: no refresh.
  std::function<io::net::awaitable<upstream::FetchResult>(std::size_t upstream,
                                                          const upstream::FetchRequest&)>
      fetch;
  // Keeps what the hooks and the route point into (the configuration generation) alive until the
  // token is released; called on the worker's thread, released there.
  std::function<std::shared_ptr<void>()> pin;
};

class CacheFilter {
 public:
  template <class Services>
  explicit CacheFilter(Services& s)
      : store_(s.cache), cfg_(&s.cfg), worker_(s.worker), logs_(&s.logs), hooks_(&s.cache_hooks) {}
  CacheFilter(CacheFilter&&) noexcept;
  CacheFilter& operator=(CacheFilter&&) noexcept;
  ~CacheFilter();

  pipeline::Next decode_headers(pipeline::Context& ctx) {
    if (store_ == nullptr || ctx.route_config == nullptr) {
      return pipeline::Next::Continue;
    }
    return look_up(ctx);
  }
  pipeline::net::awaitable<pipeline::Next> resume(pipeline::Context& ctx);

  bool wants_body(const pipeline::Context&) const;
  void encode_headers(pipeline::Context& ctx, pipeline::ResponseHead& head) {
    if (state_) {
      on_head(ctx, head);
    }
  }
  void encode_data(pipeline::Context& ctx, std::span<const char> data, bool last) {
    if (state_) {
      on_data(ctx, data, last);
    }
  }
  void on_complete(pipeline::Context& ctx) {
    if (state_) {
      finish(ctx);
    }
  }

  // stale_if_error: replaces the upstream-failure reply in ctx.reply (502, 503, 504) with the
  // expired copy when the route's window allows. Called by the session before it sends an error.
  bool stale_on_error(pipeline::Context& ctx);
  // stale_if_error for the app's own 500, 502, 503 or 504 (RFC 5861 section 4): when the window
  // allows, ctx.reply becomes the expired copy (the proxy then discards the upstream's response
  // and sends ctx.reply). Called by the proxy once the upstream's head is in.
  bool stale_for_status(pipeline::Context& ctx, unsigned upstream_status);
  // When this request began to wait for another request's fill (epoch when it did not wait): a
  // waiter released without an answer goes upstream within what is left of the route's timeout.
  pipeline::Clock::time_point waited_since() const {
    return state_ ? state_->wait_began : pipeline::Clock::time_point();
  }

 private:
  struct State {
    // Declared, so optional<State> can ask whether State is constructible while CacheFilter is
    // incomplete (clang cannot use the member initializers before then).
    State() noexcept {}  // NOLINT(modernize-use-equals-default)
    const RouteCache* route = nullptr;
    const char* verdict = nullptr;         // for X-Cache and the access log
    std::shared_ptr<const Entry> served;   // the entry answered (hit, stale, coalesced)
    std::shared_ptr<const Entry> expired;  // a copy past its ttl, for stale_if_error
    Fill fill;
    std::shared_ptr<Rendezvous> wait;
    // The fill's response, while it may still be stored.
    std::shared_ptr<Entry> building;
    std::uint64_t expected = 0;
    bool capturing = false;
    bool need_body = false;            // suspended for the session to read the body (key)
    std::shared_ptr<Refresh> refresh;  // stale_while_revalidate: started by resume()
    pipeline::Clock::time_point wait_began{};
  };
  pipeline::Next look_up(pipeline::Context& ctx);
  pipeline::Next look_up_key(pipeline::Context& ctx);
  bool start_refresh(pipeline::Context& ctx, Fill fill);
  pipeline::Next reply_from(pipeline::Context& ctx, std::shared_ptr<const Entry> entry,
                            const char* verdict);
  bool serve_stale(pipeline::Context& ctx);
  void on_head(pipeline::Context& ctx, pipeline::ResponseHead& head);
  void on_data(pipeline::Context& ctx, std::span<const char> data, bool last);
  void finish(pipeline::Context& ctx);

  Store* store_;
  const config::Config* cfg_;
  unsigned worker_;
  observability::Logs* logs_;
  const ProxyHooks* hooks_;
  // Only on a caching route; in place, so that a miss allocates no state of its own.
  std::optional<State> state_;
};

}  // namespace gatehouse::filters::cache
