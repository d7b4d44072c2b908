// least_request (power of two choices) and hash (rendezvous) balancers: distribution, load
// preference, key stability, minimal movement, eligibility and the target to avoid.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "upstream/load_balancer.hpp"

namespace gatehouse::upstream {
namespace {

constexpr std::size_t kNone = static_cast<std::size_t>(-1);

// ("u", 7) -> "u7". (fmt: "u" + std::to_string trips g++ 12's -Wstringop-overflow false positive.)
std::string key_text(const char* prefix, int i) {
  return fmt::format("{}{}", prefix, i);
}

// Targets with real shared health, named like config addresses.
struct Targets {
  explicit Targets(std::vector<std::string> names) {
    for (auto& n : names) {
      owned.push_back(std::make_unique<observability::TargetHealth>(n));
      views.push_back(owned.back().get());
    }
  }
  void down(std::size_t t) { owned[t]->report(false, "refused"); }
  std::vector<std::unique_ptr<observability::TargetHealth>> owned;
  std::vector<observability::TargetHealth*> views;
};

Targets three() {
  return Targets({"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"});
}

std::size_t first(LoadBalancer& b, TargetHealths t, std::uint64_t key = 0,
                  std::size_t avoid = kNone) {
  Walk w;
  w.key = key;
  w.avoid = avoid;
  auto c = b.next(w, t);
  return c ? c->target : 99;
}

std::vector<std::size_t> walk(LoadBalancer& b, TargetHealths t, std::uint64_t key = 0,
                              std::size_t avoid = kNone) {
  Walk w;
  w.key = key;
  w.avoid = avoid;
  std::vector<std::size_t> out;
  while (auto c = b.next(w, t)) {
    out.push_back(c->target);
  }
  return out;
}

bool is_permutation_of_all(std::vector<std::size_t> got, std::size_t n) {
  std::sort(got.begin(), got.end());
  std::vector<std::size_t> all(n);
  for (std::size_t i = 0; i < n; ++i) {
    all[i] = i;
  }
  return got == all;
}

// --- least_request ---------------------------------------------------------------------------

TEST(LeastRequest, SpreadsEvenlyWhenLoadsAreEqual) {
  auto t = three();
  std::vector<std::uint32_t> active(3, 0);
  LeastRequest lr(active, 42);
  std::map<std::size_t, int> seen;
  for (int i = 0; i < 3000; ++i) {
    ++seen[first(lr, t.views)];
  }
  ASSERT_EQ(seen.size(), 3u);
  for (auto [target, n] : seen) {
    EXPECT_GT(n, 800) << target;
    EXPECT_LT(n, 1200) << target;
  }
}

TEST(LeastRequest, PrefersTheLessLoadedOfTwo) {
  Targets t({"a:1", "b:1"});
  std::vector<std::uint32_t> active{5, 1};
  LeastRequest lr(active, 7);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(first(lr, t.views), 1u);  // two targets: both are always drawn
  }
  active = {0, 3};
  EXPECT_EQ(first(lr, t.views), 0u);
}

TEST(LeastRequest, TheMostLoadedOfThreeIsNeverChosen) {
  auto t = three();
  std::vector<std::uint32_t> active{1, 9, 2};
  LeastRequest lr(active, 3);
  std::map<std::size_t, int> seen;
  for (int i = 0; i < 3000; ++i) {
    ++seen[first(lr, t.views)];
  }
  EXPECT_EQ(seen[1], 0);  // it loses every pair it is drawn in
  // Target 0 wins every pair it is in (2 of 3 pairs), target 2 only the pair {1, 2}.
  EXPECT_GT(seen[0], seen[2] * 3 / 2);
}

TEST(LeastRequest, OnlyReachableTargetsAndNotTheAvoidedOne) {
  auto t = three();
  std::vector<std::uint32_t> active(3, 0);
  LeastRequest lr(active, 11);
  t.down(0);
  for (int i = 0; i < 200; ++i) {
    EXPECT_NE(first(lr, t.views), 0u);
    EXPECT_EQ(first(lr, t.views, 0, /*avoid=*/2), 1u);
  }
}

TEST(LeastRequest, AWalkOffersEveryTargetOnceAvoidedLast) {
  auto t = three();
  std::vector<std::uint32_t> active{0, 0, 0};
  LeastRequest lr(active, 5);
  for (int i = 0; i < 50; ++i) {
    auto got = walk(lr, t.views, 0, /*avoid=*/1);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_TRUE(is_permutation_of_all(got, 3));
    EXPECT_EQ(got.back(), 1u);
  }
  t.down(0);
  auto got = walk(lr, t.views);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got.back(), 0u) << "the unreachable target after the reachable ones";
}

TEST(LeastRequest, NoneReachableStillOffersAll) {
  auto t = three();
  t.down(0);
  t.down(1);
  t.down(2);
  std::vector<std::uint32_t> active(3, 0);
  LeastRequest lr(active, 9);
  auto got = walk(lr, t.views);
  EXPECT_TRUE(is_permutation_of_all(got, 3));
}

TEST(LeastRequest, OnlyTheAvoidedTargetIsStillOffered) {
  Targets t({"only:1"});
  std::vector<std::uint32_t> active{0};
  LeastRequest lr(active, 1);
  EXPECT_EQ(walk(lr, t.views, 0, 0), (std::vector<std::size_t>{0}));
}

// --- hash --------------------------------------------------------------------------------------

