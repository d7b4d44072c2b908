#include "filters/cache/store.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <iterator>
#include <list>
#include <map>
#include <random>
#include <unordered_map>
#include <utility>

namespace gatehouse::filters::cache {
namespace {

// Bookkeeping bytes per primary key and per entry (nodes, map slot, index, control blocks):
// counted so that a flood of tiny entries cannot hold far more memory than max_memory says.
constexpr std::size_t kNodeOverhead = 200;
constexpr std::size_t kEntryOverhead = sizeof(Entry) + 48;

// A fill's pending entry: its waiters count and whether it ended, in one word, so that a fill
// nobody waits for ends without the shard lock (a waiter joins only while kEnded is clear).
constexpr std::uint32_t kEnded = 1u << 31;
// Ended pending entries are reused by the next miss on their key; this many per shard are left
// for that before a sweep drops them (bounded, whatever the number of distinct keys).
constexpr int kLingering = 64;

}  // namespace

// Eight bytes a step (a key is hashed on every request of a caching route), seeded per process
// so that the buckets a key lands in cannot be known in advance, then a murmur finaliser.
std::uint64_t hash_key(std::string_view text) {
  static const std::uint64_t seed = std::random_device{}() | 1;
  constexpr std::uint64_t k = 0x9e3779b97f4a7c15ULL;
  std::uint64_t h = seed ^ (text.size() * k);
  const char* p = text.data();
  std::size_t n = text.size();
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * k;
    h ^= h >> 29;
  }
  std::uint64_t tail = 0;
  if (n > 0 && text.size() >= 8) {
    std::memcpy(&tail, text.data() + text.size() - 8, 8);  // the last 8 bytes, overlapping
  } else {
    for (std::size_t i = 0; i < n; ++i) {
      tail |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    }
  }
  h = (h ^ tail) * k;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

std::size_t Entry::bytes() const {
  std::size_t n = kEntryOverhead + lines.size() + body.size() + vary_values.size();
  for (const auto& v : vary) {
    n += v.size() + sizeof(std::string);
  }
  return n;
}

std::int64_t Entry::age(Clock::time_point now) const {
  auto held = std::chrono::duration_cast<std::chrono::seconds>(now - stored).count();
  return initial_age + std::max<std::int64_t>(0, held);
}

std::string vary_values(const std::vector<std::string>& names, HeaderRef header) {
  std::string out;
  for (const auto& name : names) {
    out += header(name);
    out += '\n';
  }
  return out;
}

Key::Key(std::string_view canonical_path, std::string_view parts)
    : path_size(canonical_path.size()) {
  text.reserve(canonical_path.size() + 1 + parts.size());
  text += canonical_path;
  text += '\0';
  text += parts;
  hash = hash_key(text);
}

void Key::seal() {
  hash = hash_key(text);
}

// ---------------------------------------------------------------------------------------------

struct Store::Shard {
  // A map key that carries its hash: looked up by KeyView (transparent), never hashed again.
  struct MapKey {
    std::string text;
    std::uint64_t hash = 0;
    std::size_t path_size = 0;
    KeyView view() const { return {text, path_size, hash}; }
  };
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(const MapKey& k) const noexcept { return k.hash; }
    std::size_t operator()(const KeyView& k) const noexcept { return k.hash; }
  };
  struct Eq {
    using is_transparent = void;
    static std::string_view text(const MapKey& k) { return k.text; }
    static std::string_view text(const KeyView& k) { return k.text; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
      return text(a) == text(b);
    }
  };

  struct Node;
  using Lru = std::list<Node*>;  // most recently used first
  // Canonical path -> node (several keys share a path: query, method): purges walk a prefix's
  // range only. The views point into the node map's keys, which do not move.
  using PathIndex = std::multimap<std::string_view, Node*>;
  struct Node {
    const MapKey* key = nullptr;                         // the node map's key
    std::vector<std::shared_ptr<const Entry>> variants;  // most recently stored first
    std::size_t bytes = 0;
    Lru::iterator lru;
    PathIndex::iterator indexed;
  };
  struct Pending {
    std::uint64_t epoch = 0;
    std::vector<Waker> waiters;
    std::atomic<std::uint32_t> state{0};  // waiters joined | kEnded
  };
  using Nodes = std::unordered_map<MapKey, std::unique_ptr<Node>, Hash, Eq>;
  using PendingMap = std::unordered_map<MapKey, Pending, Hash, Eq>;

