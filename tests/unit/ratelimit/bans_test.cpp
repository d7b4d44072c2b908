// Temporary bans: counting rejections in a window, the ban's life, lifting, and the caps.
#include "ratelimit/bans.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

namespace gatehouse::ratelimit {
namespace {

constexpr Nanos kSec = 1'000'000'000;
constexpr Nanos kMin = 60 * kSec;
constexpr Nanos kT0 = 100 * kSec;

// 3 rejections within a minute ban for 15 minutes.
const BanRule kRule{3, kMin, 15 * kMin};

std::string name(std::string_view prefix, int i) {
  return std::string(prefix).append(std::to_string(i));
}

TEST(BanList, BansAfterNRejectionsWithinTheWindow) {
  BanList bans;
  EXPECT_FALSE(bans.any_active());
  EXPECT_FALSE(bans.record_rejection("ip=a", kRule, "why", kT0));
  EXPECT_FALSE(bans.record_rejection("ip=a", kRule, "why", kT0 + 10 * kSec));
  EXPECT_FALSE(bans.banned("ip=a", kT0 + 10 * kSec).has_value());
  EXPECT_FALSE(bans.any_active());
  EXPECT_TRUE(bans.record_rejection("ip=a", kRule, "route=r limit=1/minute", kT0 + 59 * kSec));
  EXPECT_TRUE(bans.any_active());
  auto left = bans.banned("ip=a", kT0 + 59 * kSec);
  ASSERT_TRUE(left.has_value());
  EXPECT_EQ(*left, 15 * kMin);
  EXPECT_EQ(*bans.banned("ip=a", kT0 + 59 * kSec + 5 * kMin), 10 * kMin);
  // Other keys are not affected.
  EXPECT_FALSE(bans.banned("ip=b", kT0 + 60 * kSec).has_value());
  // While banned, more rejections do not start another ban.
  EXPECT_FALSE(bans.record_rejection("ip=a", kRule, "why", kT0 + 2 * kMin));
  EXPECT_EQ(bans.active(kT0 + 2 * kMin), 1u);
}

TEST(BanList, RejectionsSpreadOutNeverBan) {
  BanList bans;
  // Two per window, forever: the count restarts with each window.
  for (int i = 0; i < 100; ++i) {
    EXPECT_FALSE(bans.record_rejection("ip=a", kRule, "why", kT0 + i * 31 * kSec)) << i;
  }
  EXPECT_FALSE(bans.any_active());
  // The window starts at the first counted rejection: 3 within 60 s from it, not 3 in any
  // calendar minute.
  BanList edge;
  EXPECT_FALSE(edge.record_rejection("k", kRule, "", kT0));
  EXPECT_FALSE(edge.record_rejection("k", kRule, "", kT0 + kMin - 1));
  EXPECT_FALSE(edge.record_rejection("k", kRule, "", kT0 + kMin));  // a new window: count 1
  EXPECT_FALSE(edge.record_rejection("k", kRule, "", kT0 + kMin + 1));
  EXPECT_TRUE(edge.record_rejection("k", kRule, "", kT0 + kMin + 2));
}

TEST(BanList, AfterOneBansAtTheFirstRejection) {
  BanList bans;
  EXPECT_TRUE(bans.record_rejection("k", BanRule{1, kMin, kSec}, "", kT0));
  EXPECT_TRUE(bans.banned("k", kT0).has_value());
}

TEST(BanList, ExpiresAndCountsAfresh) {
  BanList bans;
  for (int i = 0; i < 3; ++i) {
    bans.record_rejection("ip=a", kRule, "why", kT0);
  }
  EXPECT_TRUE(bans.banned("ip=a", kT0 + 15 * kMin - 1).has_value());
  EXPECT_EQ(*bans.banned("ip=a", kT0 + 15 * kMin - 1), 1);
  EXPECT_FALSE(bans.banned("ip=a", kT0 + 15 * kMin).has_value());
  EXPECT_FALSE(bans.any_active());
  EXPECT_EQ(bans.active(kT0 + 15 * kMin), 0u);
  // After the ban, the count starts from zero.
  EXPECT_FALSE(bans.record_rejection("ip=a", kRule, "why", kT0 + 16 * kMin));
  EXPECT_FALSE(bans.record_rejection("ip=a", kRule, "why", kT0 + 16 * kMin));
  EXPECT_TRUE(bans.record_rejection("ip=a", kRule, "why", kT0 + 16 * kMin));
}

TEST(BanList, ListIsSortedAndSkipsExpired) {
  BanList bans;
  const BanRule once{1, kMin, 10 * kMin};
  const BanRule short_ban{1, kMin, kMin};
  bans.record_rejection("ip=b", once, "route=x limit=1/minute", kT0);
  bans.record_rejection("ip=a", once, "route=y limit=2/hour", kT0 + kMin);
  bans.record_rejection("ip=c", short_ban, "route=z limit=3/day", kT0);
  auto list = bans.list(kT0 + 2 * kMin);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].key, "ip=a");
  EXPECT_EQ(list[0].reason, "route=y limit=2/hour");
  EXPECT_EQ(list[0].remaining, 9 * kMin);
  EXPECT_EQ(list[1].key, "ip=b");
  EXPECT_EQ(list[1].remaining, 8 * kMin);
  EXPECT_EQ(bans.active(kT0 + 2 * kMin), 2u);
}

