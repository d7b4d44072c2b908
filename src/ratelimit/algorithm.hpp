#pragma once
// The four limiting algorithms as pure functions over a 32-byte per-key state, with time passed in
// (integer nanoseconds from an injected clock). evaluate() never mutates: it returns the outcome
// and the state to store if the caller commits, so a request checked against several stacked
// limits consumes quota only when every limit allows it.
//
// Arithmetic is exact integer math in 128 bits: token bucket and GCRA scale time by the limit's
// count, so an emission interval like 1/7 s has no rounding error.
#include <cstdint>
#include <limits>

#include "ratelimit/rate.hpp"

namespace gatehouse::ratelimit {

enum class Algorithm : std::uint8_t { sliding_window, fixed_window, token_bucket, gcra };

const char* algorithm_name(Algorithm a);

struct Params {
  std::uint64_t count = 1;  // L: requests per period
  Nanos period = 1;         // P, > 0
  std::uint64_t burst = 0;  // token bucket capacity / GCRA burst; 0 = count
  std::uint64_t effective_burst() const { return burst == 0 ? count : burst; }
};

// Per key and limit. The meaning of the fields depends on the algorithm; fresh() is a key never
// seen before.
struct State {
  __int128 v = 0;
  std::int64_t t = std::numeric_limits<std::int64_t>::min();
  std::int64_t n = 0;
  static State fresh() { return {}; }
  bool is_fresh() const { return t == std::numeric_limits<std::int64_t>::min(); }
};
static_assert(sizeof(State) == 32);

struct Outcome {
  bool allowed = false;
  std::uint64_t limit = 0;      // the quota the headers advertise (count, or burst for buckets)
  std::uint64_t remaining = 0;  // requests left after this one (0 when rejected)
  Nanos reset_after = 0;        // until the quota is fully restored
  Nanos retry_after = 0;        // rejected: until the next request would be allowed (exact)
};

struct Evaluation {
  Outcome outcome;
  State next;  // store this if the request is admitted by every limit
};

// A clock going backwards is treated as no time passing.
Evaluation evaluate(Algorithm algorithm, const Params& params, const State& state, Nanos now);

}  // namespace gatehouse::ratelimit