  mutable std::mutex mu;
  Nodes nodes;
  PendingMap pending;
  PathIndex by_path;
  Lru lru;
  std::size_t bytes = 0;
  std::size_t reserved = 0;  // fills' responses being read
  std::size_t entries = 0;
  std::size_t budget = 0;
  std::uint64_t evictions = 0;
  std::atomic<int> lingering{0};  // ended pending entries left in `pending`

  void touch(Node& n) { lru.splice(lru.begin(), lru, n.lru); }

  void erase(Node& n) {
    bytes -= n.bytes;
    entries -= n.variants.size();
    lru.erase(n.lru);
    by_path.erase(n.indexed);
    nodes.erase(nodes.find(n.key->view()));  // n is gone
  }

  // Evicts from the LRU end until `extra` more bytes fit in the budget. `keep` is never evicted.
  // Returns whether they fit.
  bool evict_to_budget(const Node* keep, std::size_t extra = 0) {
    while (bytes + reserved + extra > budget && !lru.empty()) {
      Node* victim = lru.back();
      if (victim == keep && lru.size() == 1) {
        break;
      }
      if (victim == keep) {
        lru.splice(lru.begin(), lru, victim->lru);  // never evict what was just stored first
        continue;
      }
      evictions += victim->variants.size();
      erase(*victim);
    }
    return bytes + reserved + extra <= budget;
  }

  // Drops ended pending entries (under mu) once enough have piled up.
  void sweep_pending() {
    if (lingering.load(std::memory_order_relaxed) < kLingering) {
      return;
    }
    int dropped = 0;
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->second.state.load(std::memory_order_acquire) == kEnded) {
        it = pending.erase(it);
        ++dropped;
      } else {
        ++it;
      }
    }
    lingering.fetch_sub(dropped, std::memory_order_relaxed);
  }

  // The variant of `n` whose Vary values are the request's, if any.
  static std::shared_ptr<const Entry> match(const Node& n, HeaderRef header) {
    for (const auto& e : n.variants) {
      if (e->vary.empty() || e->vary_values == vary_values(e->vary, header)) {
        return e;
      }
    }
    return nullptr;
  }
};

Store::Store(Options options)
    : options_(options), counters_(std::max<std::size_t>(1, options.workers)) {
  options_.shards = std::max<std::size_t>(1, options_.shards);
  for (std::size_t i = 0; i < options_.shards; ++i) {
    shards_.push_back(std::make_unique<Shard>());
    shards_.back()->budget = options_.max_memory / options_.shards;
  }
}

Store::~Store() = default;

Store::Shard& Store::shard_for(std::uint64_t hash) const {
  return *shards_[(hash >> 7) % shards_.size()];
}

