#include "upstream/load_balancer.hpp"

#include <chrono>

namespace gatehouse::upstream {
namespace {

constexpr std::size_t kNone = static_cast<std::size_t>(-1);

// MurmurHash3's 64-bit finalizer: a bijection that spreads every input bit over the output.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char ch : text) {
    h ^= static_cast<unsigned char>(ch);
    h *= 0x100000001b3ULL;
  }
  return h;
}

// Passes 0 and 1 of the common order from `walk.start`: reachable targets, then the others,
// `avoid` left out; pass 2 offers `avoid` alone.
std::optional<Candidate> in_turn(Walk& walk, TargetHealths targets) {
  const std::size_t n = targets.size();
  for (; walk.pass < 2; ++walk.pass, walk.step = 0) {
    while (walk.step < n) {
      std::size_t t = (walk.start + walk.step++) % n;
      if (t == walk.avoid) {
        continue;
      }
      // Health is read as each target comes up: a check may change it while an earlier
      // candidate was connecting.
      bool reachable = targets[t]->reachable();
      if ((walk.pass == 0) != reachable) {
        continue;
      }
      return Candidate{t, reachable};
    }
  }
  if (walk.pass == 2) {
    walk.pass = 3;
    if (walk.avoid < n) {
      return Candidate{walk.avoid, targets[walk.avoid]->reachable()};
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<Candidate> RoundRobin::next(Walk& walk, TargetHealths targets) {
  const std::size_t n = targets.size();
  if (!walk.started) {
    walk.started = true;
    walk.start = cursor_ % n;
  }
  auto c = in_turn(walk, targets);
  if (c) {
    cursor_ = c->target + 1;  // the next request starts after this target
  }
  return c;
}

LeastRequest::LeastRequest(const std::vector<std::uint32_t>& active, std::uint64_t seed)
    : active_(active),
      state_(seed != 0 ? seed
                       : static_cast<std::uint64_t>(
                             std::chrono::steady_clock::now().time_since_epoch().count())) {}

std::uint64_t LeastRequest::random() {
  // splitmix64: one add and a mix per draw, good enough to pick among a few targets.
  state_ += 0x9e3779b97f4a7c15ULL;
  return mix(state_);
}

std::optional<Candidate> LeastRequest::next(Walk& walk, TargetHealths targets) {
  const std::size_t n = targets.size();
  if (walk.started) {
    return in_turn(walk, targets);
  }
  walk.started = true;
  auto eligible = [&](std::size_t t) { return t != walk.avoid && targets[t]->reachable(); };
  // The i-th eligible target, by a scan: target lists are short, and nothing is allocated.
  auto nth = [&](std::size_t i) {
    for (std::size_t t = 0; t < n; ++t) {
      if (eligible(t) && i-- == 0) {
        return t;
      }
    }
    return kNone;
  };
  std::size_t count = 0;
  for (std::size_t t = 0; t < n; ++t) {
    count += eligible(t) ? 1 : 0;
  }
  const std::uint64_t r = random();
  if (count == 0) {
    walk.start = r % n;  // nothing eligible: the common order from a random place
    return in_turn(walk, targets);
  }
  std::size_t chosen = nth(r % count);
  if (count >= 2) {
    std::size_t i = r % count;
    std::size_t j = (r >> 32) % (count - 1);
    j += j >= i ? 1 : 0;  // distinct from i
    std::size_t other = nth(j);
    auto load = [&](std::size_t t) { return t < active_.size() ? active_[t] : 0u; };
    if (load(other) < load(chosen)) {
      chosen = other;
    }
  }
  // Further candidates (the chosen one failed to connect) go round robin from after it; `step`
  // 1 skips it in the first pass.
  walk.start = chosen;
  walk.step = 1;
  return Candidate{chosen, true};
}

std::uint64_t hash_key(std::string_view text) {
  return mix(fnv1a(text));
}

std::uint64_t rendezvous_score(std::uint64_t key, std::string_view address) {
  return mix(key ^ mix(fnv1a(address)));
}

std::optional<Candidate> HashBalancer::next(Walk& walk, TargetHealths targets) {
  const std::size_t n = targets.size();
  // Within a pass, targets in descending (score, index) order: `start` and `step` hold the last
  // one offered (index, score) once `started`.
  for (; walk.pass < 2; ++walk.pass, walk.started = false) {
    std::size_t best = kNone;
    std::uint64_t best_score = 0;
    for (std::size_t t = 0; t < n; ++t) {
      if (t == walk.avoid || (walk.pass == 0) != targets[t]->reachable()) {
        continue;
      }
      std::uint64_t s = t < address_hashes_.size()
                            ? mix(walk.key ^ address_hashes_[t])
                            : rendezvous_score(walk.key, targets[t]->address());
      auto below_last = [&] {
        return !walk.started || s < walk.step || (s == walk.step && t < walk.start);
      };
      auto above_best = [&] {
        return best == kNone || s > best_score || (s == best_score && t > best);
      };
      if (below_last() && above_best()) {
        best = t;
        best_score = s;
      }
    }
    if (best != kNone) {
      walk.started = true;
      walk.start = best;
      walk.step = best_score;
      return Candidate{best, walk.pass == 0};
    }
  }
  if (walk.pass == 2) {
    walk.pass = 3;
    if (walk.avoid < n) {
      return Candidate{walk.avoid, targets[walk.avoid]->reachable()};
    }
  }
  return std::nullopt;
}

void HashBalancer::set_addresses(std::span<const std::string> addresses) {
  address_hashes_.clear();
  for (const auto& a : addresses) {
    address_hashes_.push_back(mix(fnv1a(a)));
  }
}

std::unique_ptr<LoadBalancer> make_round_robin() {
  return std::make_unique<RoundRobin>();
}

std::unique_ptr<LoadBalancer> make_balancer(const config::Balance& balance,
                                            const std::vector<std::uint32_t>& active) {
  switch (balance.policy) {
    case config::BalancePolicy::least_request:
      return std::make_unique<LeastRequest>(active);
    case config::BalancePolicy::hash:
      return std::make_unique<HashBalancer>();
    case config::BalancePolicy::round_robin:
      break;
  }
  return make_round_robin();
}

}  // namespace gatehouse::upstream
