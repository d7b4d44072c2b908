#pragma once
// In-memory limiter state: (limit, key) -> 32-byte algorithm state, in 64 shards each guarded by
// its own mutex (no global lock), with a hard cap on tracked keys. When a shard is full its least
// recently used key is evicted, so an IP-spray attack costs a bounded amount of memory and real
// clients, who keep coming back, keep their counts.
//
// Memory: each tracked key costs one fixed 80-byte node plus about 5-9 bytes of index; keys longer
// than 39 bytes are stored as their SHA-256 digest so a huge header value cannot inflate a node.
// Nodes are reserved up front (virtual memory, touched only when used).
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "ratelimit/algorithm.hpp"

namespace gatehouse::ratelimit {

struct Check {
  std::string_view key;  // opaque bytes; the caller makes them unique per limit
  Algorithm algorithm = Algorithm::sliding_window;
  Params params;
  Outcome outcome;  // filled by decide()
};

inline constexpr std::size_t kMaxChecks = 64;  // per decide() call

class MemoryStore {
 public:
  static constexpr std::size_t kNodeBytes = 80;

  explicit MemoryStore(std::size_t max_keys);
  ~MemoryStore();
  MemoryStore(const MemoryStore&) = delete;
  MemoryStore& operator=(const MemoryStore&) = delete;

  // Evaluates every check at `now`; commits all of them only when all allow (a rejected request
  // consumes no quota). Returns whether all allowed. checks.size() <= kMaxChecks.
  bool decide(std::span<Check> checks, Nanos now);

  std::size_t keys() const;
  std::uint64_t evictions() const;
  // The cap on keys(): max_keys, but at least kMaxChecks.
  std::size_t capacity() const { return capacity_; }
  // Bytes held by nodes and indexes now (what the spray test checks against the documented cap).
  std::size_t memory_bytes() const;
  // The documented upper bound for memory_bytes() at max_keys.
  static std::size_t memory_cap(std::size_t max_keys);

 private:
  struct Shard;
  std::size_t capacity_;
  std::unique_ptr<Shard[]> shards_;
  std::size_t shard_count_;
};

}  // namespace gatehouse::ratelimit
