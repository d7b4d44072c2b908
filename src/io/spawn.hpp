#pragma once
// Every coroutine gatehouse starts goes through spawn() (never net::detached): an exception that
// escapes one is a bug, since I/O and logic report errors as values, and it must not end a task
// silently. The completion handler logs it (error log, "internal error", the task's name) and
// counts it (gatehouse_internal_errors_total). By then the task's frame is gone: the socket it
// owned is closed and its scope guards (gauges, connection caps, in-flight slots) are released.
#include <exception>
#include <string>
#include <utility>

#include "io/net.hpp"
#include "observability/logging.hpp"

namespace gatehouse::io {

inline std::string exception_text(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}

// `task` names the coroutine in the log line; a string literal.
template <class Awaitable>
void spawn(net::io_context& ioc, Awaitable&& awaitable, observability::Logs& logs,
           const char* task) {
  net::co_spawn(ioc, std::forward<Awaitable>(awaitable), [&logs, task](std::exception_ptr e) {
    if (e) {
      logs.internal_error(task, exception_text(e));
    }
  });
}

}  // namespace gatehouse::io
