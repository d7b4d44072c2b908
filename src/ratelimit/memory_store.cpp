#include "ratelimit/memory_store.hpp"

#include <openssl/sha.h>

#include <boost/unordered/unordered_flat_set.hpp>

#include <algorithm>
#include <cstring>
#include <functional>
#include <mutex>
#include <vector>

namespace gatehouse::ratelimit {
namespace {

constexpr std::size_t kInlineKey = 39;
constexpr std::uint32_t kNone = 0xffffffffu;
constexpr std::size_t kMaxShards = 64;
constexpr char kDigestMark = '\xff';

struct Node {
  State state;
  std::uint32_t prev;
  std::uint32_t next;
  std::uint8_t len;
  char key[kInlineKey];
  std::string_view view() const { return {key, len}; }
};
static_assert(sizeof(Node) == MemoryStore::kNodeBytes);

std::size_t hash_key(std::string_view key) {
  return std::hash<std::string_view>{}(key);
}

// Index entries are node numbers; lookups by key bytes are transparent.
struct NodeHash {
  using is_transparent = void;
  const std::vector<Node>* nodes;
  std::size_t operator()(std::uint32_t i) const { return hash_key((*nodes)[i].view()); }
  std::size_t operator()(std::string_view k) const { return hash_key(k); }
};
struct NodeEq {
  using is_transparent = void;
  const std::vector<Node>* nodes;
  bool operator()(std::uint32_t a, std::uint32_t b) const { return a == b; }
  bool operator()(std::string_view k, std::uint32_t i) const { return k == (*nodes)[i].view(); }
  bool operator()(std::uint32_t i, std::string_view k) const { return k == (*nodes)[i].view(); }
};

// A key as stored: itself when short, else a marker and its SHA-256.
struct StoredKey {
  char bytes[kInlineKey];
  std::uint8_t len;
  std::string_view view() const { return {bytes, len}; }
};

void store_key(std::string_view key, StoredKey& out) {
  if (key.size() <= kInlineKey && (key.empty() || key[0] != kDigestMark)) {
    std::memcpy(out.bytes, key.data(), key.size());
    out.len = static_cast<std::uint8_t>(key.size());
    return;
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest);
  out.bytes[0] = kDigestMark;
  std::memcpy(out.bytes + 1, digest, sizeof digest);
  out.len = 1 + SHA256_DIGEST_LENGTH;
}

}  // namespace

struct alignas(64) MemoryStore::Shard {
  std::mutex mu;
  std::vector<Node> nodes;
  boost::unordered_flat_set<std::uint32_t, NodeHash, NodeEq> index{0, NodeHash{&nodes},
                                                                   NodeEq{&nodes}};
  std::uint32_t head = kNone;  // most recently used
  std::uint32_t tail = kNone;  // next to evict
  std::size_t capacity = 0;
  std::atomic<std::size_t> size{0};
  std::atomic<std::uint64_t> evictions{0};

  void unlink(std::uint32_t i) {
    Node& n = nodes[i];
    (n.prev == kNone ? head : nodes[n.prev].next) = n.next;
    (n.next == kNone ? tail : nodes[n.next].prev) = n.prev;
  }
  void push_front(std::uint32_t i) {
    Node& n = nodes[i];
    n.prev = kNone;
    n.next = head;
    if (head != kNone) {
      nodes[head].prev = i;
    }
    head = i;
    if (tail == kNone) {
      tail = i;
    }
  }