TEST(HashBalancer, SameKeySameTargetAcrossInstances) {
  auto t = three();
  HashBalancer a;
  HashBalancer b;
  for (int user = 0; user < 200; ++user) {
    auto key = hash_key(key_text("user-", user));
    auto pick = first(a, t.views, key);
    EXPECT_EQ(first(a, t.views, key), pick) << "stable on one instance";
    EXPECT_EQ(first(b, t.views, key), pick) << "same on another instance";
  }
  // And independent of the order the targets are listed in: the score is per address.
  Targets reversed({"10.0.0.3:8000", "10.0.0.2:8000", "10.0.0.1:8000"});
  for (int user = 0; user < 200; ++user) {
    auto key = hash_key(key_text("user-", user));
    EXPECT_EQ(t.views[first(a, t.views, key)]->address(),
              reversed.views[first(a, reversed.views, key)]->address());
  }
}

TEST(HashBalancer, KeyAndScoreAreFixedFunctions) {
  // Pinned values (FNV-1a 64, then MurmurHash3's fmix64): instances built apart must agree, so
  // nothing process-specific (std::hash, a random seed) may enter.
  EXPECT_EQ(hash_key("user-1"), 0x41a2fca5c68401c5ULL);
  EXPECT_EQ(hash_key(""), 0xefd01f60ba992926ULL);
  EXPECT_EQ(rendezvous_score(hash_key("user-1"), "10.0.0.3:8000"), 0x7e3c595c8056edccULL);
  auto t = three();
  HashBalancer h;
  EXPECT_EQ(first(h, t.views, hash_key("user-1")), 2u);  // the highest of the three scores
}

TEST(HashBalancer, SpreadsKeysOverTargets) {
  auto t = three();
  HashBalancer h;
  std::map<std::size_t, int> seen;
  for (int user = 0; user < 3000; ++user) {
    ++seen[first(h, t.views, hash_key(key_text("u", user)))];
  }
  ASSERT_EQ(seen.size(), 3u);
  for (auto [target, n] : seen) {
    EXPECT_GT(n, 800) << target;
    EXPECT_LT(n, 1200) << target;
  }
}

TEST(HashBalancer, RemovingATargetMovesOnlyItsKeys) {
  Targets four({"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000", "10.0.0.4:8000"});
  Targets without({"10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.4:8000"});  // .3 removed
  HashBalancer h;
  int moved = 0;
  for (int user = 0; user < 2000; ++user) {
    auto key = hash_key(key_text("u", user));
    const auto& before = four.views[first(h, four.views, key)]->address();
    const auto& after = without.views[first(h, without.views, key)]->address();
    if (before != "10.0.0.3:8000") {
      EXPECT_EQ(before, after) << "a key of a remaining target moved";
    } else {
      ++moved;
    }
  }
  EXPECT_GT(moved, 300);  // about a quarter
}

TEST(HashBalancer, EjectingATargetMovesOnlyItsKeysAndTheyComeBack) {
  auto t = three();
  HashBalancer h;
  std::vector<std::size_t> before;
  for (int user = 0; user < 600; ++user) {
    before.push_back(first(h, t.views, hash_key(key_text("u", user))));
  }
  t.down(1);
  for (int user = 0; user < 600; ++user) {
    auto now = first(h, t.views, hash_key(key_text("u", user)));
    EXPECT_NE(now, 1u);
    if (before[user] != 1) {
      EXPECT_EQ(now, before[user]);
    }
  }
  t.owned[1]->report(true);
  for (int user = 0; user < 600; ++user) {
    EXPECT_EQ(first(h, t.views, hash_key(key_text("u", user))), before[user]);
  }
}

TEST(HashBalancer, AvoidGivesTheKeysSecondChoiceAndAWalkOffersAllOnce) {
  auto t = three();
  HashBalancer h;
  for (int user = 0; user < 100; ++user) {
    auto key = hash_key(key_text("u", user));
    auto order = walk(h, t.views, key);
    ASSERT_EQ(order.size(), 3u);
    EXPECT_TRUE(is_permutation_of_all(order, 3));
    EXPECT_EQ(first(h, t.views, key, /*avoid=*/order[0]), order[1]);
    auto avoided = walk(h, t.views, key, order[0]);
    EXPECT_EQ(avoided, (std::vector<std::size_t>{order[1], order[2], order[0]}));
    // The order follows the scores.
    EXPECT_GT(rendezvous_score(key, t.views[order[0]]->address()),
              rendezvous_score(key, t.views[order[1]]->address()));
  }
}

TEST(HashBalancer, UnreachableTargetsComeAfterReachableOnes) {
  auto t = three();
  HashBalancer h;
  auto key = hash_key("someone");
  auto order = walk(h, t.views, key);
  t.down(order[0]);
  EXPECT_EQ(walk(h, t.views, key), (std::vector<std::size_t>{order[1], order[2], order[0]}));
}

// --- make_balancer ------------------------------------------------------------------------------

TEST(MakeBalancer, FromConfig) {
  std::vector<std::uint32_t> active;
  config::Balance b;
  EXPECT_NE(dynamic_cast<RoundRobin*>(make_balancer(b, active).get()), nullptr);
  b.policy = config::BalancePolicy::least_request;
  EXPECT_NE(dynamic_cast<LeastRequest*>(make_balancer(b, active).get()), nullptr);
  b.policy = config::BalancePolicy::hash;
  EXPECT_NE(dynamic_cast<HashBalancer*>(make_balancer(b, active).get()), nullptr);
}

// --- round robin and avoid --------------------------------------------------------------------

TEST(RoundRobinAvoid, TheAvoidedTargetComesLast) {
  auto t = three();
  RoundRobin rr;
  EXPECT_EQ(walk(rr, t.views, 0, /*avoid=*/0), (std::vector<std::size_t>{1, 2, 0}));
  // The cursor is after the last target offered (0): 1 next, then 2 is skipped for 0.
  EXPECT_EQ(walk(rr, t.views, 0, /*avoid=*/2), (std::vector<std::size_t>{1, 0, 2}));
}

}  // namespace
}  // namespace gatehouse::upstream
