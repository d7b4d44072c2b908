#include "upstream/retry_policy.hpp"

#include <gtest/gtest.h>

#include <random>

namespace gatehouse::upstream {
namespace {

using namespace std::chrono_literals;
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

// Without a retry block (attempts 1), only the stale keep-alive rule applies: today's behaviour.
TEST(RetryPolicy, DecidesTheStaleConnectionRule) {
  const Case cases[] = {
      {"stale keep-alive GET", kStale, true},
      {"second stale failure is final", with(kStale, [](auto& i) { i.stale_retried = true; }),
       false},
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
    if (d.retry) {
      EXPECT_EQ(d.reason, RetryReason::stale_connection) << c.name;
      EXPECT_EQ(d.wait, 0ms) << c.name << ": a stale connection is not the upstream's trouble";
      EXPECT_FALSE(d.avoid_target) << c.name;
    }
  }
  // No configured retry: a 503, a reset on a fresh connection, a connect failure go to the client.
  EXPECT_EQ(
      policy.decide({.failure = TryFailure::status, .status = 503, .method_listed = true}).why_not,
      NoRetry::not_listed);
  EXPECT_FALSE(policy.decide({.failure = TryFailure::closed, .method_listed = true}).retry);
  EXPECT_FALSE(policy.decide({.failure = TryFailure::connect_failed}).retry);
}

config::RetryConfig issue_example() {
  config::RetryConfig r;
  r.attempts = 3;
  r.backoff_base = 1s;
  r.backoff_max = 4s;
  r.on = config::retry_connect_failure | config::retry_reset | config::retry_timeout |
         config::retry_invalid_json;
  r.on_status = {502, 503, 504, 429};
  return r;
}

// A GET whose first try got a 503 on a fresh connection: the base of the configured-retry rows.
constexpr RetryInput k503{.tries = 1,
                          .failure = TryFailure::status,
                          .status = 503,
                          .wrote_any = true,
                          .idempotent = true,
                          .method_listed = true};

TEST(RetryPolicy, RetriesWhatOnLists) {
  const RetryPolicy policy(issue_example());
  struct Row {
    const char* name;
    RetryInput in;
    NoRetry why_not;
    RetryReason reason;
  };
  const Row rows[] = {
      {"503", k503, NoRetry::none, RetryReason::status_5xx},
      {"502", with(k503, [](auto& i) { i.status = 502; }), NoRetry::none, RetryReason::status_5xx},
      {"504", with(k503, [](auto& i) { i.status = 504; }), NoRetry::none, RetryReason::status_5xx},
      {"500 is not listed", with(k503, [](auto& i) { i.status = 500; }), NoRetry::not_listed, {}},
      {"429", with(k503, [](auto& i) { i.status = 429; }), NoRetry::none, RetryReason::status_429},
      {"reset", with(k503, [](auto& i) { i.failure = TryFailure::closed; }), NoRetry::none,
       RetryReason::reset},
      {"timeout", with(k503, [](auto& i) { i.failure = TryFailure::timed_out; }), NoRetry::none,
       RetryReason::timeout},
      {"invalid_json", with(k503, [](auto& i) { i.failure = TryFailure::invalid_json; }),
       NoRetry::none, RetryReason::invalid_json},
      {"connect failure", with(k503, [](auto& i) { i.failure = TryFailure::connect_failed; }),
       NoRetry::none, RetryReason::connect_failure},
      {"a malformed head never",
       with(k503, [](auto& i) { i.failure = TryFailure::other; }),
       NoRetry::not_listed,
       {}},
      {"attempts used up", with(k503, [](auto& i) { i.tries = 3; }), NoRetry::attempts, {}},
      {"second retry allowed", with(k503, [](auto& i) { i.tries = 2; }), NoRetry::none,
       RetryReason::status_5xx},
      {"POST not listed",
       with(k503,
            [](auto& i) {
              i.idempotent = false;
              i.method_listed = false;
            }),
       NoRetry::method,
       {}},
      {"POST with Idempotency-Key",
       with(k503,
            [](auto& i) {
              i.method_listed = false;
              i.idempotency_key = true;
            }),
       NoRetry::none, RetryReason::status_5xx},
      {"POST whose connect failed: nothing was sent",
       with(k503,
            [](auto& i) {
              i.method_listed = false;
              i.failure = TryFailure::connect_failed;
              i.body = Body::not_kept;
            }),
       NoRetry::none, RetryReason::connect_failure},
      {"streamed body", with(k503, [](auto& i) { i.body = Body::not_kept; }), NoRetry::body, {}},
      {"kept body", with(k503, [](auto& i) { i.body = Body::replayable; }), NoRetry::none,
       RetryReason::status_5xx},
      {"429 with a single target",
       with(k503,
            [](auto& i) {
              i.status = 429;
              i.other_target = false;
            }),
       NoRetry::no_other_target,
       {}},
      {"503 with a single target", with(k503, [](auto& i) { i.other_target = false; }),
       NoRetry::none, RetryReason::status_5xx},
  };
  for (const auto& r : rows) {
    auto d = policy.decide(r.in);
    EXPECT_EQ(d.why_not, r.why_not) << r.name;
    EXPECT_EQ(d.retry, r.why_not == NoRetry::none) << r.name;
    if (d.retry) {
      EXPECT_EQ(d.reason, r.reason) << r.name;
    }
  }
}

TEST(RetryPolicy, WhereTheNextTryGoes) {
  const RetryPolicy policy(issue_example());
  auto d = policy.decide(k503);
  EXPECT_TRUE(d.avoid_target);
  EXPECT_FALSE(d.avoid_strictly);
  EXPECT_FALSE(d.fresh_connection) << "another target's idle connection is fine";
  d = policy.decide(with(k503, [](auto& i) { i.status = 429; }));
  EXPECT_TRUE(d.avoid_target);
  EXPECT_TRUE(d.avoid_strictly) << "a 429 is never retried against the same target";
  d = policy.decide(with(k503, [](auto& i) { i.failure = TryFailure::closed; }));
  EXPECT_TRUE(d.fresh_connection);
  EXPECT_TRUE(d.avoid_target);
  d = policy.decide(with(k503, [](auto& i) { i.failure = TryFailure::connect_failed; }));
  EXPECT_FALSE(d.avoid_target) << "every target failed to connect: the walk starts over";
}

TEST(RetryPolicy, BackoffBoundsDoubleUpToMax) {
  const RetryPolicy policy(issue_example());
  EXPECT_EQ(policy.backoff_bound(1), 1s);
  EXPECT_EQ(policy.backoff_bound(2), 2s);
  EXPECT_EQ(policy.backoff_bound(3), 4s);
  EXPECT_EQ(policy.backoff_bound(4), 4s);
  EXPECT_EQ(policy.backoff_bound(1000), 4s) << "no overflow";
}

TEST(RetryPolicy, FullJitterIsUniformWithinTheBound) {
  const RetryPolicy policy(issue_example());
  std::mt19937_64 rng(12345);  // seeded: the same draws every run
  for (int n = 1; n <= 4; ++n) {
    Millis lo = Millis::max();
    Millis hi = Millis::min();
    Millis::rep sum = 0;
    constexpr int kDraws = 4000;
    for (int i = 0; i < kDraws; ++i) {
      auto d = policy.backoff(n, rng());
      ASSERT_GE(d, 0ms);
      ASSERT_LE(d, policy.backoff_bound(n));
      lo = std::min(lo, d);
      hi = std::max(hi, d);
      sum += d.count();
    }
    auto bound = policy.backoff_bound(n).count();
    // Spread over the whole range, centred on its middle.
    EXPECT_LT(lo.count(), bound / 20) << n;
    EXPECT_GT(hi.count(), bound - bound / 20) << n;
    EXPECT_NEAR(static_cast<double>(sum) / kDraws, bound / 2.0, bound * 0.05) << n;
  }
  // The decision uses the same draw.
  auto d = policy.decide(with(k503, [](auto& i) {
    i.tries = 2;
    i.random = 777;
  }));
  EXPECT_EQ(d.wait, policy.backoff(2, 777));
}

TEST(RetryPolicy, NoJitterWaitsTheBound) {
  auto cfg = issue_example();
  cfg.jitter = config::Jitter::none;
  const RetryPolicy policy(cfg);
  EXPECT_EQ(policy.backoff(1, 999), 1s);
  EXPECT_EQ(policy.backoff(2, 0), 2s);
  EXPECT_EQ(policy.decide(with(k503, [](auto& i) { i.tries = 2; })).wait, 2s);
}

TEST(RetryPolicy, NeverStartsAWaitTheDeadlineWouldCut) {
  auto cfg = issue_example();
  cfg.jitter = config::Jitter::none;
  const RetryPolicy policy(cfg);
  EXPECT_TRUE(policy.decide(with(k503, [](auto& i) { i.remaining = 1001ms; })).retry);
  EXPECT_EQ(policy.decide(with(k503, [](auto& i) { i.remaining = 1000ms; })).why_not,
            NoRetry::deadline);
  EXPECT_EQ(policy.decide(with(k503, [](auto& i) { i.remaining = 0ms; })).why_not,
            NoRetry::deadline);
  EXPECT_EQ(policy.decide(with(k503, [](auto& i) { i.remaining = -5ms; })).why_not,
            NoRetry::deadline);
  EXPECT_EQ(policy
                .decide(with(k503,
                             [](auto& i) {
                               i.failure = TryFailure::connect_failed;
                               i.remaining = 500ms;
                             }))
                .why_not,
            NoRetry::deadline);
}

TEST(RetryPolicy, RetryAfterReplacesTheBackoffOrFailsFast) {
  const RetryPolicy policy(issue_example());
  auto r429 = with(k503, [](auto& i) { i.status = 429; });
  // Longer than what the deadline leaves: the response goes to the client at once.
  auto d = policy.decide(with(r429, [](auto& i) {
    i.retry_after = 30s;
    i.remaining = 10s;
  }));
  EXPECT_EQ(d.why_not, NoRetry::retry_after);
  EXPECT_EQ(policy
                .decide(with(k503,
                             [](auto& i) {
                               i.retry_after = 10s;
                               i.remaining = 10s;
                             }))
                .why_not,
            NoRetry::retry_after);
  // Shorter: waited instead of the backoff (longer than the 4 s backoff max is fine).
  d = policy.decide(with(r429, [](auto& i) {
    i.retry_after = 6s;
    i.remaining = 10s;
  }));
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.wait, 6s);
  d = policy.decide(with(k503, [](auto& i) { i.retry_after = 0s; }));
  EXPECT_TRUE(d.retry);
  EXPECT_EQ(d.wait, 0s);
  // No route deadline: at most backoff.max.
  EXPECT_EQ(policy.decide(with(k503, [](auto& i) { i.retry_after = 4s; })).wait, 4s);
  EXPECT_EQ(policy.decide(with(k503, [](auto& i) { i.retry_after = 5s; })).why_not,
            NoRetry::retry_after);
  // Only 429 and 503 carry a Retry-After that counts.
  d = policy.decide(with(k503, [](auto& i) {
    i.status = 502;
    i.retry_after = 30s;
    i.remaining = 10s;
  }));
  EXPECT_TRUE(d.retry);
  EXPECT_LE(d.wait, 1s);
}

TEST(RetryBudget, RetriesStayUnderTheShareOfRequests) {
  auto t0 = RetryClock::time_point{} + 1h;
  RetryBudget budget(20, 0, t0);
  int retries = 0;
  for (int i = 0; i < 1000; ++i) {
    budget.on_request();
    // Every request fails and asks for two retries.
    for (int k = 0; k < 2; ++k) {
      if (budget.try_spend(t0)) {
        ++retries;
      }
    }
  }
  EXPECT_EQ(retries, 200);
  EXPECT_FALSE(budget.try_spend(t0 + 1h)) << "no floor: time adds nothing";
}

TEST(RetryBudget, SavingsAreCapped) {
  auto t0 = RetryClock::time_point{} + 1h;
  RetryBudget budget(20, 0, t0);
  for (int i = 0; i < 100'000; ++i) {
    budget.on_request();  // a long healthy stretch
  }
  int retries = 0;
  while (budget.try_spend(t0)) {
    ++retries;
  }
  EXPECT_EQ(static_cast<std::uint64_t>(retries), RetryBudget::kCap / 100);
}

TEST(RetryBudget, FloorAllowsAFewRetriesPerSecond) {
  auto t0 = RetryClock::time_point{} + 1h;
  RetryBudget budget(0, 3, t0);
  int retries = 0;
  while (budget.try_spend(t0)) {
    ++retries;
  }
  EXPECT_EQ(retries, 3) << "one second's worth to start with";
  EXPECT_FALSE(budget.try_spend(t0 + 300ms)) << "0.9 of a retry";
  EXPECT_TRUE(budget.try_spend(t0 + 340ms)) << "1.02";
  EXPECT_FALSE(budget.try_spend(t0 + 340ms));
  // Idle for long: still one second's worth, not more.
  retries = 0;
  while (budget.try_spend(t0 + 1h)) {
    ++retries;
  }
  EXPECT_EQ(retries, 3);
}

TEST(RetryPolicy, NamesForLogsAndMetrics) {
  EXPECT_EQ(reason_name(RetryReason::stale_connection), "stale_connection");
  EXPECT_EQ(reason_name(RetryReason::status_429), "429");
  EXPECT_EQ(reason_name(RetryReason::invalid_json), "invalid_json");
  EXPECT_EQ(why_not_name(NoRetry::none), "none");
  EXPECT_EQ(why_not_name(NoRetry::retry_after), "retry_after");
  EXPECT_EQ(why_not_name(NoRetry::budget), "budget");
}

TEST(RetryAfter, DelaySeconds) {
  auto now = std::chrono::system_clock::now();
  EXPECT_EQ(parse_retry_after("30", now), 30s);
  EXPECT_EQ(parse_retry_after(" 0 ", now), 0s);
  EXPECT_EQ(parse_retry_after("99999999999999999999", now), std::chrono::seconds(86400 * 365));
  for (const char* bad : {"", "-1", "1.5", "30s", "abc", "3 0"}) {
    EXPECT_EQ(parse_retry_after(bad, now), std::nullopt) << bad;
  }
}

TEST(RetryAfter, HttpDates) {
  // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 seconds after the epoch.
  auto now = std::chrono::system_clock::time_point(std::chrono::seconds(784111777 - 120));
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), 120s);
  EXPECT_EQ(parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now), 120s);
  EXPECT_EQ(parse_retry_after("Sun Nov  6 08:49:37 1994", now), 120s);
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:47:37 GMT", now), 0s) << "now";
  EXPECT_EQ(parse_retry_after("Sat, 01 Jan 1994 00:00:00 GMT", now), 0s) << "in the past";
  EXPECT_EQ(parse_retry_after(
                "Thu, 29 Feb 2024 12:00:00 GMT",
                std::chrono::system_clock::time_point(std::chrono::seconds(1709208000 - 5))),
            5s)
      << "leap day";
  for (const char* bad : {"Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Foo 1994 08:49:37 GMT",
                          "Sun, 6 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 8:49:37 GMT",
                          "Sun, 06 Nov 1994 08:49 GMT", "06 Nov 1994"}) {
    EXPECT_EQ(parse_retry_after(bad, now), std::nullopt) << bad;
  }
}

TEST(JsonBodies, ContentTypes) {
  for (const char* t : {"application/json", "Application/JSON; charset=utf-8",
                        "application/problem+json", " application/vnd.api+json ;x=1"}) {
    EXPECT_TRUE(is_json_content_type(t)) << t;
  }
  for (const char* t : {"text/event-stream", "text/plain", "application/jsonl", "+json", "",
                        "application/x-ndjson"}) {
    EXPECT_FALSE(is_json_content_type(t)) << t;
  }
}

TEST(JsonBodies, Parses) {
  EXPECT_TRUE(json_parses(R"({"a": [1, 2, {"b": null}]})"));
  EXPECT_TRUE(json_parses("\"text\""));
  EXPECT_FALSE(json_parses(R"({"a": [1, 2)"));
  EXPECT_FALSE(json_parses("Sure! Here is the JSON: {}"));
  EXPECT_FALSE(json_parses(""));
}

}  // namespace
}  // namespace gatehouse::upstream
