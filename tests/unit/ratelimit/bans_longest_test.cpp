// BanList::longest: the dashboard's bounded view of the bans.
#include <gtest/gtest.h>

#include <string>

#include "ratelimit/bans.hpp"

namespace gatehouse::ratelimit {
namespace {

constexpr Nanos kSec = 1'000'000'000;
constexpr Nanos kT0 = 100 * kSec;

TEST(BanListLongest, TheLongestFirstBoundedWithTheActiveCount) {
  BanList bans(100'000, 64);  // many shards: the longest must be found across them
  for (int i = 1; i <= 200; ++i) {
    bans.impose("ip=" + std::to_string(i), "reason " + std::to_string(i), kT0 + i * kSec);
  }
  auto [top, active] = bans.longest(3, kT0 + 50 * kSec);
  EXPECT_EQ(active, 150u);  // 1..50 have ended
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].key, "ip=200");
  EXPECT_EQ(top[0].reason, "reason 200");
  EXPECT_EQ(top[0].remaining, 150 * kSec);
  EXPECT_EQ(top[1].key, "ip=199");
  EXPECT_EQ(top[2].key, "ip=198");
}

TEST(BanListLongest, EmptyAndFewerThanAsked) {
  BanList bans;
  auto [none, zero] = bans.longest(10, kT0);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(zero, 0u);
  bans.impose("ip=a", "r", kT0 + kSec);
  auto [one, n] = bans.longest(10, kT0);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].key, "ip=a");
  EXPECT_EQ(n, 1u);
}

}  // namespace
}  // namespace gatehouse::ratelimit
