// What the response cache may store: Cache-Control, Vary, the storability rules, stored lines.
#include "filters/cache/policy.hpp"

#include <gtest/gtest.h>

namespace gatehouse::filters::cache {
namespace {

using namespace std::chrono_literals;

TEST(CacheControlParse, Directives) {
  auto cc = parse_cache_control("public, Max-Age=60, s-maxage=\"30\"");
  EXPECT_EQ(cc.max_age, 60);
  EXPECT_EQ(cc.s_maxage, 30);
  EXPECT_FALSE(cc.no_store);
  EXPECT_TRUE(parse_cache_control("NO-STORE").no_store);
  EXPECT_TRUE(parse_cache_control("private=\"x\"").is_private);
  EXPECT_TRUE(parse_cache_control("no-cache").no_cache);
  EXPECT_FALSE(parse_cache_control("max-age=abc").max_age);
  EXPECT_FALSE(parse_cache_control("max-age=-5").max_age);
  EXPECT_EQ(parse_cache_control("max-age=99999999999999999999999").max_age, INT32_MAX);
  EXPECT_EQ(parse_cache_control("max-age=100, max-age=5").max_age, 5);  // the stricter
}

TEST(VaryParse, NamesSortedLowerCaseAndStar) {
  bool star = false;
  auto names = parse_vary("Accept-Language, accept-encoding ,Accept-Language", star);
  EXPECT_EQ(names, (std::vector<std::string>{"accept-encoding", "accept-language"}));
  EXPECT_FALSE(star);
  parse_vary("Accept, *", star);
  EXPECT_TRUE(star);
}

TEST(RequestNoCache, CacheControlOrPragma) {
  EXPECT_TRUE(request_no_cache("no-cache", ""));
  EXPECT_TRUE(request_no_cache("max-age=0", ""));
  EXPECT_TRUE(request_no_cache("", "no-cache"));
  EXPECT_FALSE(request_no_cache("max-age=60", "no-cache"));  // Cache-Control wins
  EXPECT_FALSE(request_no_cache("", ""));
}

ResponseFacts ok() {
  ResponseFacts r;
  r.status = 200;
  r.content_length = 10;
  r.content_type = "application/json";
  return r;
}

TEST(Storability, Rules) {
  RouteCache route;
  route.ttl = 60s;
  EXPECT_EQ(decide(route, 1000, ok()).refusal, Refusal::none);
  EXPECT_EQ(decide(route, 1000, ok()).ttl, 60s);
  auto r = ok();
  r.status = 500;
  EXPECT_EQ(decide(route, 1000, r).refusal, Refusal::status);
  r = ok();
  r.status = 404;
  EXPECT_EQ(decide(route, 1000, r).refusal, Refusal::none);
  r = ok();
  r.set_cookie = true;
  EXPECT_EQ(decide(route, 1000, r).refusal, Refusal::set_cookie);
  for (auto cc : {"no-store", "private", "no-cache", "max-age=0"}) {
    r = ok();
    r.cache_control = cc;
    EXPECT_EQ(decide(route, 1000, r).refusal, Refusal::no_store) << cc;
  }
  r = ok();
  r.vary_star = true;
  EXPECT_EQ(decide(route, 1000, r).refusal, Refusal::vary_star);
  r = ok();
  r.content_length.reset();
  EXPECT_EQ(decide(route, 1000, r).refusal, Refusal::streamed);
  r = ok();
  r.content_type = "text/event-stream; charset=utf-8";
  EXPECT_EQ(decide(route, 1000, r).refusal, Refusal::streamed);
  r = ok();
  r.content_length = 1001;
  EXPECT_EQ(decide(route, 1000, r).refusal, Refusal::too_large);
  r = ok();
  r.head_request = true;
  EXPECT_EQ(decide(route, 1000, r).refusal, Refusal::head);
  r = ok();
  r.status = 204;
  r.content_length.reset();
  EXPECT_EQ(decide(route, 1000, r).refusal, Refusal::none);
}

TEST(Storability, MaxAgeShortensWithinTheRouteTtlUnlessIgnored) {
  RouteCache route;
  route.ttl = 60s;
  auto r = ok();
  r.cache_control = "max-age=10";
  EXPECT_EQ(decide(route, 1000, r).ttl, 10s);
  r.cache_control = "max-age=3600";
  EXPECT_EQ(decide(route, 1000, r).ttl, 60s);  // never beyond the route's ttl
  r.cache_control = "max-age=10, s-maxage=20";
  EXPECT_EQ(decide(route, 1000, r).ttl, 20s);  // s-maxage is the shared caches'
  route.ignore_cache_control = true;
  r.cache_control = "no-store, max-age=1";
  EXPECT_EQ(decide(route, 1000, r).refusal, Refusal::none);
  EXPECT_EQ(decide(route, 1000, r).ttl, 60s);
}

TEST(StoredLines, DropsPerResponseFields) {
  EXPECT_EQ(stored_lines("Content-Type: text/plain\r\nDate: x\r\nage: 5\r\nX-Cache: HIT\r\n"
                         "ETag: \"1\"\r\n",
                         "X-Cache"),
            "Content-Type: text/plain\r\nETag: \"1\"\r\n");
}

TEST(StoredLines, DropsTheFillersRequestId) {
  // An app that echoes X-Request-ID: every hit carries its own id, never the filler's.
  EXPECT_EQ(stored_lines("Content-Type: text/plain\r\nx-request-id: filler-1\r\n", "X-Cache",
                         "X-Request-ID"),
            "Content-Type: text/plain\r\n");
}

TEST(Freshness, TheUpstreamsAgeCountsAgainstTheTtl) {
  RouteCache route;
  route.stale_while_revalidate = 30s;
  route.stale_if_error = 60s;
  const auto now = std::chrono::steady_clock::time_point() + 1000h;
  auto w = windows(route, 60s, 50, now);  // max-age=60 and Age: 50: ten seconds left
  EXPECT_EQ(w.fresh_until, now + 10s);
  EXPECT_EQ(w.swr_until, now + 40s);
  EXPECT_EQ(w.stale_until, now + 70s);
  EXPECT_EQ(windows(route, 60s, 0, now).fresh_until, now + 60s);
  EXPECT_EQ(windows(route, 60s, 500, now).fresh_until, now);  // stale on arrival
}

TEST(Freshness, AgeParsing) {
  EXPECT_EQ(parse_age("50"), 50);
  EXPECT_EQ(parse_age(" 7 "), 7);
  EXPECT_EQ(parse_age(""), 0);
  EXPECT_EQ(parse_age("-3"), 0);
  EXPECT_EQ(parse_age("1e3"), 0);
  EXPECT_EQ(parse_age("99999999999999999999999"), INT32_MAX);
}

TEST(Refresh, ConditionalAndRangeFieldsAreNotSent) {
  std::string head =
      "GET /a HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"v1\"\r\nAccept: */*\r\n"
      "if-modified-since: Tue, 01 Dec 2026 00:00:00 GMT\r\nRange: bytes=0-1\r\n"
      "If-Range: \"v1\"\r\nIf-Match: *\r\nIf-Unmodified-Since: x\r\nX-Range-Note: keep\r\n\r\n";
  strip_conditional_fields(head);
  EXPECT_EQ(head, "GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nX-Range-Note: keep\r\n\r\n");
}

}  // namespace
}  // namespace gatehouse::filters::cache