Store::Lookup Store::lookup(const KeyView& key, HeaderRef header, Clock::time_point now,
                            std::size_t max_waiters, FunctionRef<Waker()> make_waker,
                            bool revalidate, bool may_fill) {
  Lookup out;
  Shard& s = shard_for(key.hash);
  std::lock_guard lock(s.mu);
  std::shared_ptr<const Entry> entry;
  if (auto it = s.nodes.find(key); it != s.nodes.end()) {
    Shard::Node& n = *it->second;
    entry = Shard::match(n, header);
    if (entry && now >= entry->stale_until) {
      entry.reset();  // expired past every window: as good as absent (LRU drops it later)
    }
    if (entry) {
      s.touch(n);
    }
  }
  auto pending = s.pending.find(key);
  const bool running =
      pending != s.pending.end() && pending->second.state.load(std::memory_order_acquire) != kEnded;
  // Makes `out.fill` the key's fill: its pending entry reused when an ended one is left.
  auto start_fill = [&] {
    if (pending == s.pending.end()) {
      s.sweep_pending();
      pending = s.pending
                    .emplace(std::piecewise_construct,
                             std::forward_as_tuple(
                                 Shard::MapKey{std::string(key.text), key.hash, key.path_size}),
                             std::forward_as_tuple())
                    .first;
    } else {
      s.lingering.fetch_sub(1, std::memory_order_relaxed);
    }
    auto& p = pending->second;
    p.state.store(0, std::memory_order_relaxed);
    p.epoch = epoch_.load(std::memory_order_acquire);
    out.fill.store_ = this;
    out.fill.shard_ = &s;
    out.fill.pending_ = &*pending;
    out.fill.epoch_ = p.epoch;
  };
  if (entry && !revalidate && now < entry->fresh_until) {
    out.outcome = Outcome::hit;
    out.entry = std::move(entry);
    return out;
  }
  if (entry && !revalidate && now < entry->swr_until) {
    out.outcome = Outcome::stale;
    out.entry = std::move(entry);
    if (!running && may_fill) {
      start_fill();  // one background refresh per key
    }
    return out;
  }
  out.entry = std::move(entry);  // stale_if_error may still use it
  if (running) {
    // A fill (or a background refresh) is under way: its answer serves this request too.
    auto& p = pending->second;
    if (p.waiters.size() >= max_waiters) {
      out.outcome = Outcome::bypass;
      return out;
    }
    // Joins unless the fill has just ended without the lock; then this request fills.
    auto state = p.state.load(std::memory_order_acquire);
    while ((state & kEnded) == 0 &&
           !p.state.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel)) {
    }
    if ((state & kEnded) == 0) {
      p.waiters.push_back(make_waker());
      out.outcome = Outcome::waiting;
      return out;
    }
  }
  out.outcome = Outcome::fill;
  if (may_fill) {
    start_fill();
  }
  return out;
}

bool Store::purged_since(std::uint64_t epoch, std::string_view path) const {
  if (epoch_.load(std::memory_order_acquire) == epoch) {
    return false;  // the common case: no purge at all while the fill ran
  }
  std::lock_guard lock(purge_mu_);
  if (purges_.empty() || purges_.front().epoch > epoch + 1) {
    return true;  // the log no longer reaches back to the fill's start: assume the worst
  }
  for (const auto& p : purges_) {
    if (p.epoch > epoch && path.starts_with(p.prefix)) {
      return true;
    }
  }
  return false;
}

bool Store::reserve(Fill& fill, std::size_t bytes) {
  if (!fill) {
    return false;
  }
  auto& s = *static_cast<Shard*>(fill.shard_);
  std::lock_guard lock(s.mu);
  s.reserved -= fill.reserved_;
  fill.reserved_ = 0;
  // What other fills are reading is not evictable: when it leaves no room, fail without evicting.
  if (s.reserved + bytes > s.budget || !s.evict_to_budget(nullptr, bytes)) {
    return false;
  }
  s.reserved += bytes;
  fill.reserved_ = bytes;
  return true;
}

