#include "upstream/fetch.hpp"

#include <array>

#include "io/http_io.hpp"
#include "upstream/relay.hpp"

namespace gatehouse::upstream {
namespace {

using io::error_code;
using io::Framing;
namespace net = io::net;
namespace http = io::http;

constexpr std::size_t kPiece = 16 * 1024;

// The breaker's half-open probe slot goes back unless the try reported under it.
struct Probe {
  CircuitBreaker* breaker = nullptr;
  ~Probe() {
    if (breaker != nullptr) {
      breaker->release_probe();
    }
  }
};

TryOutcome outcome_of(FetchFailure f, unsigned status) {
  switch (f) {
    case FetchFailure::none:
    case FetchFailure::too_large:
      return status >= 500 ? TryOutcome::http_5xx : TryOutcome::success;
    case FetchFailure::connect_failed:
      return TryOutcome::connect_failure;
    case FetchFailure::timed_out:
      return TryOutcome::timeout;
    default:
      return TryOutcome::reset;
  }
}

FetchFailure classify(const error_code& ec) {
  return ec == io::beast::error::timeout ? FetchFailure::timed_out : FetchFailure::reset;
}

// Reads the body the head in `rp` announces into `out`, up to `cap` bytes. Returns the failure
// and whether the connection can serve again.
net::awaitable<std::pair<FetchFailure, bool>> read_body(Connection& u, io::ResponseParser& rp,
                                                        Framing in, Clock::duration timeout,
                                                        std::size_t cap, std::string& out,
                                                        error_code& ec) {
  if (in == Framing::none) {
    co_return std::pair{FetchFailure::none, rp.keep_alive()};
  }
  if (in == Framing::length) {
    const auto length = *rp.content_length();
    if (length > cap) {
      co_return std::pair{FetchFailure::too_large, false};
    }
    ec = co_await hold_response_body(u, static_cast<std::size_t>(length), timeout);
    if (ec) {
      co_return std::pair{classify(ec), false};
    }
    auto data = u.buffer.data();
    out.assign(static_cast<const char*>(data.data()), static_cast<std::size_t>(length));
    u.buffer.consume(static_cast<std::size_t>(length));
    co_return std::pair{FetchFailure::none, rp.keep_alive()};
  }
  std::array<char, kPiece> piece;  // in the coroutine frame, for this exchange only
  if (in == Framing::chunked) {
    for (;;) {
      auto p = co_await io::read_chunked_piece(u.socket, u.buffer, u.deadline, timeout, rp,
                                               piece.data(), piece.size());
      if (p.ec) {
        ec = p.ec;
        co_return std::pair{classify(ec), false};
      }
      if (out.size() + p.size > cap) {
        co_return std::pair{FetchFailure::too_large, false};
      }
      out.append(piece.data(), p.size);
      if (p.done) {
        co_return std::pair{FetchFailure::none, rp.keep_alive()};
      }
    }
  }
  // Until close: what is buffered, then everything up to EOF.
  auto buffered = u.buffer.data();
  out.assign(static_cast<const char*>(buffered.data()), buffered.size());
  u.buffer.consume(buffered.size());
  for (;;) {
    if (out.size() > cap) {
      co_return std::pair{FetchFailure::too_large, false};
    }
    u.deadline.arm(timeout);
    auto [rec, n] = co_await u.socket.async_read_some(net::buffer(piece), io::nothrow);
    if (rec == net::error::eof) {
      co_return std::pair{FetchFailure::none, false};
    }
    if (rec) {
      ec = u.deadline.expired() ? io::timeout_error() : rec;
      co_return std::pair{classify(ec), false};
    }
    out.append(piece.data(), n);
  }
}

}  // namespace

const char* fetch_failure_name(FetchFailure f) {
  switch (f) {
    case FetchFailure::none:
      return "none";
    case FetchFailure::connect_failed:
      return "connect_failed";
    case FetchFailure::timed_out:
      return "timed_out";
    case FetchFailure::reset:
      return "reset";
    case FetchFailure::too_large:
      return "too_large";
    case FetchFailure::busy:
      return "busy";
    case FetchFailure::unavailable:
      return "unavailable";
  }
  return "unknown";
}

net::awaitable<FetchResult> fetch(Cluster& cluster, const FetchRequest& request) {
  FetchResult result;
  Probe probe;
  auto* shared = cluster.shared();
  if (shared != nullptr && shared->breaker() != nullptr &&
      shared->breaker()->state() != CircuitBreaker::State::closed) {
    auto admission = shared->admit(Clock::now());
    if (!admission.allowed) {
      result.failure = FetchFailure::unavailable;
      result.detail = "circuit open";
      result.retry_after_s = std::max<std::int64_t>(
          1, std::chrono::ceil<std::chrono::seconds>(admission.retry_after).count());
      co_return result;
    }
    if (admission.probe) {
      probe.breaker = shared->breaker();
    }
  }
  auto report = [&](std::size_t target, TryOutcome outcome) {
    cluster.report(target, outcome, probe.breaker != nullptr, Clock::now(), request.request_id);
    probe.breaker = nullptr;
  };
  const std::array<net::const_buffer, 2> out{net::buffer(request.head), net::buffer(request.body)};
  for (bool fresh = false;; fresh = true) {
    auto acquired = co_await cluster.acquire(fresh, request.request_id);
    if (!acquired.conn) {
      result.detail = std::move(acquired.detail);
      if (acquired.unavailable || acquired.status == 503) {
        result.failure = acquired.unavailable ? FetchFailure::unavailable : FetchFailure::busy;
        result.retry_after_s = acquired.unavailable ? acquired.retry_after_s : 1;
        co_return result;
      }
      result.failure = FetchFailure::connect_failed;
      report(UpstreamHealth::kNoTarget, TryOutcome::connect_failure);
      co_return result;
    }
    auto u = std::move(acquired.conn);
    result.address = cluster.address(u->target);
    auto wrote = co_await io::write_all(u->socket, u->deadline, request.timeout, out);
    error_code ec = wrote.ec;
    std::optional<io::ResponseParser> rp;
    reset_response_parser(rp, request.head_request);
    if (!ec) {
      ec = co_await read_response_head(*u, rp, request.timeout, request.head_request);
    }
    if (ec) {
      // A pooled connection the upstream closed meanwhile: the request never reached the app.
      if (u->reused && !fresh && classify_head_failure(ec) == TryFailure::closed) {
        continue;
      }
      result.failure = classify(ec);
      result.detail = ec.message();
      report(u->target, outcome_of(result.failure, 0));
      co_return result;
    }
    const auto& res = rp->get();
    result.status = res.result_int();
    for (const auto& f : res) {
      result.fields.emplace_back(std::string(f.name_string()), std::string(f.value()));
    }
    const auto framing = response_framing(*rp, request.head_request, false);
    auto [failure, reusable] = co_await read_body(*u, *rp, framing.in, request.timeout,
                                                  request.max_response, result.body, ec);
    result.failure = failure;
    if (ec) {
      result.detail = ec.message();
    }
    report(u->target, outcome_of(failure, result.status));
    if (failure == FetchFailure::none && reusable) {
      cluster.release(std::move(u));
    }
    co_return result;
  }
}

}  // namespace gatehouse::upstream
