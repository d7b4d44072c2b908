#pragma once
// The filter chain: a fixed list of filter types known at compile time, instantiated per request
// (a filter object is small: references to what it shares, plus its own per-request state), and
// the four phases every filter may take part in. A filter is a plain class with any of:
//
//   Next decode_headers(Context&);                 request head, in chain order: continue, reply
//                                                  (Context::reply) or suspend
//   net::awaitable<Next> resume(Context&);         after Next::Suspend: the I/O it waits for
//   bool strips(std::string_view name) const;      drop this upstream response field
//   void encode_headers(Context&, ResponseHead&);  response head, proxied AND local replies
//   void encode_data(Context&, std::span<const char>, bool last);   response body pieces
//   void on_complete(Context&);                    once, when the exchange is over (logs,
//                                                  metrics, releasing slots), even after errors
//
// A phase a filter does not declare costs nothing: the chain is unrolled at compile time with
// `if constexpr (requires ...)`, with no virtual call and no per-filter allocation. Only resume()
// is a coroutine, and only a suspended request runs it.
#include <cstddef>
#include <span>
#include <string_view>
#include <tuple>
#include <utility>

#include "pipeline/context.hpp"

namespace gatehouse::pipeline {

template <class F>
concept ObservesBody = requires(F& f, Context& c, std::span<const char> d) {
  f.encode_data(c, d, true);
};

template <class... Filters>
class Chain {
 public:
  template <class Services>
  explicit Chain(Services& services) : filters_(Filters(services)...) {}

  // decode_headers of every filter in order, until one does not continue.
  Next decode(Context& ctx) { return decode_from<0>(ctx); }

  // After Next::Suspend: the suspended filter's resume(), then the rest of the chain.
  net::awaitable<Next> resume(Context& ctx) { return resume_at<0>(ctx); }

  // Whether any filter drops this upstream response field.
  bool strips(std::string_view name) const {
    return std::apply([&](const auto&... f) { return (strips_one(f, name) || ...); }, filters_);
  }

  void encode_headers(Context& ctx, ResponseHead& head) {
    std::apply([&](auto&... f) { (encode_headers_one(f, ctx, head), ...); }, filters_);
  }

  // Whether some filter reads response bodies (the relay skips encode_data otherwise).
  static constexpr bool kObservesBody = (ObservesBody<Filters> || ...);

  // Whether this response's body must go through encode_data: a filter that reads bodies only
  // sometimes says so with `bool wants_body(const Context&) const` (the cache: only while it
  // fills), so that the relay skips the per-piece call otherwise.
  bool wants_body(const Context& ctx) const {
    if constexpr (kObservesBody) {
      return std::apply([&](const auto&... f) { return (wants_body_one(f, ctx) || ...); },
                        filters_);
    } else {
      return false;
    }
  }

  void encode_data(Context& ctx, std::span<const char> data, bool last) {
    if constexpr (kObservesBody) {
      std::apply([&](auto&... f) { (encode_data_one(f, ctx, data, last), ...); }, filters_);
    }
  }

  void on_complete(Context& ctx) {
    std::apply([&](auto&... f) { (complete_one(f, ctx), ...); }, filters_);
  }

  template <class F>
  F& get() {
    return std::get<F>(filters_);
  }

 private:
  static constexpr std::size_t kCount = sizeof...(Filters);

  template <std::size_t I>
  Next decode_from(Context& ctx) {
    if constexpr (I == kCount) {
      return Next::Continue;
    } else {
      auto& f = std::get<I>(filters_);
      if constexpr (requires { f.decode_headers(ctx); }) {
        Next n = f.decode_headers(ctx);
        if (n != Next::Continue) {
          suspended_ = I;
          return n;
        }
      }
      return decode_from<I + 1>(ctx);
    }
  }

  // Not a coroutine: finds the suspended filter at run time and returns its continuation.
  template <std::size_t I>
  net::awaitable<Next> resume_at(Context& ctx) {
    if constexpr (I == kCount) {
      return continue_after<kCount>(ctx);  // nothing was suspended
    } else {
      if constexpr (requires { std::get<I>(filters_).resume(ctx); }) {
        if (suspended_ == I) {
          return resume_filter<I>(ctx);
        }
      }
      return resume_at<I + 1>(ctx);
    }
  }

  template <std::size_t I>
  net::awaitable<Next> resume_filter(Context& ctx) {
    Next n = co_await std::get<I>(filters_).resume(ctx);
    if (n != Next::Continue) {
      suspended_ = I;
      co_return n;
    }
    co_return decode_from<I + 1>(ctx);
  }

  template <std::size_t I>
  net::awaitable<Next> continue_after(Context& ctx) {
    co_return decode_from<I>(ctx);
  }

  template <class F>
  static bool strips_one(const F& f, std::string_view name) {
    if constexpr (requires { f.strips(name); }) {
      return f.strips(name);
    } else {
      return false;
    }
  }
  template <class F>
  static bool wants_body_one(const F& f, const Context& ctx) {
    if constexpr (requires { f.wants_body(ctx); }) {
      return f.wants_body(ctx);
    } else {
      return ObservesBody<F>;
    }
  }
  template <class F>
  static void encode_headers_one(F& f, Context& ctx, ResponseHead& head) {
    if constexpr (requires { f.encode_headers(ctx, head); }) {
      f.encode_headers(ctx, head);
    }
  }
  template <class F>
  static void encode_data_one(F& f, Context& ctx, std::span<const char> data, bool last) {
    if constexpr (requires { f.encode_data(ctx, data, last); }) {
      f.encode_data(ctx, data, last);
    }
  }
  template <class F>
  static void complete_one(F& f, Context& ctx) {
    if constexpr (requires { f.on_complete(ctx); }) {
      f.on_complete(ctx);
    }
  }

  std::tuple<Filters...> filters_;
  std::size_t suspended_ = kCount;
};

}  // namespace gatehouse::pipeline
