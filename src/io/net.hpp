#pragma once
// Common Asio/Beast aliases for the networked code.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace gatehouse::http {}

namespace gatehouse::io {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
namespace ghttp = ::gatehouse::http;  // our header helpers (http:: is Beast here)

// co_await op(..., nothrow) yields std::tuple<error_code, ...>: no exceptions on the data path.
// `deferred`, not `use_awaitable`: co_await on a deferred operation starts it straight from the
// awaiting frame, while use_awaitable starts every operation from a coroutine of its own
// (async_result<use_awaitable_t>::initiate), one more frame allocated per I/O operation and held
// by every idle connection's pending read.
inline constexpr auto nothrow = net::as_tuple(net::deferred);

}  // namespace gatehouse::io