bool Store::finish_fill(Fill& fill, std::shared_ptr<const Entry> entry, Clock::time_point now) {
  Shard& s = *static_cast<Shard*>(fill.shard_);
  auto* slot = static_cast<Shard::PendingMap::value_type*>(fill.pending_);
  auto& pending = slot->second;
  if (!entry && fill.reserved_ == 0) {
    // Nothing to store: when nobody waits, ending the pending entry is all there is to do, and
    // needs no lock (a waiter joins under the lock only while kEnded is clear).
    std::uint32_t none = 0;
    if (pending.state.compare_exchange_strong(none, kEnded, std::memory_order_acq_rel)) {
      s.lingering.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  }
  std::vector<Waker> waiters;
  bool stored = false;
  {
    std::lock_guard lock(s.mu);
    s.reserved -= fill.reserved_;
    fill.reserved_ = 0;
    waiters = std::move(pending.waiters);
    pending.waiters.clear();
    const KeyView key = slot->first.view();
    // Checked under the shard lock: a purge logs itself before it sweeps the shards, so either
    // it is seen here or its sweep (which takes this lock after) removes what is stored now.
    if (entry && purged_since(fill.epoch_, key.path())) {
      entry.reset();
    }
    bool keep_pending = true;  // ended, left for the key's next miss
    if (entry && entry->bytes() + key.text.size() + kNodeOverhead <= s.budget) {
      auto it = s.nodes.find(key);
      if (it == s.nodes.end()) {
        // The pending entry's key becomes the node's: storing copies no key.
        auto handle = s.pending.extract(s.pending.find(key));
        keep_pending = false;
        auto node = std::make_unique<Shard::Node>();
        node->bytes = key.text.size() + kNodeOverhead;
        s.bytes += node->bytes;
        s.lru.push_front(node.get());
        node->lru = s.lru.begin();
        Shard::Node* raw = node.get();
        it = s.nodes.emplace(std::move(handle.key()), std::move(node)).first;
        raw->key = &it->first;
        raw->indexed = s.by_path.emplace(it->first.view().path(), raw);
        slot = nullptr;  // extracted: gone with the handle
      }
      Shard::Node& n = *it->second;
      // Replace the variant with the same Vary values (or every variant when Vary changed).
      auto& vs = n.variants;
      for (auto v = vs.begin(); v != vs.end();) {
        bool same = (*v)->vary == entry->vary && (*v)->vary_values == entry->vary_values;
        bool expired = now >= (*v)->stale_until;
        if (same || expired || (*v)->vary != entry->vary) {
          n.bytes -= (*v)->bytes();
          s.bytes -= (*v)->bytes();
          --s.entries;
          v = vs.erase(v);
        } else {
          ++v;
        }
      }
      if (vs.size() >= kMaxVariants) {
        n.bytes -= vs.back()->bytes();
        s.bytes -= vs.back()->bytes();
        --s.entries;
        ++s.evictions;
        vs.pop_back();
      }
      n.bytes += entry->bytes();
      s.bytes += entry->bytes();
      ++s.entries;
      vs.insert(vs.begin(), entry);
      s.touch(n);
      s.evict_to_budget(&n);
      stored = true;
    }
    if (keep_pending) {
      pending.state.store(kEnded, std::memory_order_release);
      s.lingering.fetch_add(1, std::memory_order_relaxed);
    }
  }
  // Waiters get what was filled even when it was not stored for size; a purged or unstorable
  // fill sends them upstream (null).
  for (auto& w : waiters) {
    w(entry);
  }
  return stored;
}

std::size_t Store::purge_prefix(std::string_view prefix) {
  {
    std::lock_guard lock(purge_mu_);
    purges_.push_back({epoch_.load(std::memory_order_relaxed) + 1, std::string(prefix)});
    if (purges_.size() > kPurgeLog) {
      purges_.pop_front();
    }
    epoch_.fetch_add(1, std::memory_order_acq_rel);
  }
  std::size_t removed = 0;
  for (auto& sp : shards_) {
    Shard& s = *sp;
    std::lock_guard lock(s.mu);
    auto it = s.by_path.lower_bound(prefix);
    while (it != s.by_path.end() && it->first.starts_with(prefix)) {
      Shard::Node& n = *it->second;
      ++it;  // erase() removes n's index entry
      removed += n.variants.size();
      s.erase(n);
    }
  }
  purged_.fetch_add(removed, std::memory_order_relaxed);
  return removed;
}

Usage Store::usage() const {
  Usage u;
  u.max_bytes = options_.max_memory;
  for (const auto& sp : shards_) {
    std::lock_guard lock(sp->mu);
    u.bytes += sp->bytes;
    u.reserved += sp->reserved;
    u.pending += sp->pending.size();
    u.entries += sp->entries;
    u.evictions += sp->evictions;
  }
  u.purged = purged_.load(std::memory_order_relaxed);
  return u;
}

void Store::render_metrics(std::string& out) const {
  std::uint64_t sums[6] = {};
  for (const auto& c : counters_) {
    sums[0] += c.hits.load(std::memory_order_relaxed);
    sums[1] += c.misses.load(std::memory_order_relaxed);
    sums[2] += c.stale.load(std::memory_order_relaxed);
    sums[3] += c.coalesced.load(std::memory_order_relaxed);
    sums[4] += c.bypass.load(std::memory_order_relaxed);
    sums[5] += c.not_stored.load(std::memory_order_relaxed);
  }
  auto u = usage();
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP gatehouse_cache_requests_total Requests on caching routes by X-Cache "
                 "outcome.\n# TYPE gatehouse_cache_requests_total counter\n"
                 "gatehouse_cache_requests_total{{result=\"hit\"}} {}\n"
                 "gatehouse_cache_requests_total{{result=\"miss\"}} {}\n"
                 "gatehouse_cache_requests_total{{result=\"stale\"}} {}\n"
                 "gatehouse_cache_requests_total{{result=\"bypass\"}} {}\n",
                 sums[0], sums[1], sums[2], sums[4]);
  fmt::format_to(
      it,
      "# HELP gatehouse_cache_coalesced_total Misses answered from another request's "
      "fill instead of going upstream.\n# TYPE gatehouse_cache_coalesced_total counter\n"
      "gatehouse_cache_coalesced_total {}\n"
      "# HELP gatehouse_cache_not_stored_total Fills whose response was not storable "
      "(status, Cache-Control, Set-Cookie, Vary: *, size, streamed, failed).\n"
      "# TYPE gatehouse_cache_not_stored_total counter\ngatehouse_cache_not_stored_total {}\n"
      "# HELP gatehouse_cache_evictions_total Entries dropped to stay within "
      "max_memory.\n# TYPE gatehouse_cache_evictions_total counter\n"
      "gatehouse_cache_evictions_total {}\n"
      "# HELP gatehouse_cache_purged_total Entries removed by purges.\n"
      "# TYPE gatehouse_cache_purged_total counter\ngatehouse_cache_purged_total {}\n"
      "# HELP gatehouse_cache_bytes Bytes the stored entries take (keys and heads "
      "included).\n# TYPE gatehouse_cache_bytes gauge\ngatehouse_cache_bytes {}\n"
      "# HELP gatehouse_cache_max_bytes cache.max_memory.\n"
      "# TYPE gatehouse_cache_max_bytes gauge\ngatehouse_cache_max_bytes {}\n"
      "# HELP gatehouse_cache_entries Stored entries (Vary variants counted).\n"
      "# TYPE gatehouse_cache_entries gauge\ngatehouse_cache_entries {}\n",
      sums[3], sums[5], u.evictions, u.purged, u.bytes, u.max_bytes, u.entries);
}

