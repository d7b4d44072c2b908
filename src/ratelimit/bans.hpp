#pragma once
// Temporary bans: a key rejected `after` times within `within` is banned for `duration`. Counting
// happens only on rejections and lookups only while some ban is active, so the common path costs
// one relaxed atomic load. Both tables are capped; when full, expired entries are dropped first,
// then the ban closest to expiry (or the oldest rejection counter) makes room.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ratelimit/rate.hpp"

namespace gatehouse::ratelimit {

struct BanRule {
  std::uint32_t after = 1;
  Nanos within = 0;
  Nanos duration = 0;
};

struct BanInfo {
  std::string key;      // the key as the limiter names it ("ip=203.0.113.7")
  std::string reason;   // what triggered it ("route=generate limit=10/minute")
  Nanos remaining = 0;  // until the ban ends
};

class BanList {
 public:
  explicit BanList(std::size_t max_entries = 100'000) : max_entries_(max_entries) {}

  bool any_active() const { return active_.load(std::memory_order_relaxed) > 0; }

  // Time left on `key`'s ban, if banned at `now`.
  std::optional<Nanos> banned(std::string_view key, Nanos now);

  // Counts a rejection; returns true when this rejection starts a ban.
  bool record_rejection(std::string_view key, const BanRule& rule, std::string_view reason,
                        Nanos now);

  // Records a ban decided elsewhere (the shared store) until `until`; an existing ban is only
  // extended.
  void impose(std::string_view key, std::string_view reason, Nanos until);

  std::vector<BanInfo> list(Nanos now);
  // Lifts one ban (returns whether it existed) or all of them (returns how many).
  bool lift(std::string_view key);
  std::size_t lift_all();
  std::size_t active(Nanos now);

 private:
  struct Ban {
    Nanos until;
    std::string reason;
  };
  struct Counter {
    Nanos window_start;
    std::uint32_t count;
  };
  void prune(Nanos now);

  std::size_t max_entries_;
  std::mutex mu_;
  std::unordered_map<std::string, Ban> bans_;
  std::unordered_map<std::string, Counter> counters_;
  std::atomic<std::size_t> active_{0};
};

}  // namespace gatehouse::ratelimit
