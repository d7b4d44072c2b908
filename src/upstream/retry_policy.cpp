#include "upstream/retry_policy.hpp"

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <vector>

#include "http/fields.hpp"

namespace gatehouse::upstream {

bool idempotent_method(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

std::string_view reason_name(RetryReason r) {
  static constexpr std::array<std::string_view, kRetryReasons> kNames = {
      "stale_connection", "connect_failure", "reset", "timeout", "429", "5xx", "invalid_json"};
  return kNames[static_cast<std::size_t>(r)];
}

std::string_view why_not_name(NoRetry n) {
  static constexpr std::array<std::string_view, 10> kNames = {
      "none",        "not_listed", "attempts", "method",      "body", "no_other_target",
      "retry_after", "deadline",   "budget",   "circuit_open"};
  return kNames[static_cast<std::size_t>(n)];
}

RetryPolicy::RetryPolicy(const config::RetryConfig& cfg)
    : attempts_(static_cast<int>(cfg.attempts)),
      base_(cfg.backoff_base),
      max_(cfg.backoff_max),
      jitter_(cfg.jitter == config::Jitter::full),
      on_(cfg.on) {
  for (unsigned s : cfg.on_status) {
    if (s == 429) {
      on_429_ = true;
    } else if (s >= 500 && s <= 563) {
      on_5xx_ |= std::uint64_t{1} << (s - 500);
    }
  }
}

bool RetryPolicy::retries_status(unsigned status) const {
  if (status == 429) {
    return on_429_;
  }
  return status >= 500 && status <= 563 && ((on_5xx_ >> (status - 500)) & 1) != 0;
}

Millis RetryPolicy::backoff_bound(int n) const {
  // base * 2^(n-1) without overflow: stop doubling once past max.
  Millis bound = base_;
  for (int i = 1; i < n && bound < max_; ++i) {
    bound *= 2;
  }
  return std::min(bound, max_);
}

Millis RetryPolicy::backoff(int n, std::uint64_t random) const {
  auto bound = backoff_bound(n);
  if (!jitter_ || bound.count() <= 0) {
    return bound;
  }
  // Uniform in [0, bound]: the bound is at most a year of milliseconds, so the modulo bias of 64
  // random bits is negligible.
  return Millis(static_cast<Millis::rep>(random % (static_cast<std::uint64_t>(bound.count()) + 1)));
}

namespace {

RetryDecision no(NoRetry why) {
  RetryDecision d;
  d.why_not = why;
  return d;
}

}  // namespace

RetryDecision RetryPolicy::decide(const RetryInput& in) const {
  using Body = RetryInput::Body;
  // The stale keep-alive retry: the upstream closed an idle connection we reused. Only a closed
  // one: a timeout or a fresh connection failing says the upstream itself is in trouble.
  if (in.reused_connection && in.failure == TryFailure::closed && !in.stale_retried &&
      in.body != Body::not_kept && (!in.wrote_any || in.idempotent || in.idempotency_key)) {
    // The upstream may have run a request it received before dying: sending it again is safe only
    // when it never left, or when running it twice is harmless (RFC 9110 9.2.2) or deduplicated by
    // the app (Idempotency-Key).
    RetryDecision d;
    d.retry = true;
    d.fresh_connection = true;
    d.reason = RetryReason::stale_connection;
    return d;
  }

  RetryReason reason{};
  bool listed = false;
  switch (in.failure) {
    case TryFailure::connect_failed:
      reason = RetryReason::connect_failure;
      listed = (on_ & config::retry_connect_failure) != 0;
      break;
    case TryFailure::closed:
      reason = RetryReason::reset;
      listed = (on_ & config::retry_reset) != 0;
      break;
    case TryFailure::timed_out:
      reason = RetryReason::timeout;
      listed = (on_ & config::retry_timeout) != 0;
      break;
    case TryFailure::status:
      reason = in.status == 429 ? RetryReason::status_429 : RetryReason::status_5xx;
      listed = retries_status(in.status);
      break;
    case TryFailure::invalid_json:
      reason = RetryReason::invalid_json;
      listed = retries_invalid_json();
      break;
    case TryFailure::other:
      break;
  }
  if (!listed) {
    return no(NoRetry::not_listed);
  }
  if (in.tries >= attempts_) {
    return no(NoRetry::attempts);
  }
  // Nothing reached the app when no target accepted a connection: any method, any body (still
  // unread at the client) may go again.
  if (in.failure != TryFailure::connect_failed) {
    if (!in.method_listed && !in.idempotency_key) {
      return no(NoRetry::method);
    }
    if (in.body == Body::not_kept) {
      return no(NoRetry::body);
    }
  }
  const bool is_429 = in.failure == TryFailure::status && in.status == 429;
  if (is_429 && !in.other_target) {
    return no(NoRetry::no_other_target);
  }
  RetryDecision d;
  d.reason = reason;
  const bool honours_retry_after =
      in.failure == TryFailure::status && (in.status == 429 || in.status == 503);
  if (honours_retry_after && in.retry_after) {
    // Without a route deadline the longest wait is backoff.max: a client is not held for an
    // upstream's whole Retry-After that nobody bounded.
    auto limit = in.remaining ? *in.remaining : max_;
    if (*in.retry_after > limit || (in.remaining && *in.retry_after >= *in.remaining)) {
      return no(NoRetry::retry_after);
    }
    d.wait = *in.retry_after;
  } else {
    d.wait = backoff(in.tries, in.random);
  }
  // Never start a wait (or a try) that the deadline would cut.
  if (in.remaining && (in.remaining->count() <= 0 || d.wait >= *in.remaining)) {
    return no(NoRetry::deadline);
  }
  d.retry = true;
  d.fresh_connection = in.failure == TryFailure::closed;
  d.avoid_target = in.failure != TryFailure::connect_failed;
  d.avoid_strictly = is_429;
  return d;
}

RetryBudget::RetryBudget(unsigned percent, unsigned floor, RetryClock::time_point now)
    : percent_(percent), floor_(floor), floor_credit_(std::uint64_t{floor} * 100), refilled_(now) {}

bool RetryBudget::try_spend(RetryClock::time_point now) {
  if (credit_ >= 100) {
    credit_ -= 100;
    return true;
  }
  if (floor_ == 0) {
    return false;
  }
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - refilled_).count();
  if (elapsed > 0) {
    // floor_ retries per second = floor_ / 10 hundredths per millisecond.
    auto gain = static_cast<std::uint64_t>(elapsed) * floor_ / 10;
    if (gain > 0) {
      floor_credit_ = std::min(floor_credit_ + gain, floor_ * 100);
      refilled_ = now;
    }
  }
  if (floor_credit_ >= 100) {
    floor_credit_ -= 100;
    return true;
  }
  return false;
}

namespace {

bool parse_digits(std::string_view s, int& out) {
  if (s.empty() || s.size() > 9) {
    return false;
  }
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

int month_index(std::string_view m) {
  static constexpr std::array<std::string_view, 12> kMonths = {
      "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (std::size_t i = 0; i < kMonths.size(); ++i) {
    if (m == kMonths[i]) {
      return static_cast<int>(i) + 1;
    }
  }
  return 0;
}

// "HH:MM:SS" into seconds of the day.
bool parse_clock(std::string_view s, int& seconds) {
  int h = 0;
  int m = 0;
  int sec = 0;
  if (s.size() != 8 || s[2] != ':' || s[5] != ':' || !parse_digits(s.substr(0, 2), h) ||
      !parse_digits(s.substr(3, 2), m) || !parse_digits(s.substr(6, 2), sec) || h > 23 || m > 59 ||
      sec > 60) {
    return false;
  }
  seconds = h * 3600 + m * 60 + sec;
  return true;
}

std::vector<std::string_view> split_blanks(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && s[i] == ' ') {
      ++i;
    }
    std::size_t j = i;
    while (j < s.size() && s[j] != ' ') {
      ++j;
    }
    if (j > i) {
      out.push_back(s.substr(i, j - i));
    }
    i = j;
  }
  return out;
}

// An HTTP-date (RFC 9110 5.6.7) as seconds since the epoch.
std::optional<std::int64_t> parse_http_date(std::string_view s) {
  auto parts = split_blanks(s);
  int day = 0;
  int month = 0;
  int year = 0;
  int secs = 0;
  if (parts.size() == 6 && parts[0].size() == 4 && parts[0].back() == ',' && parts[5] == "GMT") {
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    month = month_index(parts[2]);
    if (parts[1].size() != 2 || !parse_digits(parts[1], day) || parts[3].size() != 4 ||
        !parse_digits(parts[3], year) || !parse_clock(parts[4], secs)) {
      return std::nullopt;
    }
  } else if (parts.size() == 4 && parts[0].size() > 1 && parts[0].back() == ',' &&
             parts[3] == "GMT" && parts[1].size() == 9 && parts[1][2] == '-' &&
             parts[1][6] == '-') {
    // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"; a two-digit year below 70 is 20xx.
    month = month_index(parts[1].substr(3, 3));
    if (!parse_digits(parts[1].substr(0, 2), day) || !parse_digits(parts[1].substr(7, 2), year) ||
        !parse_clock(parts[2], secs)) {
      return std::nullopt;
    }
    year += year < 70 ? 2000 : 1900;
  } else if (parts.size() == 5 && parts[0].size() == 3) {
    // asctime: "Sun Nov  6 08:49:37 1994"
    month = month_index(parts[1]);
    if (parts[2].size() > 2 || !parse_digits(parts[2], day) || !parse_clock(parts[3], secs) ||
        parts[4].size() != 4 || !parse_digits(parts[4], year)) {
      return std::nullopt;
    }
  } else {
    return std::nullopt;
  }
  if (month == 0 || day < 1 || day > 31 || year < 1970) {
    return std::nullopt;
  }
  // Days from civil (H. Hinnant's algorithm).
  int y = year - (month <= 2 ? 1 : 0);
  int era = y / 400;
  int yoe = y - era * 400;
  int mp = (month + 9) % 12;
  int doy = (153 * mp + 2) / 5 + day - 1;
  int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  std::int64_t days = std::int64_t{era} * 146097 + doe - 719468;
  return days * 86400 + secs;
}

}  // namespace

