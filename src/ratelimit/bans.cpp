#include "ratelimit/bans.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>

namespace gatehouse::ratelimit {
namespace {

constexpr std::size_t kShards = 64;
constexpr std::size_t kShardedFrom = 16'384;  // smaller lists keep one exact eviction order
constexpr std::uint8_t kSticky = 255;         // a saturated filter slot stays "maybe" for good

std::size_t filter_slots(std::size_t max_entries) {
  // About 8 slots per ban: a full list leaves ~90% of slots empty. At most 1 MiB.
  std::size_t want = std::min<std::size_t>(max_entries, std::size_t{1} << 17) * 8;
  std::size_t slots = 1024;
  while (slots < want) {
    slots <<= 1;
  }
  return slots;
}

void filter_add(std::atomic<std::uint8_t>& slot) {
  auto v = slot.load(std::memory_order_relaxed);
  while (v != kSticky &&
         !slot.compare_exchange_weak(v, static_cast<std::uint8_t>(v + 1), std::memory_order_release,
                                     std::memory_order_relaxed)) {
  }
}

void filter_remove(std::atomic<std::uint8_t>& slot) {
  auto v = slot.load(std::memory_order_relaxed);
  while (v != kSticky && v != 0 &&
         !slot.compare_exchange_weak(v, static_cast<std::uint8_t>(v - 1), std::memory_order_release,
                                     std::memory_order_relaxed)) {
  }
}

struct KeyHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view k) const { return std::hash<std::string_view>{}(k); }
};

// Keys ordered by when they stop mattering; the views point into the owning map's nodes, which
// do not move.
using Order = std::multimap<Nanos, std::string_view>;

struct Ban {
  Nanos until;
  std::uint64_t probe;  // its filter slot, for when it goes
  std::string reason;
  Order::iterator order;
};

// A key's rejections in its current window. The window's end is fixed by the rule in force when
// it started (a key counted under two ban rules keeps the first one's window).
struct Counter {
  Nanos window_start;
  Nanos window_end;
  std::uint32_t count;
  Order::iterator order;
};

}  // namespace

struct alignas(64) BanList::Shard {
  std::mutex mu;
  std::size_t capacity = 1;
  std::atomic<std::uint8_t>* filter = nullptr;  // the list's, shared by every shard
  std::size_t filter_mask = 0;
  std::unordered_map<std::string, Ban, KeyHash, std::equal_to<>> bans;
  Order ban_order;  // by `until`: the front ends first
  std::unordered_map<std::string, Counter, KeyHash, std::equal_to<>> counters;
  Order counter_order;  // by `window_end`

  std::atomic<std::uint8_t>& slot(std::uint64_t probe) { return filter[probe & filter_mask]; }

  // Each returns how many bans it removed, for the list's total.
  std::size_t erase_ban(decltype(bans)::iterator it) {
    filter_remove(slot(it->second.probe));
    ban_order.erase(it->second.order);
    bans.erase(it);
    return 1;
  }
  std::size_t drop_expired_bans(Nanos now) {
    std::size_t n = 0;
    while (!ban_order.empty() && ban_order.begin()->first <= now) {
      n += erase_ban(bans.find(ban_order.begin()->second));
    }
    return n;
  }
  // Room for one more ban: the one closest to its end goes (an expired one, if any).
  std::size_t evict_ban_if_full() {
    if (bans.size() >= capacity && !ban_order.empty()) {
      return erase_ban(bans.find(ban_order.begin()->second));
    }
    return 0;
  }
  void insert_ban(std::string key, std::uint64_t probe, std::string_view reason, Nanos until) {
    auto it = bans.emplace(std::move(key), Ban{until, probe, std::string(reason), {}}).first;
    it->second.order = ban_order.emplace(until, it->first);
    filter_add(slot(probe));
  }
  void extend_ban(Ban& ban, std::string_view key, Nanos until) {
    if (until > ban.until) {
      ban_order.erase(ban.order);
      ban.until = until;
      ban.order = ban_order.emplace(until, key);
    }
  }

