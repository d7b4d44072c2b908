#pragma once
// The limiter's time source, injected so tests control it to the nanosecond.
#include <chrono>
#include <cstdint>

#include "ratelimit/rate.hpp"

namespace gatehouse::ratelimit {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Nanos now() const = 0;                  // monotonic
  virtual std::int64_t unix_seconds() const = 0;  // wall clock, for X-RateLimit-Reset
  // Wall time minus now(), in nanoseconds: turns a monotonic instant into Unix time without a
  // second clock read per request (taken once; NTP slews after that are ignored).
  virtual Nanos wall_offset() const = 0;
};

class SteadyClock final : public Clock {
 public:
  Nanos now() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  std::int64_t unix_seconds() const override {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  Nanos wall_offset() const override {
    auto wall = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
    return wall - now();
  }
};

// Tests: time moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Nanos start = 1'000'000'000, std::int64_t unix_start = 1'700'000'000)
      : now_(start), unix_(unix_start) {}
  Nanos now() const override { return now_; }
  std::int64_t unix_seconds() const override { return unix_ + (now_ - start_) / 1'000'000'000; }
  Nanos wall_offset() const override { return unix_ * 1'000'000'000 - start_; }
  void set(Nanos t) { now_ = t; }
  void advance(Nanos d) { now_ += d; }

 private:
  Nanos now_;
  Nanos start_ = now_;
  std::int64_t unix_;
};

}  // namespace gatehouse::ratelimit
