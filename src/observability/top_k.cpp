#include "observability/top_k.hpp"

#include <algorithm>

namespace gatehouse::observability {

SpaceSaving::SpaceSaving(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {
  entries_.reserve(capacity_);
  index_.reserve(capacity_);
}

void SpaceSaving::add(std::string_view key, std::uint64_t n) {
  total_ += n;
  // Heterogeneous lookup needs C++20's transparent hashing on the map; a short-lived string keeps
  // this simple, and the path is the rejection path only.
  std::string k(key);
  if (auto it = index_.find(k); it != index_.end()) {
    entries_[it->second].count += n;
    return;
  }
  if (entries_.size() < capacity_) {
    index_.emplace(k, entries_.size());
    entries_.push_back(TopEntry{std::move(k), n, 0});
    return;
  }
  // K is small (tens): a scan for the minimum costs less than keeping a heap in step.
  auto min =
      std::min_element(entries_.begin(), entries_.end(),
                       [](const TopEntry& a, const TopEntry& b) { return a.count < b.count; });
  index_.erase(min->key);
  const std::uint64_t floor = min->count;
  index_.emplace(k, static_cast<std::size_t>(min - entries_.begin()));
  *min = TopEntry{std::move(k), floor + n, floor};
}

void SpaceSaving::merge(const SpaceSaving& other) {
  // A key absent from one summary may still have up to that summary's minimum there; counting it
  // as 0 keeps the merge simple and only understates, which the dashboard can live with.
  for (const auto& e : other.entries_) {
    std::uint64_t before_total = total_;
    add(e.key, e.count);
    total_ = before_total;
    auto& mine = entries_[index_.at(e.key)];
    mine.error += e.error;
  }
  total_ += other.total_;
}

std::vector<TopEntry> SpaceSaving::top(std::size_t n) const {
  std::vector<TopEntry> out = entries_;
  std::sort(out.begin(), out.end(), [](const TopEntry& a, const TopEntry& b) {
    return a.count != b.count ? a.count > b.count : a.key < b.key;
  });
  if (out.size() > n) {
    out.resize(n);
  }
  return out;
}

ShardedTopK::ShardedTopK(unsigned shards, std::size_t capacity) : capacity_(capacity) {
  for (unsigned i = 0; i < std::max(shards, 1u); ++i) {
    shards_.push_back(std::make_unique<Shard>(capacity));
  }
}

void ShardedTopK::add(unsigned shard, std::string_view key) {
  auto& s = *shards_[std::min<std::size_t>(shard, shards_.size() - 1)];
  std::lock_guard lock(s.mu);
  s.summary.add(key);
}

std::vector<TopEntry> ShardedTopK::top(std::size_t n) const {
  // Merging into a summary of K per shard keeps every shard's heavy hitters.
  SpaceSaving all(capacity_ * shards_.size());
  for (const auto& s : shards_) {
    std::lock_guard lock(s->mu);
    all.merge(s->summary);
  }
  return all.top(n);
}

}  // namespace gatehouse::observability
