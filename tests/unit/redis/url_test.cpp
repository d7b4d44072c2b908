#include "redis/url.hpp"

#include <gtest/gtest.h>

#include <string>

namespace gatehouse::redis {
namespace {

TEST(Url, Forms) {
  Url u;
  std::string error;
  ASSERT_TRUE(parse_url("redis://localhost", u, error));
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, 6379);
  EXPECT_EQ(u.redacted(), "redis://localhost:6379/0");
  ASSERT_TRUE(parse_url("redis://alice:pw%40x@[::1]:7000/5", u, error));
  EXPECT_EQ(u.username, "alice");
  EXPECT_EQ(u.password, "pw@x");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 7000);
  EXPECT_EQ(u.db, 5u);
  EXPECT_EQ(u.redacted(), "redis://alice:***@[::1]:7000/5");
  ASSERT_TRUE(parse_url("redis://secret@h:1", u, error));
  EXPECT_EQ(u.password, "secret");
  EXPECT_EQ(u.username, "");
  EXPECT_EQ(u.redacted(), "redis://:***@h:1/0");
  EXPECT_FALSE(parse_url("redis://h:0", u, error));
  EXPECT_FALSE(parse_url("redis://u:%zz@h", u, error));
  EXPECT_EQ(error, "invalid percent-escape in the user or password");
  EXPECT_FALSE(parse_url("redis://u:%4@h", u, error));
  EXPECT_FALSE(parse_url("rediss://h", u, error));
  EXPECT_FALSE(parse_url("redis://[::1", u, error));
  EXPECT_FALSE(parse_url("redis://h?db=1", u, error));
}

// Found by fuzz_config: a host that is neither a name nor an address was accepted and printed as
// a URL that did not read back.
TEST(Url, HostIsANameOrAnAddress) {
  Url u;
  std::string error;
  EXPECT_FALSE(parse_url("redis://user:p%40s@:[s:1]:6380/2", u, error));
  EXPECT_EQ(error, "invalid host \":[s:1]\" (expected a name, an IPv4 address or [IPv6])");
  EXPECT_FALSE(parse_url("redis://a[b]:1", u, error));
  EXPECT_FALSE(parse_url("redis://[fe80::1%eth0]:1", u, error));
  EXPECT_FALSE(parse_url("redis://[host]:1", u, error));
  ASSERT_TRUE(parse_url("redis://redis-1.internal_x:6380", u, error));
  EXPECT_EQ(u.host, "redis-1.internal_x");
  ASSERT_TRUE(parse_url("redis://[2001:db8::7]:6380", u, error));
  EXPECT_EQ(u.host, "2001:db8::7");
  ASSERT_TRUE(parse_url("redis://10.0.0.5", u, error));
}

}  // namespace
}  // namespace gatehouse::redis
