#pragma once
// The response cache's process-wide store (issue 14): one per process, shared by every worker (a
// miss filled on worker 1 is a hit on worker 2) and by the admin thread (purges). Pure logic, no
// Asio: time is a parameter (tests inject it) and waiters are woken through a callback that the
// caller makes post to its own executor.
//
// Sharded by key hash, a mutex per shard; LRU by bytes within each shard's share of max_memory
// (the key and the head count, not only the body, and so do the bodies of fills in progress).
// The key is hashed once, by the caller: the shard and both maps use that hash. A fill that ends
// without storing and without waiters is released without the shard lock, so a miss on a route
// whose responses are not storable takes the lock once. Entries are immutable and shared
// (std::shared_ptr<const Entry>): a hit copies a pointer under the shard lock and writes the
// response outside it.
//
// A primary key (the canonical path plus the route's key parts) holds up to kMaxVariants entries,
// one per value set of the response's `Vary` fields. One fill (a miss sent upstream) per primary
// key at a time: concurrent misses wait for it (coalescing).
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace gatehouse::filters::cache {

using Clock = std::chrono::steady_clock;

// One stored response. Never changed once stored.
struct Entry {
  unsigned status = 200;
  // The upstream's header lines as the client got them ("Name: value\r\n" each), without framing
  // (Content-Length, Transfer-Encoding), hop-by-hop fields, Date, Age and Set-Cookie.
  std::string lines;
  std::string body;
  Clock::time_point stored;       // for Age
  std::int64_t initial_age = 0;   // seconds: the upstream's own Age when it arrived
  Clock::time_point fresh_until;  // served as HIT before this
  Clock::time_point stale_until;  // served as STALE (revalidate or error) before this
  Clock::time_point swr_until;    // stale_while_revalidate ends (<= stale_until)
  // Vary: the lower-case field names (sorted, deduplicated) and the request's values for them,
  // '\n'-joined; both empty without Vary.
  std::vector<std::string> vary;
  std::string vary_values;

  // What this entry costs against max_memory.
  std::size_t bytes() const;
  // Seconds since the upstream made it (the Age header).
  std::int64_t age(Clock::time_point now) const;
};

// A callable borrowed for the duration of one call (no allocation, no copy of the callable):
// how the look-up, on every request of a caching route, takes its callbacks.
template <class Sig>
class FunctionRef;
template <class R, class... A>
class FunctionRef<R(A...)> {
 public:
  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, FunctionRef> &&
           std::is_invocable_r_v<R, F&, A...>) FunctionRef(F&& f)
  noexcept  // NOLINT(google-explicit-constructor)
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* o, A... a) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...);
        }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

// A request's value of a header field (empty when absent): how the store reads Vary'd fields.
using HeaderLookup = std::function<std::string_view(std::string_view name)>;
using HeaderRef = FunctionRef<std::string_view(std::string_view name)>;

// The values of `names` in the request, in the form Entry::vary_values holds.
std::string vary_values(const std::vector<std::string>& names, HeaderRef header);

// A key as the store looks it up: its text (canonical path '\0' parts), where the path ends, and
// its hash (hash_key(text)), computed once by whoever built the text.
struct KeyView {
  std::string_view text;
  std::size_t path_size = 0;
  std::uint64_t hash = 0;
  std::string_view path() const { return text.substr(0, path_size); }
};

std::uint64_t hash_key(std::string_view text);

// A bounded key: the canonical path (kept whole: purges match on it) and the route's other key
// parts (long ones, such as a body, already hashed by the caller).
struct Key {
  std::string text;           // path '\0' parts
  std::size_t path_size = 0;  // text[0, path_size) is the canonical path
  std::uint64_t hash = 0;

  Key() = default;
  Key(std::string_view canonical_path, std::string_view parts);
  std::string_view path() const { return std::string_view(text).substr(0, path_size); }
  // For a key built in place (text and path_size set): computes the hash.
  void seal();
  KeyView view() const { return {text, path_size, hash}; }
};

class Store;

// The right, and the duty, to fill a primary key: given to one missing request. Completing it
// (complete()) stores the response, unless a purge covering the key ran since the fill began,
// and wakes the waiters; dropping it unfinished wakes them with nothing (they go upstream).
class Fill {
 public:
  Fill() = default;
  Fill(Fill&& o) noexcept;
  Fill& operator=(Fill&& o) noexcept;
  Fill(const Fill&) = delete;
  Fill& operator=(const Fill&) = delete;
  ~Fill() { abandon(); }

  explicit operator bool() const { return store_ != nullptr; }
  std::uint64_t hash() const;
  std::string_view path() const;
  // Stores `entry` (null: not storable) and hands it to the waiters. Returns whether it was stored.
  bool complete(std::shared_ptr<const Entry> entry, Clock::time_point now);
  // Releases the waiters without an entry (they go upstream at once).
  void abandon();

 private:
  friend class Store;
  Store* store_ = nullptr;
  void* shard_ = nullptr;     // Store::Shard
  void* pending_ = nullptr;   // the shard's pending entry this fill owns (stable until it ends)
  std::uint64_t epoch_ = 0;   // the store's purge epoch when the fill began
  std::size_t reserved_ = 0;  // bytes held against max_memory for the response being read
};

