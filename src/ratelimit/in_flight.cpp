#include "ratelimit/in_flight.hpp"

#include <boost/unordered/unordered_flat_map.hpp>

#include <functional>
#include <mutex>

namespace gatehouse::ratelimit {
namespace {

constexpr std::size_t kShards = 16;

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct StringEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};

}  // namespace

struct alignas(64) InFlight::Shard {
  std::mutex mu;
  boost::unordered_flat_map<std::string, std::uint32_t, StringHash, StringEq> counts;
};

InFlight::InFlight() : shards_(std::make_unique<Shard[]>(kShards)) {}
InFlight::~InFlight() = default;

static std::size_t shard_index(std::string_view key) {
  return (std::hash<std::string_view>{}(key) >> 32) % kShards;
}

bool InFlight::acquire(std::string_view key, std::uint32_t max) {
  auto& sh = shards_[shard_index(key)];
  std::lock_guard lock(sh.mu);
  auto it = sh.counts.find(key);
  if (it == sh.counts.end()) {
    if (max == 0) {
      return false;
    }
    sh.counts.emplace(std::string(key), 1);
    return true;
  }
  if (it->second >= max) {
    return false;
  }
  ++it->second;
  return true;
}

void InFlight::release(std::string_view key) {
  auto& sh = shards_[shard_index(key)];
  std::lock_guard lock(sh.mu);
  auto it = sh.counts.find(key);
  if (it == sh.counts.end()) {
    return;
  }
  if (--it->second == 0) {
    sh.counts.erase(it);
  }
}

std::size_t InFlight::keys() const {
  std::size_t n = 0;
  for (std::size_t s = 0; s < kShards; ++s) {
    std::lock_guard lock(shards_[s].mu);
    n += shards_[s].counts.size();
  }
  return n;
}

}  // namespace gatehouse::ratelimit