TEST(BanList, LiftOneAndAll) {
  BanList bans;
  const BanRule once{1, kMin, kMin};
  for (auto key : {"a", "b", "c"}) {
    bans.record_rejection(key, once, "", kT0);
  }
  EXPECT_TRUE(bans.lift("b"));
  EXPECT_FALSE(bans.lift("b"));
  EXPECT_FALSE(bans.lift("nobody"));
  EXPECT_FALSE(bans.banned("b", kT0).has_value());
  EXPECT_TRUE(bans.banned("a", kT0).has_value());
  EXPECT_EQ(bans.lift_all(), 2u);
  EXPECT_FALSE(bans.any_active());
  EXPECT_EQ(bans.lift_all(), 0u);
  EXPECT_TRUE(bans.list(kT0).empty());
  // A lifted key can be banned again.
  EXPECT_TRUE(bans.record_rejection("b", once, "", kT0 + 1));
}

TEST(BanList, BansAreCapped) {
  BanList bans(3);
  // Four keys banned for 10, 9, 8 and 7 minutes: the fourth takes the place of the ban closest
  // to its end (k2, 8 minutes), not of the newest or the oldest.
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(bans.record_rejection(std::string("k").append(std::to_string(i)),
                                      BanRule{1, kMin, (10 - i) * kMin}, "", kT0));
  }
  EXPECT_EQ(bans.active(kT0), 3u);
  EXPECT_TRUE(bans.banned("k0", kT0).has_value());
  EXPECT_TRUE(bans.banned("k1", kT0).has_value());
  EXPECT_FALSE(bans.banned("k2", kT0).has_value());
  EXPECT_TRUE(bans.banned("k3", kT0).has_value());
}

TEST(BanList, ExpiredBansMakeRoomFirst) {
  BanList bans(2);
  EXPECT_TRUE(bans.record_rejection("old", BanRule{1, kMin, kSec}, "", kT0));
  EXPECT_TRUE(bans.record_rejection("long", BanRule{1, kMin, kMin}, "", kT0));
  EXPECT_TRUE(bans.record_rejection("new", BanRule{1, kMin, kMin}, "", kT0 + 2 * kSec));
  EXPECT_TRUE(bans.banned("long", kT0 + 2 * kSec).has_value());
  EXPECT_TRUE(bans.banned("new", kT0 + 2 * kSec).has_value());
  EXPECT_EQ(bans.active(kT0 + 2 * kSec), 2u);
}

TEST(BanList, RejectionCountersAreCapped) {
  BanList bans(2);
  EXPECT_FALSE(bans.record_rejection("a", kRule, "", kT0));
  EXPECT_FALSE(bans.record_rejection("a", kRule, "", kT0 + 1));
  EXPECT_FALSE(bans.record_rejection("b", kRule, "", kT0 + 2));
  EXPECT_FALSE(bans.record_rejection("b", kRule, "", kT0 + 3));
  // A third key drops the oldest counter ("a"): its count starts over.
  EXPECT_FALSE(bans.record_rejection("c", kRule, "", kT0 + 4));
  EXPECT_FALSE(bans.record_rejection("a", kRule, "", kT0 + 5));  // would have been its 3rd
  EXPECT_FALSE(bans.any_active());
  // "c" kept its count (the oldest, "b", made room for "a").
  EXPECT_FALSE(bans.record_rejection("c", kRule, "", kT0 + 6));
  EXPECT_TRUE(bans.record_rejection("c", kRule, "", kT0 + 7));
  EXPECT_FALSE(bans.record_rejection("b", kRule, "", kT0 + 8));
}