  void erase_counter(decltype(counters)::iterator it) {
    counter_order.erase(it->second.order);
    counters.erase(it);
  }
  // Room for one more counter: windows that ended go first (their count would restart anyway),
  // then the window that ends first.
  void make_room_for_counter(Nanos now) {
    while (!counter_order.empty() && counter_order.begin()->first <= now) {
      erase_counter(counters.find(counter_order.begin()->second));
    }
    if (counters.size() >= capacity && !counter_order.empty()) {
      erase_counter(counters.find(counter_order.begin()->second));
    }
  }
  void restart_window(Counter& c, std::string_view key, Nanos now, Nanos within) {
    counter_order.erase(c.order);
    c.window_start = now;
    c.window_end = now + within;
    c.count = 0;
    c.order = counter_order.emplace(c.window_end, key);
  }
};

BanList::BanList(std::size_t max_entries, std::size_t shards)
    : shard_count_(shards != 0                   ? shards
                   : max_entries >= kShardedFrom ? kShards
                                                 : 1) {
  // Every shard holds at least one entry.
  shard_count_ = std::clamp<std::size_t>(max_entries, 1, shard_count_);
  shards_ = std::make_unique<Shard[]>(shard_count_);
  const std::size_t slots = filter_slots(max_entries);
  filter_mask_ = slots - 1;
  filter_ = std::make_unique<std::atomic<std::uint8_t>[]>(slots);  // value-initialised: zeros
  for (std::size_t s = 0; s < shard_count_; ++s) {
    shards_[s].filter = filter_.get();
    shards_[s].filter_mask = filter_mask_;
    // The cap split exactly: shards differ by at most one entry and the sum is max_entries.
    shards_[s].capacity = std::max<std::size_t>(
        1, max_entries / shard_count_ + (s < max_entries % shard_count_ ? 1 : 0));
  }
}

BanList::~BanList() = default;

BanList::Shard& BanList::shard_for(std::size_t hash) {
  // High bits: the filter and the maps inside the shard use the low ones.
  return shards_[shard_count_ == 1 ? 0 : (hash >> 40) % shard_count_];
}

// The flag follows the count through its transitions. A removal that empties the list clears the
// flag, then looks at the count again: an addition that raced with it either sees the cleared flag
// and sets it, or is seen by that second look (sequentially consistent operations, on this rare
// path only).
void BanList::added(std::size_t n) {
  if (n == 0) {
    return;
  }
  active_.fetch_add(n);
  if (!any_.flag.load()) {
    any_.flag.store(true);
  }
}

void BanList::removed(std::size_t n) {
  if (n == 0) {
    return;
  }
  if (active_.fetch_sub(n) == n) {
    any_.flag.store(false);
    if (active_.load() > 0) {
      any_.flag.store(true);
    }
  }
}

std::uint64_t BanList::probe_of(std::string_view bytes) {
  return KeyHash{}(bytes);
}

bool BanList::may_be_banned(std::uint64_t probe) const {
  return filter_[probe & filter_mask_].load(std::memory_order_acquire) != 0;
}

std::optional<Nanos> BanList::banned(std::string_view key, std::uint64_t probe, Nanos now) {
  if (!may_be_banned(probe)) {
    return std::nullopt;  // no lock: the common answer while others are banned
  }
  Shard& sh = shard_for(KeyHash{}(key));
  std::lock_guard lock(sh.mu);
  auto it = sh.bans.find(key);
  if (it == sh.bans.end()) {
    return std::nullopt;
  }
  if (it->second.until <= now) {
    removed(sh.erase_ban(it));
    return std::nullopt;
  }
  return it->second.until - now;
}