// A waiter's wake-up: the filled entry, or null when the fill stored nothing (go upstream). Called
// on the filling thread (or the purging one) without a store lock held: post to your executor.
using Waker = std::function<void(std::shared_ptr<const Entry>)>;

// What the filter counts, per worker (each worker writes only its own, relaxed): summed by
// render_metrics on the admin thread.
struct alignas(64) Counters {
  std::atomic<std::uint64_t> hits{0};
  std::atomic<std::uint64_t> misses{0};
  std::atomic<std::uint64_t> stale{0};      // STALE answers (revalidate or error)
  std::atomic<std::uint64_t> coalesced{0};  // answered from another request's fill
  std::atomic<std::uint64_t> bypass{0};  // not looked up or not stored by rule, or over max_waiters
  std::atomic<std::uint64_t> not_stored{0};  // fills whose response could not be stored
  static void add(std::atomic<std::uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }
};

struct Usage {
  std::size_t bytes = 0;
  std::size_t entries = 0;
  std::size_t reserved = 0;  // held by fills whose response is being read
  std::size_t pending = 0;   // fills in progress, and ended ones kept for their key's next miss
  std::size_t max_bytes = 0;
  std::uint64_t evictions = 0;
  std::uint64_t purged = 0;
};

class Store {
 public:
  static constexpr std::size_t kMaxVariants = 8;  // Vary value sets per primary key (LRU beyond)
  static constexpr std::size_t kPurgeLog = 256;   // purges remembered for fills in flight

  struct Options {
    std::size_t max_memory = 256 * 1024 * 1024;
    std::size_t shards = 16;
    unsigned workers = 1;
  };
  explicit Store(Options options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  enum class Outcome : std::uint8_t {
    hit,      // entry is fresh
    stale,    // entry is past fresh_until (and before stale_until); fill set: refresh it
    fill,     // nothing usable: fill is yours, go upstream
    waiting,  // another request is filling: the waker made will be called once
    bypass,   // max_waiters already wait: go upstream without storing
  };
  struct Lookup {
    Outcome outcome = Outcome::fill;
    std::shared_ptr<const Entry>
        entry;  // hit, stale; and the expired entry on fill (stale_if_error)
    Fill fill;  // fill; stale when a refresh is due and nobody runs one
  };

  // One atomic step under the key's shard lock: a usable entry, or the fill, or a place among the
  // waiters. `revalidate`: ignore a fresh entry (a client's `no-cache` on a route that allows it).
  // `make_waker` is called (under the shard lock) only when the caller is to wait. `may_fill`
  // false (a HEAD: its response has no body to store): a miss is answered `fill` without a fill,
  // so the key stays free for a GET whose response can be stored; the request still waits for a
  // fill in progress. The key's text is copied only when a fill starts.
  Lookup lookup(const KeyView& key, HeaderRef header, Clock::time_point now,
                std::size_t max_waiters, FunctionRef<Waker()> make_waker, bool revalidate = false,
                bool may_fill = true);
  Lookup lookup(const Key& key, HeaderRef header, Clock::time_point now, std::size_t max_waiters,
                FunctionRef<Waker()> make_waker, bool revalidate = false, bool may_fill = true) {
    return lookup(key.view(), header, now, max_waiters, make_waker, revalidate, may_fill);
  }

  // Holds `bytes` of max_memory for `fill`'s response while it is read (LRU entries of the fill's
  // shard are evicted to make room), so that concurrent large misses cannot together exceed
  // max_memory. False when they cannot fit: the response is relayed, not stored. Given back when
  // the fill ends.
  bool reserve(Fill& fill, std::size_t bytes);

  // Removes every entry whose canonical path starts with `prefix`, and makes every fill in flight
  // for such a path store nothing (its waiters go upstream). Thread-safe, from any thread. Touches
  // only the matching entries (an ordered index by path per shard). Returns the number removed.
  std::size_t purge_prefix(std::string_view canonical_path_prefix);

  Usage usage() const;
  std::size_t max_memory() const { return options_.max_memory; }
  Counters& counters(unsigned worker) { return counters_[worker % counters_.size()]; }
  // Prometheus text: gatehouse_cache_* (admin thread).
  void render_metrics(std::string& out) const;

 private:
  friend class Fill;
  struct Shard;
  struct Purge {
    std::uint64_t epoch;
    std::string prefix;
  };

  Shard& shard_for(std::uint64_t hash) const;
  bool finish_fill(Fill& fill, std::shared_ptr<const Entry> entry, Clock::time_point now);
  // Whether a purge after `epoch` covers `path` (or the log no longer reaches back that far).
  bool purged_since(std::uint64_t epoch, std::string_view path) const;

  Options options_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<std::uint64_t> epoch_{0};
  mutable std::mutex purge_mu_;
  std::deque<Purge> purges_;  // the last kPurgeLog purges, oldest first
  std::atomic<std::uint64_t> purged_{0};
  std::vector<Counters> counters_;
};

}  // namespace gatehouse::filters::cache
