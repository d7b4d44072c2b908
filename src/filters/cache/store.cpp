#include "filters/cache/store.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>
#include <list>
#include <unordered_map>
#include <utility>

namespace gatehouse::filters::cache {
namespace {

// FNV-1a, then a murmur finaliser: shards and buckets from one hash of the key text.
std::uint64_t hash_text(std::string_view s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h = (h ^ c) * 1099511628211ULL;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  return h;
}

// Bookkeeping bytes per primary key and per entry (nodes, map slot, control blocks): counted so
// that a flood of tiny entries cannot hold far more memory than max_memory says.
constexpr std::size_t kNodeOverhead = 160;
constexpr std::size_t kEntryOverhead = sizeof(Entry) + 48;

}  // namespace

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

std::string vary_values(const std::vector<std::string>& names, const HeaderLookup& header) {
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
  hash = hash_text(text);
}

void Key::seal() {
  hash = hash_text(text);
}

// ---------------------------------------------------------------------------------------------

struct Store::Shard {
  struct Node;
  using Lru = std::list<Node*>;  // most recently used first
  struct Node {
    std::string key;
    std::size_t path_size = 0;
    std::vector<std::shared_ptr<const Entry>> variants;  // most recently stored first
    std::size_t bytes = 0;
    Lru::iterator lru;
  };
  struct Pending {
    std::uint64_t epoch = 0;
    std::vector<Waker> waiters;
    bool refresh = false;  // a stale entry is being refreshed (nobody waits on it)
  };

  mutable std::mutex mu;
  std::unordered_map<std::string, std::unique_ptr<Node>> nodes;
  std::unordered_map<std::string, Pending> pending;
  Lru lru;
  std::size_t bytes = 0;
  std::size_t entries = 0;
  std::size_t budget = 0;
  std::uint64_t evictions = 0;

  void touch(Node& n) { lru.splice(lru.begin(), lru, n.lru); }

  void erase(Node& n) {
    bytes -= n.bytes;
    entries -= n.variants.size();
    lru.erase(n.lru);
    nodes.erase(n.key);  // n is gone
  }

  void evict_to_budget(const Node* keep) {
    while (bytes > budget && !lru.empty()) {
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
  }

  // The variant of `n` whose Vary values are the request's, if any.
  static std::shared_ptr<const Entry> match(const Node& n, const HeaderLookup& header) {
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

Store::Shard& Store::shard_for(const Key& key) const {
  return *shards_[(key.hash >> 7) % shards_.size()];
}

Store::Lookup Store::lookup(Key key, const HeaderLookup& header, Clock::time_point now,
                            std::size_t max_waiters, const std::function<Waker()>& make_waker,
                            bool revalidate) {
  Lookup out;
  Shard& s = shard_for(key);
  std::lock_guard lock(s.mu);
  std::shared_ptr<const Entry> entry;
  if (auto it = s.nodes.find(key.text); it != s.nodes.end()) {
    Shard::Node& n = *it->second;
    entry = Shard::match(n, header);
    if (entry && now >= entry->stale_until) {
      entry.reset();  // expired past every window: as good as absent (LRU drops it later)
    }
    if (entry) {
      s.touch(n);
    }
  }
  auto pending = s.pending.find(key.text);
  if (entry && !revalidate && now < entry->fresh_until) {
    out.outcome = Outcome::hit;
    out.entry = std::move(entry);
    return out;
  }
  if (entry && !revalidate && now < entry->swr_until) {
    out.outcome = Outcome::stale;
    out.entry = std::move(entry);
    if (pending == s.pending.end()) {
      // One background refresh per key.
      auto& p = s.pending[key.text];
      p.epoch = epoch_.load(std::memory_order_acquire);
      p.refresh = true;
      out.fill.store_ = this;
      out.fill.key_ = std::move(key);
      out.fill.epoch_ = p.epoch;
    }
    return out;
  }
  out.entry = std::move(entry);  // stale_if_error may still use it
  if (pending != s.pending.end() && !pending->second.refresh) {
    if (pending->second.waiters.size() >= max_waiters) {
      out.outcome = Outcome::bypass;
      return out;
    }
    pending->second.waiters.push_back(make_waker());
    out.outcome = Outcome::waiting;
    return out;
  }
  if (pending != s.pending.end()) {
    // A background refresh is running but the entry is no longer servable: this request fills;
    // whichever ends last stores (both are fresh copies).
    out.outcome = Outcome::fill;
    pending->second.refresh = false;
    out.fill.store_ = this;
    out.fill.key_ = std::move(key);
    out.fill.epoch_ = epoch_.load(std::memory_order_acquire);
    return out;
  }
  auto& p = s.pending[key.text];
  p.epoch = epoch_.load(std::memory_order_acquire);
  out.outcome = Outcome::fill;
  out.fill.store_ = this;
  out.fill.key_ = std::move(key);
  out.fill.epoch_ = p.epoch;
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

bool Store::finish_fill(Fill& fill, std::shared_ptr<const Entry> entry, Clock::time_point now) {
  Shard& s = shard_for(fill.key_);
  std::vector<Waker> waiters;
  // The pending entry's key: reused as the node's map key, so storing copies no key.
  std::string pending_key;
  bool stored = false;
  {
    std::lock_guard lock(s.mu);
    if (auto it = s.pending.find(fill.key_.text); it != s.pending.end()) {
      auto handle = s.pending.extract(it);
      waiters = std::move(handle.mapped().waiters);
      pending_key = std::move(handle.key());
    }
    // Checked under the shard lock: a purge logs itself before it sweeps the shards, so either
    // it is seen here or its sweep (which takes this lock after) removes what is stored now.
    if (entry && purged_since(fill.epoch_, fill.key_.path())) {
      entry.reset();
    }
    if (entry && entry->bytes() + fill.key_.text.size() + kNodeOverhead <= s.budget) {
      auto it = s.nodes.find(fill.key_.text);
      if (it == s.nodes.end()) {
        auto node = std::make_unique<Shard::Node>();
        node->key = std::move(fill.key_.text);  // the fill ends here
        node->path_size = fill.key_.path_size;
        node->bytes = node->key.size() + kNodeOverhead;
        s.bytes += node->bytes;
        s.lru.push_front(node.get());
        node->lru = s.lru.begin();
        if (pending_key.empty()) {
          pending_key = node->key;
        }
        it = s.nodes.emplace(std::move(pending_key), std::move(node)).first;
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
    for (auto it = s.nodes.begin(); it != s.nodes.end();) {
      Shard::Node& n = *it->second;
      ++it;  // erase() removes n from the map
      if (std::string_view(n.key).substr(0, n.path_size).starts_with(prefix)) {
        removed += n.variants.size();
        s.erase(n);
      }
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
    : store_(std::exchange(o.store_, nullptr)), key_(std::move(o.key_)), epoch_(o.epoch_) {}

Fill& Fill::operator=(Fill&& o) noexcept {
  if (this != &o) {
    abandon();
    store_ = std::exchange(o.store_, nullptr);
    key_ = std::move(o.key_);
    epoch_ = o.epoch_;
  }
  return *this;
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
