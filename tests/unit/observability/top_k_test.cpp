#include "observability/top_k.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gatehouse::observability {
namespace {

TEST(SpaceSaving, CountsExactlyWhileUnderCapacity) {
  SpaceSaving s(4);
  for (int i = 0; i < 5; ++i) {
    s.add("a");
  }
  s.add("b", 3);
  s.add("c");
  auto top = s.top(10);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].key, "a");
  EXPECT_EQ(top[0].count, 5u);
  EXPECT_EQ(top[0].error, 0u);
  EXPECT_EQ(top[1].key, "b");
  EXPECT_EQ(top[1].count, 3u);
  EXPECT_EQ(top[2].key, "c");
  EXPECT_EQ(s.total(), 9u);
  EXPECT_EQ(s.top(1).size(), 1u);
}

TEST(SpaceSaving, MemoryStaysBoundedAndHeavyHittersSurviveASpray) {
  // An attacker spraying unique keys must not push the one key that is hammered out of the list.
  SpaceSaving s(8);
  for (int i = 0; i < 10'000; ++i) {
    s.add("ip=spray-" + std::to_string(i));
    if (i % 4 == 0) {
      s.add("ip=heavy");
    }
  }
  EXPECT_EQ(s.size(), 8u);
  auto top = s.top(3);
  ASSERT_FALSE(top.empty());
  EXPECT_EQ(top[0].key, "ip=heavy");
  // The guarantee: the true count (2,500) lies in [count - error, count].
  EXPECT_GE(top[0].count, 2500u);
  EXPECT_LE(top[0].count - top[0].error, 2500u);
}

TEST(SpaceSaving, ReplacedKeyInheritsTheMinimumAsError) {
  SpaceSaving s(2);
  s.add("a", 5);
  s.add("b", 2);
  s.add("c");  // takes b's place: count 3, of which 2 may be b's
  auto top = s.top(2);
  ASSERT_EQ(top.size(), 2u);
  EXPECT_EQ(top[1].key, "c");
  EXPECT_EQ(top[1].count, 3u);
  EXPECT_EQ(top[1].error, 2u);
}

TEST(SpaceSaving, TiesAreOrderedByKey) {
  SpaceSaving s(4);
  s.add("z");
  s.add("m");
  s.add("a");
  auto top = s.top(3);
  EXPECT_EQ(top[0].key, "a");
  EXPECT_EQ(top[1].key, "m");
  EXPECT_EQ(top[2].key, "z");
}

TEST(ShardedTopK, MergesTheShards) {
  ShardedTopK t(3, 4);
  t.add(0, "a");
  t.add(1, "a");
  t.add(2, "a");
  t.add(1, "b");
  t.add(1, "b");
  t.add(9, "c");  // an unknown shard counts in the last one
  auto top = t.top(5);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].key, "a");
  EXPECT_EQ(top[0].count, 3u);
  EXPECT_EQ(top[1].key, "b");
  EXPECT_EQ(top[1].count, 2u);
  EXPECT_EQ(top[2].key, "c");
}

TEST(ShardedTopK, EmptyHasNoKeys) {
  ShardedTopK t(2, 4);
  EXPECT_TRUE(t.top(10).empty());
}

}  // namespace
}  // namespace gatehouse::observability