TEST(BanList, ImposeExtendsButNeverShortens) {
  BanList bans;
  bans.impose("k", "shared ban", kT0 + kMin);
  bans.impose("k", "other", kT0 + kSec);  // shorter: ignored
  EXPECT_EQ(*bans.banned("k", kT0), kMin);
  bans.impose("k", "other", kT0 + 2 * kMin);
  EXPECT_EQ(*bans.banned("k", kT0), 2 * kMin);
  // The longer end also orders it for expiry: still banned after the first end.
  EXPECT_TRUE(bans.banned("k", kT0 + kMin + 1).has_value());
  EXPECT_EQ(bans.active(kT0 + 2 * kMin), 0u);
  EXPECT_FALSE(bans.any_active());
}

TEST(BanList, ImposeDropsTheRejectionCount) {
  BanList bans;
  EXPECT_FALSE(bans.record_rejection("k", kRule, "", kT0));
  EXPECT_FALSE(bans.record_rejection("k", kRule, "", kT0));
  bans.impose("k", "shared ban", kT0 + kSec);
  EXPECT_EQ(bans.counters(), 0u);
  // After the imposed ban, counting starts from zero.
  EXPECT_FALSE(bans.record_rejection("k", kRule, "", kT0 + 2 * kSec));
  EXPECT_FALSE(bans.record_rejection("k", kRule, "", kT0 + 2 * kSec));
  EXPECT_TRUE(bans.record_rejection("k", kRule, "", kT0 + 2 * kSec));
}

TEST(BanList, ExpiredBansLeaveInOrderOfTheirEnd) {
  BanList bans;
  // Banned for 1..50 seconds, inserted in a scrambled order.
  for (int i = 0; i < 50; ++i) {
    int secs = (i * 17) % 50 + 1;
    bans.impose(name("k", secs), "", kT0 + secs * kSec);
  }
  for (int t = 0; t <= 50; ++t) {
    EXPECT_EQ(bans.active(kT0 + t * kSec), static_cast<std::size_t>(50 - t)) << t;
    auto list = bans.list(kT0 + t * kSec);
    ASSERT_EQ(list.size(), static_cast<std::size_t>(50 - t));
    for (const auto& b : list) {
      EXPECT_GT(b.remaining, 0) << b.key;
    }
  }
  EXPECT_FALSE(bans.any_active());
}

TEST(BanList, FullListEvictsTheBanClosestToItsEndAmongMany) {
  BanList bans(100);
  // 100 bans ending at T0 + 1000 s + i s; the 101st evicts the one ending first (i = 0), the
  // 102nd the next (i = 1), and so on: never a ban with more time left.
  for (int i = 0; i < 100; ++i) {
    bans.impose(name("k", i), "", kT0 + (1000 + i) * kSec);
  }
  for (int j = 0; j < 10; ++j) {
    bans.impose(name("new", j), "", kT0 + 5000 * kSec);
    EXPECT_EQ(bans.active(kT0), 100u);
    EXPECT_FALSE(bans.banned(name("k", j), kT0).has_value()) << j;
    EXPECT_TRUE(bans.banned(name("k", j + 1), kT0).has_value()) << j;
  }
}

TEST(BanList, ShardedCapsHoldTheTotal) {
  // 64 shards of 4 entries: however the keys hash, never more than 256 bans or counters.
  BanList bans(256, 64);
  EXPECT_EQ(bans.shard_count(), 64u);
  for (int i = 0; i < 5000; ++i) {
    bans.record_rejection(name("c", i), kRule, "", kT0);
    bans.impose(name("b", i), "", kT0 + kMin + i);
  }
  EXPECT_LE(bans.active(kT0), 256u);
  EXPECT_GE(bans.active(kT0), 200u);  // every shard full or nearly
  EXPECT_LE(bans.counters(), 256u);
  // The newest ban of all is kept: room is made by evicting older, shorter ones in its shard.
  EXPECT_TRUE(bans.banned("b4999", kT0).has_value());
  // A small list is one shard (exact eviction order); the default is sharded.
  EXPECT_EQ(BanList(3).shard_count(), 1u);
  EXPECT_EQ(BanList().shard_count(), 64u);
  EXPECT_EQ(BanList(5, 64).shard_count(), 5u);
}

