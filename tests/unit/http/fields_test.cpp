#include "http/fields.hpp"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

namespace gatehouse::http {
namespace {

// --- is_hop_by_hop -------------------------------------------------------------------------------

TEST(IsHopByHop, ListedHeadersInAnyCase) {
  for (auto name : {"Connection", "keep-alive", "TE", "Trailer", "Transfer-Encoding", "UPGRADE",
                    "Proxy-Connection", "proxy-authenticate", "Proxy-Authorization"}) {
    EXPECT_TRUE(is_hop_by_hop(name)) << name;
  }
}

TEST(IsHopByHop, EndToEndHeadersAreNot) {
  for (auto name : {"Host", "Content-Length", "Content-Type", "X-Forwarded-For", "Trailers", "T",
                    "Authorization", "Expect", "", "connection ", "Keep-Alive2"}) {
    EXPECT_FALSE(is_hop_by_hop(name)) << '"' << name << '"';
  }
}

// --- split_tokens / named_by_connection
// ------------------------------------------------------------

TEST(SplitTokens, TrimsAndSkipsEmptyTokens) {
  auto tokens = split_tokens(" close ,X-Foo,\t keep-alive\t,, ,x-bar");
  std::vector<std::string_view> expected = {"close", "X-Foo", "keep-alive", "x-bar"};
  EXPECT_EQ(tokens, expected);
}

TEST(SplitTokens, EdgeCases) {
  EXPECT_TRUE(split_tokens("").empty());
  EXPECT_TRUE(split_tokens(" , ,\t,").empty());
  EXPECT_EQ(split_tokens("close"), std::vector<std::string_view>{"close"});
  EXPECT_EQ(split_tokens(",close,"), std::vector<std::string_view>{"close"});
  // Spaces inside a token are kept: only the ends are trimmed.
  EXPECT_EQ(split_tokens(" a b "), std::vector<std::string_view>{"a b"});
}

TEST(NamedByConnection, CaseInsensitiveExactMatch) {
  auto tokens = split_tokens("close, X-Secret-Hop");
  EXPECT_TRUE(named_by_connection("x-secret-hop", tokens));
  EXPECT_TRUE(named_by_connection("X-SECRET-HOP", tokens));
  EXPECT_TRUE(named_by_connection("Close", tokens));
  EXPECT_FALSE(named_by_connection("X-Secret", tokens));
  EXPECT_FALSE(named_by_connection("X-Secret-Hop2", tokens));
  EXPECT_FALSE(named_by_connection("x-secret-hop", {}));
}

}  // namespace
}  // namespace gatehouse::http
