// query_param: finding one parameter of a request target and percent-decoding its value.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "http/target.hpp"

namespace gatehouse::http {
namespace {

TEST(QueryParam, FindsAndDecodes) {
  EXPECT_EQ(query_param("/admin/bans?key=ip%3D203.0.113.7", "key"), "ip=203.0.113.7");
  EXPECT_EQ(query_param("/x?a=1&key=v&b=2", "key"), "v");
  EXPECT_EQ(query_param("/x?key=v", "key"), "v");
  EXPECT_EQ(query_param("?key=v", "key"), "v");
  EXPECT_EQ(query_param("/x?key=a+b%20c", "key"), "a b c");
  EXPECT_EQ(query_param("/x?key=%2B%2b", "key"), "++");
  EXPECT_EQ(query_param("/x?key=%2f%2F", "key"), "//");
  EXPECT_EQ(query_param("/x?key=a=b", "key"), "a=b");
  EXPECT_EQ(query_param("/x?key=header%3AX-API-Key%3D%23abc", "key"), "header:X-API-Key=#abc");
  EXPECT_EQ(query_param("/x?key=%00", "key"), std::string(1, '\0'));
  EXPECT_EQ(query_param("/x?key=%C3%A9", "key"), "\xc3\xa9");
}

TEST(QueryParam, EmptyValues) {
  EXPECT_EQ(query_param("/x?key=", "key"), "");
  EXPECT_EQ(query_param("/x?key", "key"), "");
  EXPECT_EQ(query_param("/x?a&key&b", "key"), "");
  EXPECT_EQ(query_param("/x?&&key=v&&", "key"), "v");
}

TEST(QueryParam, Absent) {
  EXPECT_EQ(query_param("/x", "key"), std::nullopt);
  EXPECT_EQ(query_param("/x?", "key"), std::nullopt);
  EXPECT_EQ(query_param("/x?keys=1&akey=2&KEY=3", "key"), std::nullopt);
  EXPECT_EQ(query_param("/key=1", "key"), std::nullopt);
  // Names are compared as written, not decoded.
  EXPECT_EQ(query_param("/x?k%65y=1", "key"), std::nullopt);
}

TEST(QueryParam, FirstOccurrenceWins) {
  EXPECT_EQ(query_param("/x?key=1&key=2", "key"), "1");
  EXPECT_EQ(query_param("/x?key&key=2", "key"), "");
}

TEST(QueryParam, BadEncodingIsNullopt) {
  EXPECT_EQ(query_param("/x?key=%", "key"), std::nullopt);
  EXPECT_EQ(query_param("/x?key=%4", "key"), std::nullopt);
  EXPECT_EQ(query_param("/x?key=ab%4", "key"), std::nullopt);
  EXPECT_EQ(query_param("/x?key=%zz", "key"), std::nullopt);
  EXPECT_EQ(query_param("/x?key=%4g&b=1", "key"), std::nullopt);
  EXPECT_EQ(query_param("/x?key=%%41", "key"), std::nullopt);
  // Only the parameter asked for is decoded: another one's bad encoding does not matter.
  EXPECT_EQ(query_param("/x?a=%zz&key=ok", "key"), "ok");
  // Exactly at the end is fine.
  EXPECT_EQ(query_param("/x?key=a%41", "key"), "aA");
}

}  // namespace
}  // namespace gatehouse::http