TEST(BanList, ExpiredCountersMakeRoomFirst) {
  BanList bans(2);
  EXPECT_FALSE(bans.record_rejection("old", BanRule{3, kSec, kMin}, "", kT0));
  EXPECT_FALSE(bans.record_rejection("long", BanRule{3, kMin, kMin}, "", kT0 + 1));
  EXPECT_FALSE(bans.record_rejection("long", BanRule{3, kMin, kMin}, "", kT0 + 2));
  // "old"'s window has ended: it goes, although "long" is not older.
  EXPECT_FALSE(bans.record_rejection("new", kRule, "", kT0 + 2 * kSec));
  EXPECT_EQ(bans.counters(), 2u);
  EXPECT_TRUE(bans.record_rejection("long", BanRule{3, kMin, kMin}, "", kT0 + 3 * kSec));
}

TEST(BanList, ManyThreadsSprayAndLookUp) {
  // Four threads ban disjoint address ranges through a small sharded list (so evictions happen)
  // while a fifth looks up a key that is never banned and one that is banned for good. The
  // totals must respect the cap and the long ban must survive (it ends last in its shard).
  BanList bans(1024, 16);
  bans.impose("ip=keeper", "", kT0 + 1'000'000 * kSec);
  const BanRule rule{2, kMin, 10 * kMin};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&bans, &rule, t] {
      for (int i = 0; i < 20'000; ++i) {
        std::string key = name("ip=10.", t).append(".").append(std::to_string(i / 256));
        key.append(".").append(std::to_string(i % 256));
        Nanos now = kT0 + i * 1000;
        bans.record_rejection(key, rule, "spray", now);
        bans.record_rejection(key, rule, "spray", now);
        bans.banned(key, now);
        if (i % 1000 == 0) {
          bans.active(now);
        }
      }
    });
  }
  std::size_t misses = 0;
  std::size_t hits = 0;
  for (int i = 0; i < 20'000; ++i) {
    misses += bans.banned("ip=normal", kT0 + i * 1000).has_value() ? 0 : 1;
    hits += bans.banned("ip=keeper", kT0 + i * 1000).has_value() ? 1 : 0;
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(misses, 20'000u);
  EXPECT_EQ(hits, 20'000u);
  EXPECT_LE(bans.active(kT0 + 20'000'000), 1024u);
  EXPECT_LE(bans.counters(), 1024u);
  EXPECT_TRUE(bans.banned("ip=keeper", kT0 + 20'000'000).has_value());
  auto list = bans.list(kT0 + 20'000'000);
  EXPECT_EQ(list.size(), bans.active(kT0 + 20'000'000));
  std::set<std::string> keys;
  for (const auto& b : list) {
    keys.insert(b.key);
  }
  EXPECT_EQ(keys.size(), list.size());
  EXPECT_EQ(bans.lift_all(), list.size());
  EXPECT_FALSE(bans.any_active());
}

TEST(BanList, LockFreeFilterCountsExactly) {
  // The filter must never say "not banned" for a banned key, and must be all zeros again once
  // every ban is gone (expired, evicted, lifted one by one or all at once): a leaked count would
  // only cost a lock, a missing one would let a banned key through.
  BanList bans(64, 4);
  std::vector<std::string> keys;
  for (int i = 0; i < 500; ++i) {
    keys.push_back(name("ip=10.0.0.", i));
  }
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 500; ++i) {
      bans.impose(keys[i], "", kT0 + (i % 7 + 1) * kSec);  // evictions: 500 keys, cap 64
      EXPECT_TRUE(bans.may_be_banned(keys[i]));
    }
    for (const auto& b : bans.list(kT0)) {
      EXPECT_TRUE(bans.may_be_banned(b.key)) << b.key;
    }
    if (round == 0) {
      bans.active(kT0 + 8 * kSec);  // all expired
    } else if (round == 1) {
      for (const auto& k : keys) {
        bans.lift(k);
      }
    } else {
      bans.lift_all();
    }
    for (const auto& k : keys) {
      EXPECT_FALSE(bans.may_be_banned(k)) << k << " round " << round;
    }
  }
  // Bans started by rejections use the same filter.
  EXPECT_FALSE(bans.may_be_banned("k"));
  EXPECT_TRUE(bans.record_rejection("k", BanRule{1, kMin, kSec}, "", kT0));
  EXPECT_TRUE(bans.may_be_banned("k"));
  EXPECT_FALSE(bans.banned("k", kT0 + kSec).has_value());  // expired: dropped by the lookup
  EXPECT_FALSE(bans.may_be_banned("k"));
}

}  // namespace
}  // namespace gatehouse::ratelimit