  // The node for `key`, created (evicting the least recently used when full) if absent.
  std::uint32_t find_or_insert(const StoredKey& key) {
    if (auto it = index.find(key.view()); it != index.end()) {
      std::uint32_t i = *it;
      if (head != i) {
        unlink(i);
        push_front(i);
      }
      return i;
    }
    std::uint32_t i;
    if (nodes.size() < capacity) {
      i = static_cast<std::uint32_t>(nodes.size());
      nodes.emplace_back();
      size.store(nodes.size(), std::memory_order_relaxed);
    } else {
      i = tail;
      index.erase(i);
      unlink(i);
      evictions.store(evictions.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
    Node& n = nodes[i];
    n.state = State::fresh();
    std::memcpy(n.key, key.bytes, key.len);
    n.len = key.len;
    push_front(i);
    index.insert(i);
    return i;
  }
};

MemoryStore::MemoryStore(std::size_t max_keys)
    // Every shard holds at least kMaxChecks nodes so one request's keys never evict each other.
    : capacity_(std::max(max_keys, kMaxChecks)),
      // Small tables use one shard; large ones split the cap exactly (shards differ by at most
      // one node), so the total never exceeds it.
      shard_count_(capacity_ >= kMaxShards * 1024 ? kMaxShards : 1) {
  shards_ = std::make_unique<Shard[]>(shard_count_);
  for (std::size_t s = 0; s < shard_count_; ++s) {
    std::size_t per_shard = capacity_ / shard_count_ + (s < capacity_ % shard_count_ ? 1 : 0);
    shards_[s].capacity = per_shard;
    shards_[s].nodes.reserve(per_shard);
  }
}

MemoryStore::~MemoryStore() = default;

bool MemoryStore::decide(std::span<Check> checks, Nanos now) {
  const std::size_t count = std::min(checks.size(), kMaxChecks);
  StoredKey keys[kMaxChecks];
  std::uint32_t shard_of[kMaxChecks];
  std::uint32_t locked[kMaxChecks];
  std::size_t nlocked = 0;
  for (std::size_t i = 0; i < count; ++i) {
    store_key(checks[i].key, keys[i]);
    shard_of[i] = shard_count_ == 1 ? 0
                                    : static_cast<std::uint32_t>(hash_key(keys[i].view()) >> 58) %
                                          static_cast<std::uint32_t>(shard_count_);
    if (std::find(locked, locked + nlocked, shard_of[i]) == locked + nlocked) {
      locked[nlocked++] = shard_of[i];
    }
  }
  // One global order for taking several shard locks: no deadlock between requests.
  std::sort(locked, locked + nlocked);
  for (std::size_t i = 0; i < nlocked; ++i) {
    shards_[locked[i]].mu.lock();
  }

  union Pending {
    State state;
    Pending() {}
  } next[kMaxChecks];
  std::uint32_t node_of[kMaxChecks];
  bool all = true;
  for (std::size_t i = 0; i < count; ++i) {
    Shard& sh = shards_[shard_of[i]];
    node_of[i] = sh.find_or_insert(keys[i]);
    auto ev = evaluate(checks[i].algorithm, checks[i].params, sh.nodes[node_of[i]].state, now);
    checks[i].outcome = ev.outcome;
    next[i].state = ev.next;
    all = all && ev.outcome.allowed;
  }
  if (all) {
    for (std::size_t i = 0; i < count; ++i) {
      shards_[shard_of[i]].nodes[node_of[i]].state = next[i].state;
    }
  } else {
    // Report what the admitted checks would have left, had the request gone through.
    for (std::size_t i = 0; i < count; ++i) {
      if (checks[i].outcome.allowed) {
        checks[i].outcome.remaining += 1;
      }
    }
  }

  for (std::size_t i = nlocked; i-- > 0;) {
    shards_[locked[i]].mu.unlock();
  }
  return all;
}

std::size_t MemoryStore::keys() const {
  std::size_t n = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    n += shards_[s].size.load(std::memory_order_relaxed);
  }
  return n;
}

std::uint64_t MemoryStore::evictions() const {
  std::uint64_t n = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    n += shards_[s].evictions.load(std::memory_order_relaxed);
  }
  return n;
}

std::size_t MemoryStore::memory_bytes() const {
  // Reserved node arrays count only as far as they are used (untouched pages are not resident);
  // the index is an open-addressing table of 4-byte slots plus one metadata byte per slot.
  std::size_t n = 0;
  for (std::size_t s = 0; s < shard_count_; ++s) {
    std::lock_guard lock(shards_[s].mu);
    n += shards_[s].nodes.size() * sizeof(Node) + shards_[s].index.bucket_count() * 5;
  }
  return n;
}

std::size_t MemoryStore::memory_cap(std::size_t max_keys) {
  // Nodes, plus an index that at worst has just doubled (load factor 0.875 -> 0.44).
  return max_keys * (sizeof(Node) + 12) + kMaxShards * kMaxChecks * sizeof(Node);
}

}  // namespace gatehouse::ratelimit
