// Redis Cluster without a cluster: key slots and MOVED/ASK redirections (the real server's slots
// are compared in tests/redis).
#include "redis/cluster.hpp"

#include <gtest/gtest.h>

#include <cstdint>

#include "redis/command.hpp"

namespace gatehouse::redis {
namespace {

TEST(KeySlot, HashTagOrWholeKey) {
  EXPECT_EQ(key_slot("123456789"), 12739);  // the CRC16 check value of the Redis Cluster spec
  EXPECT_EQ(key_slot("{123456789}.anything"), 12739);
  EXPECT_EQ(key_slot("gatehouse:{ip=1.2.3.4}:0000abcd"), key_slot("{ip=1.2.3.4}"));
  EXPECT_EQ(key_slot("{}123456789"), key_slot("{}123456789"));  // empty tag: the whole key
  EXPECT_NE(key_slot("{}123456789"), 12739);
  EXPECT_LT(key_slot("anything"), kSlots);
}

TEST(ParseRedirect, MovedAndAsk) {
  std::uint16_t slot = 0;
  NodeAddress to;
  ASSERT_TRUE(parse_redirect("MOVED 3999 127.0.0.1:6381", slot, to));
  EXPECT_EQ(slot, 3999);
  EXPECT_EQ(to, (NodeAddress{"127.0.0.1", 6381}));
  ASSERT_TRUE(parse_redirect("ASK 16383 [::1]:7000", slot, to));
  EXPECT_EQ(slot, 16383);
  EXPECT_EQ(to, (NodeAddress{"::1", 7000}));
}

TEST(ParseRedirect, Rejections) {
  std::uint16_t slot = 0;
  NodeAddress to;
  for (const char* e : {"MOVED", "MOVED 3999", "MOVED 16384 127.0.0.1:6381", "MOVED x 1.2.3.4:1",
                        "MOVED 1 127.0.0.1", "MOVED 1 :6379", "MOVED 1 127.0.0.1:0",
                        "MOVED 1 127.0.0.1:65536", "MOVED 1 127.0.0.1:x"}) {
    EXPECT_FALSE(parse_redirect(e, slot, to)) << e;
  }
}

TEST(Command, PacksArguments) {
  Command c;
  c.add("EVALSHA");
  c.add("");
  c.add(std::string_view("a\0b", 3));
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c.arg(0), "EVALSHA");
  EXPECT_EQ(c.arg(1), "");
  EXPECT_EQ(c.arg(2), std::string_view("a\0b", 3));
  c.clear();
  EXPECT_EQ(c.size(), 0u);
}

}  // namespace
}  // namespace gatehouse::redis
