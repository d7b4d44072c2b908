#include "ratelimit/bans.hpp"

#include <algorithm>

namespace gatehouse::ratelimit {

void BanList::prune(Nanos now) {
  std::erase_if(bans_, [&](const auto& kv) { return kv.second.until <= now; });
  active_.store(bans_.size(), std::memory_order_relaxed);
}

std::optional<Nanos> BanList::banned(std::string_view key, Nanos now) {
  std::lock_guard lock(mu_);
  auto it = bans_.find(std::string(key));
  if (it == bans_.end()) {
    return std::nullopt;
  }
  if (it->second.until <= now) {
    bans_.erase(it);
    active_.store(bans_.size(), std::memory_order_relaxed);
    return std::nullopt;
  }
  return it->second.until - now;
}

bool BanList::record_rejection(std::string_view key, const BanRule& rule, std::string_view reason,
                               Nanos now) {
  std::lock_guard lock(mu_);
  std::string k(key);
  if (auto b = bans_.find(k); b != bans_.end() && b->second.until > now) {
    return false;  // already banned
  }
  auto it = counters_.find(k);
  if (it == counters_.end()) {
    if (counters_.size() >= max_entries_) {
      std::erase_if(counters_,
                    [&](const auto& kv) { return now - kv.second.window_start >= rule.within; });
      if (counters_.size() >= max_entries_) {
        auto oldest = std::min_element(counters_.begin(), counters_.end(), [](auto& a, auto& b) {
          return a.second.window_start < b.second.window_start;
        });
        counters_.erase(oldest);
      }
    }
    it = counters_.emplace(k, Counter{now, 0}).first;
  }
  Counter& c = it->second;
  if (now - c.window_start >= rule.within || now < c.window_start) {
    c = Counter{now, 0};
  }
  if (++c.count < rule.after) {
    return false;
  }
  counters_.erase(it);
  if (bans_.size() >= max_entries_) {
    prune(now);
    if (bans_.size() >= max_entries_) {
      auto soonest = std::min_element(bans_.begin(), bans_.end(), [](auto& a, auto& b) {
        return a.second.until < b.second.until;
      });
      bans_.erase(soonest);
    }
  }
  bans_[k] = Ban{now + rule.duration, std::string(reason)};
  active_.store(bans_.size(), std::memory_order_relaxed);
  return true;
}

void BanList::impose(std::string_view key, std::string_view reason, Nanos until) {
  std::lock_guard lock(mu_);
  std::string k(key);
  if (auto b = bans_.find(k); b != bans_.end()) {
    b->second.until = std::max(b->second.until, until);
    return;
  }
  if (bans_.size() >= max_entries_) {
    auto soonest = std::min_element(bans_.begin(), bans_.end(), [](auto& a, auto& b) {
      return a.second.until < b.second.until;
    });
    bans_.erase(soonest);
  }
  counters_.erase(k);
  bans_.emplace(std::move(k), Ban{until, std::string(reason)});
  active_.store(bans_.size(), std::memory_order_relaxed);
}

std::vector<BanInfo> BanList::list(Nanos now) {
  std::lock_guard lock(mu_);
  prune(now);
  std::vector<BanInfo> out;
  out.reserve(bans_.size());
  for (const auto& [key, ban] : bans_) {
    out.push_back(BanInfo{key, ban.reason, ban.until - now});
  }
  std::sort(out.begin(), out.end(),
            [](const BanInfo& a, const BanInfo& b) { return a.key < b.key; });
  return out;
}

bool BanList::lift(std::string_view key) {
  std::lock_guard lock(mu_);
  bool found = bans_.erase(std::string(key)) > 0;
  active_.store(bans_.size(), std::memory_order_relaxed);
  return found;
}

std::size_t BanList::lift_all() {
  std::lock_guard lock(mu_);
  std::size_t n = bans_.size();
  bans_.clear();
  active_.store(0, std::memory_order_relaxed);
  return n;
}

std::size_t BanList::active(Nanos now) {
  std::lock_guard lock(mu_);
  prune(now);
  return bans_.size();
}

}  // namespace gatehouse::ratelimit
