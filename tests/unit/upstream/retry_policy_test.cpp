#include "upstream/retry_policy.hpp"

#include <gtest/gtest.h>

namespace gatehouse::upstream {
namespace {

using Body = RetryInput::Body;

TEST(IdempotentMethod, FollowsRfc9110) {
  for (const char* m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}) {
    EXPECT_TRUE(idempotent_method(m)) << m;
  }
  for (const char* m : {"POST", "PATCH", "CONNECT", "get", "PROPFIND", ""}) {
    EXPECT_FALSE(idempotent_method(m)) << m;
  }
}

struct Case {
  const char* name;
  RetryInput in;
  bool retry;
};

// A reused connection that was found closed, for a body-less GET with nothing written: the base
// every row changes one thing of.
constexpr RetryInput kStale{.tries = 1,
                            .failure = TryFailure::closed,
                            .reused_connection = true,
                            .wrote_any = false,
                            .body = Body::none,
                            .idempotent = true,
                            .idempotency_key = false};

RetryInput with(RetryInput in, auto change) {
  change(in);
  return in;
}

TEST(RetryPolicy, DecidesTodaysStaleConnectionRule) {
  const Case cases[] = {
      {"stale keep-alive GET", kStale, true},
      {"second failure is final", with(kStale, [](auto& i) { i.tries = 2; }), false},
      {"fresh connection failed", with(kStale, [](auto& i) { i.reused_connection = false; }),
       false},
      {"timeout is not stale", with(kStale, [](auto& i) { i.failure = TryFailure::timed_out; }),
       false},
      {"other error is not stale", with(kStale, [](auto& i) { i.failure = TryFailure::other; }),
       false},
      {"streamed body is gone", with(kStale, [](auto& i) { i.body = Body::not_kept; }), false},
      {"kept body may be replayed", with(kStale, [](auto& i) { i.body = Body::replayable; }), true},
      {"GET written then closed", with(kStale, [](auto& i) { i.wrote_any = true; }), true},
      {"POST never written", with(kStale, [](auto& i) { i.idempotent = false; }), true},
      {"POST written then closed",
       with(kStale,
            [](auto& i) {
              i.idempotent = false;
              i.wrote_any = true;
            }),
       false},
      {"POST with Idempotency-Key written then closed",
       with(kStale,
            [](auto& i) {
              i.idempotent = false;
              i.wrote_any = true;
              i.idempotency_key = true;
            }),
       true},
      {"POST with body and key",
       with(kStale,
            [](auto& i) {
              i.idempotent = false;
              i.idempotency_key = true;
              i.body = Body::not_kept;
            }),
       false},
  };
  const RetryPolicy policy;
  for (const auto& c : cases) {
    auto d = policy.decide(c.in);
    EXPECT_EQ(d.retry, c.retry) << c.name;
    EXPECT_EQ(d.fresh_connection, c.retry) << c.name << ": a retry never reuses an idle connection";
  }
}

TEST(RetryPolicy, MaxTriesBoundsRetries) {
  const RetryPolicy three(RetryPolicy::Settings{.max_tries = 3});
  EXPECT_TRUE(three.decide(with(kStale, [](auto& i) { i.tries = 2; })).retry);
  EXPECT_FALSE(three.decide(with(kStale, [](auto& i) { i.tries = 3; })).retry);
  const RetryPolicy none(RetryPolicy::Settings{.max_tries = 1});
  EXPECT_FALSE(none.decide(kStale).retry);
}

}  // namespace
}  // namespace gatehouse::upstream
