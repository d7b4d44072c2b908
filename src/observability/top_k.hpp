#pragma once
// The keys seen most often in a stream, in bounded memory: the space-saving algorithm (Metwally,
// Agrawal, El Abbadi, 2005). K counters; a new key takes the smallest counter's place and inherits
// its count as its error, so a key's true count lies in [count - error, count] and every key seen
// more than total/K times is held. Used for the dashboard's top rate-limited keys.
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace gatehouse::observability {

struct TopEntry {
  std::string key;
  std::uint64_t count = 0;  // an upper bound of the key's occurrences
  std::uint64_t error = 0;  // how much of `count` may belong to keys it replaced
};

class SpaceSaving {
 public:
  explicit SpaceSaving(std::size_t capacity);

  void add(std::string_view key, std::uint64_t n = 1);
  // Another summary's counts folded in (the shards' union on the admin thread).
  void merge(const SpaceSaving& other);
  // The `n` largest counts, largest first (ties by key, so the order is stable).
  std::vector<TopEntry> top(std::size_t n) const;
  std::size_t size() const { return entries_.size(); }
  std::size_t capacity() const { return capacity_; }
  std::uint64_t total() const { return total_; }

 private:
  std::size_t capacity_;
  std::uint64_t total_ = 0;
  std::vector<TopEntry> entries_;
  std::unordered_map<std::string, std::size_t> index_;  // key -> position in entries_
};

// One SpaceSaving per worker, each behind a lock of its own: a worker takes only its own lock,
// and only on the path that records (a rejection), which the admin thread contends once per
// snapshot. Nothing is paid by requests that are not recorded.
class ShardedTopK {
 public:
  ShardedTopK(unsigned shards, std::size_t capacity);

  void add(unsigned shard, std::string_view key);
  // The union of the shards' summaries (admin thread).
  std::vector<TopEntry> top(std::size_t n) const;

 private:
  struct alignas(64) Shard {
    explicit Shard(std::size_t capacity) : summary(capacity) {}
    mutable std::mutex mu;
    SpaceSaving summary;
  };
  std::size_t capacity_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace gatehouse::observability
