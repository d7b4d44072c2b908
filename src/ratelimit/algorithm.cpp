#include "ratelimit/algorithm.hpp"

#include <algorithm>

namespace gatehouse::ratelimit {
namespace {

using i128 = __int128;

// ceil(a / b) for a >= 0, b > 0.
i128 ceil_div(i128 a, i128 b) {
  return (a + b - 1) / b;
}

Nanos clamp_nanos(i128 v) {
  if (v <= 0) {
    return 0;
  }
  if (v > std::numeric_limits<Nanos>::max()) {
    return std::numeric_limits<Nanos>::max();
  }
  return static_cast<Nanos>(v);
}

std::uint64_t clamp_count(i128 v) {
  return v <= 0 ? 0 : static_cast<std::uint64_t>(v);
}

// State: t = window start, n = count in the window. Windows start at the key's first request and
// follow each other back to back, so a client's first `count` requests are always admitted.
Evaluation fixed_window(const Params& p, const State& s, Nanos now) {
  Evaluation e;
  State w = s;
  if (w.is_fresh()) {
    w = State{0, now, 0};
  } else if (now >= w.t + p.period) {
    w.t += (now - w.t) / p.period * p.period;
    w.n = 0;
  }
  auto count = static_cast<std::uint64_t>(w.n);
  e.outcome.limit = p.count;
  e.outcome.allowed = count < p.count;
  // At most P: a clock that went back before the window start is no time passing.
  Nanos window_left = std::clamp<Nanos>(w.t + p.period - now, 0, p.period);
  e.outcome.reset_after = window_left;
  if (e.outcome.allowed) {
    w.n += 1;
    e.outcome.remaining = p.count - count - 1;
  } else {
    e.outcome.retry_after = window_left;
  }
  e.next = w;
  return e;
}

// Two-window approximation: t = current window start, n = requests in it, v = requests in the
// previous window. The previous window counts with the weight of the part of it the sliding
// window still covers: estimate = prev * (P - elapsed) / P + curr, compared exactly as
// prev * (P - elapsed) + curr * P <= L * P.
Evaluation sliding_window(const Params& p, const State& s, Nanos now) {
  Evaluation e;
  State w = s;
  const i128 P = p.period;
  const i128 L = static_cast<i128>(p.count);
  if (w.is_fresh()) {
    w = State{0, now, 0};
  } else if (now >= w.t + p.period) {
    Nanos k = (now - w.t) / p.period;
    w.v = k == 1 ? w.n : 0;
    w.n = 0;
    w.t += k * p.period;
  }
  i128 elapsed = std::max<Nanos>(0, now - w.t);  // < P; 0 when the clock went back
  i128 prev = w.v;
  i128 curr = w.n;
  i128 weighted_prev = prev * (P - elapsed);
  e.outcome.limit = p.count;
  e.outcome.allowed = weighted_prev + (curr + 1) * P <= L * P;
  if (e.outcome.allowed) {
    curr += 1;
    w.n += 1;
    e.outcome.remaining = clamp_count((L * P - weighted_prev - curr * P) / P);
  } else {
    // Earliest time the request fits: later in this window if the previous window's weight is
    // what blocks it, otherwise in the next window where today's count becomes the previous.
    i128 at = -1;
    if (prev > 0 && L - curr - 1 >= 0) {
      i128 e_min = P - (L - curr - 1) * P / prev;  // smallest e with prev*(P-e) <= (L-curr-1)*P
      if (e_min < P) {
        at = std::max<i128>(e_min, elapsed);
      }
    }
    if (at < 0) {
      i128 e_min = curr == 0 ? 0 : P - (L - 1) * P / curr;
      at = P + std::max<i128>(0, e_min);
    }
    e.outcome.retry_after = clamp_nanos(at - elapsed);
  }
  // Until every counted request has slid out of the window.
  if (curr > 0) {
    e.outcome.reset_after = clamp_nanos(2 * P - elapsed);
  } else if (prev > 0) {
    e.outcome.reset_after = clamp_nanos(P - elapsed);
  }
  e.next = w;
  return e;
}

// v = level in units of (token x P): refilled by `count` units per nanosecond, a request costs P,
// capacity is burst x P. t = time of the last update.
Evaluation token_bucket(const Params& p, const State& s, Nanos now) {
  Evaluation e;
  State w = s;
  const i128 P = p.period;
  const i128 L = static_cast<i128>(p.count);
  const i128 cap = static_cast<i128>(p.effective_burst()) * P;
  if (w.is_fresh()) {
    w = State{cap, now, 0};
  } else if (now > w.t) {
    w.v = std::min(cap, w.v + static_cast<i128>(now - w.t) * L);
    w.t = now;
  }
  e.outcome.limit = p.count;
  e.outcome.allowed = w.v >= P;
  if (e.outcome.allowed) {
    w.v -= P;
    e.outcome.remaining = clamp_count(w.v / P);
  } else {
    e.outcome.retry_after = clamp_nanos(ceil_div(P - w.v, L));
  }
  e.outcome.reset_after = clamp_nanos(ceil_div(cap - w.v, L));
  e.next = w;
  return e;
}

// Generic cell rate algorithm with time scaled by count (one emission interval = P units):
// v = theoretical arrival time, t = latest time seen (a clock going back is no time passing, as
// for the token bucket, rather than a debt growing). Admit when the new TAT is at most burst
// intervals ahead of now.
Evaluation gcra(const Params& p, const State& s, Nanos now) {
  Evaluation e;
  State w = s;
  if (w.is_fresh()) {
    w = State{static_cast<i128>(now) * static_cast<i128>(p.count), now, 0};
  }
  now = std::max(now, w.t);
  w.t = now;
  const i128 P = p.period;
  const i128 L = static_cast<i128>(p.count);
  const i128 window = static_cast<i128>(p.effective_burst()) * P;
  const i128 scaled_now = static_cast<i128>(now) * L;
  i128 tat = std::max(w.v, scaled_now);
  i128 new_tat = tat + P;
  e.outcome.limit = p.count;
  e.outcome.allowed = new_tat - scaled_now <= window;
  if (e.outcome.allowed) {
    w.v = new_tat;
    e.outcome.remaining = clamp_count((window - (new_tat - scaled_now)) / P);
    e.outcome.reset_after = clamp_nanos(ceil_div(new_tat - scaled_now, L));
  } else {
    e.outcome.retry_after = clamp_nanos(ceil_div(new_tat - scaled_now - window, L));
    e.outcome.reset_after = clamp_nanos(ceil_div(tat - scaled_now, L));
  }
  e.next = w;
  return e;
}

}  // namespace

const char* algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::sliding_window:
      return "sliding_window";
    case Algorithm::fixed_window:
      return "fixed_window";
    case Algorithm::token_bucket:
      return "token_bucket";
    case Algorithm::gcra:
      return "gcra";
  }
  return "?";
}

Evaluation evaluate(Algorithm algorithm, const Params& params, const State& state, Nanos now) {
  switch (algorithm) {
    case Algorithm::fixed_window:
      return fixed_window(params, state, now);
    case Algorithm::sliding_window:
      return sliding_window(params, state, now);
    case Algorithm::token_bucket:
      return token_bucket(params, state, now);
    case Algorithm::gcra:
      return gcra(params, state, now);
  }
  return {};
}

}  // namespace gatehouse::ratelimit
