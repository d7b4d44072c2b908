#pragma once
// Temporary bans: a key rejected `after` times within `within` is banned for `duration`. Counting
// happens only on rejections and lookups only while some ban is active, so the common path costs
// one relaxed atomic load.
//
// Keys are spread over shards by hash, each with its own mutex, like the counters of
// MemoryStore: an address spray that bans thousands of keys contends with a normal client's
// lookup only when both land in the same shard, and no request takes a process-wide lock. Each
// shard keeps its bans and its rejection counters ordered by expiry, so expired entries leave
// from the front and making room costs O(log n), never a scan.
//
// A lookup first reads one byte of a lock-free counting filter (how many bans probe that slot);
// a key whose slot is zero is not banned, and the common case during a spray, a normal client
// looking itself up, takes no lock at all. Only a slot shared with a ban (about 10% of slots when
// the list is full) sends the lookup to its shard.
//
// Both tables are capped (per shard: the cap split evenly). When a shard's table is full, expired
// entries are dropped first; then the ban closest to its end, or the rejection counter whose window
// ends first, makes room.
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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
  // `shards` 0: one shard below 16,384 entries (exact order, for small caps), else 64.
  explicit BanList(std::size_t max_entries = 100'000, std::size_t shards = 0);
  ~BanList();
  BanList(const BanList&) = delete;
  BanList& operator=(const BanList&) = delete;

  // Whether some ban may be active (expired bans not yet dropped count too).
  // Read on every decision, so it reads a flag that changes only when the list turns empty or
  // non-empty: the count, written on every ban, would move its cache line between the cores of a
  // sprayed worker and every other worker.
  bool any_active() const { return any_.flag.load(std::memory_order_relaxed); }

  // A key comes with a probe: a hash that picks its filter slot. The caller may derive it from
  // cheaper inputs than the key's text (the limiter hashes the binary key it already builds,
  // rather than formatting or HMAC-ing an address per request); the one rule is that equal keys
  // always come with equal probes. The forms without a probe use probe_of(key).
  static std::uint64_t probe_of(std::string_view bytes);
  // False: certainly not banned (one lock-free load). True: look it up with banned().
  bool may_be_banned(std::uint64_t probe) const;

  // Time left on `key`'s ban, if banned at `now`.
  std::optional<Nanos> banned(std::string_view key, std::uint64_t probe, Nanos now);
  std::optional<Nanos> banned(std::string_view key, Nanos now) {
    return banned(key, probe_of(key), now);
  }

  // Counts a rejection; returns true when this rejection starts a ban.
  bool record_rejection(std::string_view key, std::uint64_t probe, const BanRule& rule,
                        std::string_view reason, Nanos now);
  bool record_rejection(std::string_view key, const BanRule& rule, std::string_view reason,
                        Nanos now) {
    return record_rejection(key, probe_of(key), rule, reason, now);
  }

  // Records a ban decided elsewhere (the shared store) until `until`; an existing ban is only
  // extended.
  void impose(std::string_view key, std::uint64_t probe, std::string_view reason, Nanos until);
  void impose(std::string_view key, std::string_view reason, Nanos until) {
    impose(key, probe_of(key), reason, until);
  }

  // Admin and metrics: these visit every shard (one lock at a time).
  std::vector<BanInfo> list(Nanos now);
  // The `n` bans with the most time left, longest first, and how many are active (the dashboard,
  // once a second: it copies at most n per shard, whatever the number of bans).
  std::pair<std::vector<BanInfo>, std::size_t> longest(std::size_t n, Nanos now);
  // Lifts one ban (returns whether it existed) or all of them (returns how many).
  bool lift(std::string_view key);
  std::size_t lift_all();
  std::size_t active(Nanos now);

  // Rejection counters held now (for tests of the cap).
  std::size_t counters() const;
  bool may_be_banned(std::string_view key) const { return may_be_banned(probe_of(key)); }
  std::size_t shard_count() const { return shard_count_; }

 private:
  struct Shard;
  Shard& shard_for(std::size_t hash);

  std::size_t shard_count_;
  std::unique_ptr<Shard[]> shards_;
  std::size_t filter_mask_;
  std::unique_ptr<std::atomic<std::uint8_t>[]> filter_;
  void added(std::size_t n);
  void removed(std::size_t n);

  std::atomic<std::size_t> active_{0};  // bans held, all shards
  struct alignas(64) AnyFlag {
    std::atomic<bool> flag{false};  // active_ > 0, on a cache line of its own
  };
  AnyFlag any_;
};

}  // namespace gatehouse::ratelimit