// ---------------------------------------------------------------------------------------------

Fill::Fill(Fill&& o) noexcept
    : store_(std::exchange(o.store_, nullptr)),
      shard_(o.shard_),
      pending_(o.pending_),
      epoch_(o.epoch_),
      reserved_(std::exchange(o.reserved_, 0)) {}

Fill& Fill::operator=(Fill&& o) noexcept {
  if (this != &o) {
    abandon();
    store_ = std::exchange(o.store_, nullptr);
    shard_ = o.shard_;
    pending_ = o.pending_;
    epoch_ = o.epoch_;
    reserved_ = std::exchange(o.reserved_, 0);
  }
  return *this;
}

std::uint64_t Fill::hash() const {
  return static_cast<const Store::Shard::PendingMap::value_type*>(pending_)->first.hash;
}

std::string_view Fill::path() const {
  return static_cast<const Store::Shard::PendingMap::value_type*>(pending_)->first.view().path();
}

bool Fill::complete(std::shared_ptr<const Entry> entry, Clock::time_point now) {
  if (store_ == nullptr) {
    return false;
  }
  Store* s = std::exchange(store_, nullptr);
  return s->finish_fill(*this, std::move(entry), now);
}

void Fill::abandon() {
  if (store_ != nullptr) {
    Store* s = std::exchange(store_, nullptr);
    s->finish_fill(*this, nullptr, Clock::now());
  }
}

}  // namespace gatehouse::filters::cache