bool BanList::record_rejection(std::string_view key, std::uint64_t probe, const BanRule& rule,
                               std::string_view reason, Nanos now) {
  Shard& sh = shard_for(KeyHash{}(key));
  std::lock_guard lock(sh.mu);
  if (auto b = sh.bans.find(key); b != sh.bans.end()) {
    if (b->second.until > now) {
      return false;  // already banned
    }
    removed(sh.erase_ban(b));
  }
  auto it = sh.counters.find(key);
  if (it == sh.counters.end()) {
    sh.make_room_for_counter(now);
    it = sh.counters.emplace(std::string(key), Counter{now, now, 0, {}}).first;
    it->second.order = sh.counter_order.emplace(now, it->first);
    sh.restart_window(it->second, it->first, now, rule.within);
  } else if (now >= it->second.window_end || now < it->second.window_start) {
    sh.restart_window(it->second, it->first, now, rule.within);
  }
  if (++it->second.count < rule.after) {
    return false;
  }
  sh.counter_order.erase(it->second.order);
  std::string k = std::move(sh.counters.extract(it).key());  // the key moves on to the ban
  std::size_t dropped = sh.drop_expired_bans(now) + sh.evict_ban_if_full();
  sh.insert_ban(std::move(k), probe, reason, now + rule.duration);
  added(1);
  removed(dropped);
  return true;
}

void BanList::impose(std::string_view key, std::uint64_t probe, std::string_view reason,
                     Nanos until) {
  Shard& sh = shard_for(KeyHash{}(key));
  std::lock_guard lock(sh.mu);
  if (auto b = sh.bans.find(key); b != sh.bans.end()) {
    sh.extend_ban(b->second, b->first, until);
    return;
  }
  if (auto c = sh.counters.find(key); c != sh.counters.end()) {
    sh.erase_counter(c);
  }
  std::size_t dropped = sh.evict_ban_if_full();
  sh.insert_ban(std::string(key), probe, reason, until);
  added(1);
  removed(dropped);
}

std::vector<BanInfo> BanList::list(Nanos now) {
  std::vector<BanInfo> out;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    Shard& sh = shards_[s];
    std::lock_guard lock(sh.mu);
    removed(sh.drop_expired_bans(now));
    for (const auto& [key, ban] : sh.bans) {
      out.push_back(BanInfo{key, ban.reason, ban.until - now});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const BanInfo& a, const BanInfo& b) { return a.key < b.key; });
  return out;
}

std::pair<std::vector<BanInfo>, std::size_t> BanList::longest(std::size_t n, Nanos now) {
  std::vector<BanInfo> out;
  std::size_t total = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    Shard& sh = shards_[s];
    std::lock_guard lock(sh.mu);
    removed(sh.drop_expired_bans(now));
    total += sh.bans.size();
    std::size_t taken = 0;
    for (auto it = sh.ban_order.rbegin(); it != sh.ban_order.rend() && taken < n; ++it, ++taken) {
      out.push_back(BanInfo{std::string(it->second), sh.bans.find(it->second)->second.reason,
                            it->first - now});
    }
  }
  std::sort(out.begin(), out.end(), [](const BanInfo& a, const BanInfo& b) {
    return a.remaining != b.remaining ? a.remaining > b.remaining : a.key < b.key;
  });
  if (out.size() > n) {
    out.resize(n);
  }
  return {std::move(out), total};
}

bool BanList::lift(std::string_view key) {
  Shard& sh = shard_for(KeyHash{}(key));
  std::lock_guard lock(sh.mu);
  auto it = sh.bans.find(key);
  if (it == sh.bans.end()) {
    return false;
  }
  removed(sh.erase_ban(it));
  return true;
}

std::size_t BanList::lift_all() {
  std::size_t n = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    Shard& sh = shards_[s];
    std::lock_guard lock(sh.mu);
    n += sh.bans.size();
    removed(sh.bans.size());
    for (const auto& kv : sh.bans) {
      filter_remove(sh.slot(kv.second.probe));
    }
    sh.bans.clear();
    sh.ban_order.clear();
  }
  return n;
}

std::size_t BanList::active(Nanos now) {
  std::size_t n = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    Shard& sh = shards_[s];
    std::lock_guard lock(sh.mu);
    removed(sh.drop_expired_bans(now));
    n += sh.bans.size();
  }
  return n;
}

std::size_t BanList::counters() const {
  std::size_t n = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    std::lock_guard lock(shards_[s].mu);
    n += shards_[s].counters.size();
  }
  return n;
}

}  // namespace gatehouse::ratelimit
