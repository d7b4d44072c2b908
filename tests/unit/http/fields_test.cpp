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

namespace gatehouse::http {
namespace {

TEST(WebSocketHandshake, RequestNeedsGetHttp11ConnectionUpgradeAndWebsocket) {
  std::vector<std::string_view> up{"keep-alive", "Upgrade"};
  EXPECT_TRUE(is_websocket_upgrade("GET", 11, up, "websocket"));
  EXPECT_TRUE(is_websocket_upgrade("GET", 11, up, "WebSocket"));
  EXPECT_TRUE(is_websocket_upgrade("GET", 11, up, "h2c, websocket"));
  EXPECT_TRUE(is_websocket_upgrade("GET", 11, up, "websocket/13"));
  EXPECT_FALSE(is_websocket_upgrade("POST", 11, up, "websocket"));
  EXPECT_FALSE(is_websocket_upgrade("GET", 10, up, "websocket"));
  EXPECT_FALSE(is_websocket_upgrade("GET", 11, up, "h2c"));
  EXPECT_FALSE(is_websocket_upgrade("GET", 11, up, "websockets"));
  EXPECT_FALSE(is_websocket_upgrade("GET", 11, up, ""));
  std::vector<std::string_view> keep{"keep-alive"};
  EXPECT_FALSE(is_websocket_upgrade("GET", 11, keep, "websocket"));
  EXPECT_FALSE(is_websocket_upgrade("GET", 11, {}, "websocket"));
}

TEST(WebSocketHandshake, AnswerMustNameWebsocketAndUpgrade) {
  std::vector<std::string_view> up{"Upgrade"};
  EXPECT_TRUE(accepts_websocket(up, "websocket"));
  EXPECT_FALSE(accepts_websocket(up, "h2c"));
  EXPECT_FALSE(accepts_websocket({}, "websocket"));
}

TEST(ForEachToken, TrimsSkipsEmptiesAndAgreesWithSplitTokens) {
  const std::string_view value = " no-cache ,max-age=5,\t private\t,, ,";
  std::vector<std::string_view> seen;
  for_each_token(value, [&](std::string_view t) { seen.push_back(t); });
  EXPECT_EQ(seen, (std::vector<std::string_view>{"no-cache", "max-age=5", "private"}));
  EXPECT_EQ(seen, split_tokens(value));
  int calls = 0;
  for_each_token("", [&](std::string_view) { ++calls; });
  for_each_token(" , ,", [&](std::string_view) { ++calls; });
  EXPECT_EQ(calls, 0);
}

}  // namespace
}  // namespace gatehouse::http
