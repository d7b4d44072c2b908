#pragma once
// Awaiting a jobs::Store call from a worker's (or the admin thread's) coroutine. The store calls
// back on its own thread; the result is posted to the awaiting coroutine's executor, with a work
// guard so the io_context does not run out of work (and return) while a call is outstanding.
#include <memory>
#include <utility>

#include "io/net.hpp"

namespace gatehouse::jobs {

// `start(done)` starts the store call with `done` as its callback (void(T)).
template <class T, class Start>
io::net::awaitable<T> await_store(Start start) {
  namespace net = io::net;
  return net::async_initiate<decltype(net::use_awaitable), void(T)>(
      [start = std::move(start)](auto handler) mutable {
        auto ex = net::get_associated_executor(handler);
        using Handler = decltype(handler);
        auto h = std::make_shared<Handler>(std::move(handler));
        auto guard = std::make_shared<net::executor_work_guard<decltype(ex)>>(ex);
        start([h, guard](T value) mutable {
          auto target = guard->get_executor();
          net::post(target, [h, guard, v = std::move(value)]() mutable {
            std::move (*h)(std::move(v));
            guard->reset();
          });
        });
      },
      net::use_awaitable);
}

}  // namespace gatehouse::jobs