std::optional<std::chrono::seconds> parse_retry_after(std::string_view v,
                                                      std::chrono::system_clock::time_point now) {
  v = gatehouse::http::trim_ows(v);
  if (v.empty()) {
    return std::nullopt;
  }
  if (v.front() >= '0' && v.front() <= '9') {
    // delay-seconds; anything past a day is as good as "longer than any deadline".
    std::int64_t n = 0;
    for (char c : v) {
      if (c < '0' || c > '9') {
        return std::nullopt;
      }
      n = std::min<std::int64_t>(n * 10 + (c - '0'), 86400 * 365);
    }
    return std::chrono::seconds(n);
  }
  auto at = parse_http_date(v);
  if (!at) {
    return std::nullopt;
  }
  auto now_s = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  return std::chrono::seconds(std::max<std::int64_t>(0, *at - now_s));
}

bool is_json_content_type(std::string_view v) {
  auto semi = v.find(';');
  auto type = gatehouse::http::trim_ows(v.substr(0, semi));
  if (gatehouse::http::iequals(type, "application/json")) {
    return true;
  }
  return type.size() > 5 && type.find('/') != std::string_view::npos &&
         gatehouse::http::iequals(type.substr(type.size() - 5), "+json");
}

bool json_parses(std::string_view body) {
  return nlohmann::json::accept(body);
}

}  // namespace gatehouse::upstream
