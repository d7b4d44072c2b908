// The pure rules of async jobs (issue 13): Prefer, what a route and a preference decide, ids,
// digests, kept header lines, the JSON answered, and what an attempt's outcome makes of a job.
#include "filters/jobs/policy.hpp"

#include <gtest/gtest.h>

#include <set>

#include "filters/jobs/config.hpp"

namespace gatehouse::filters::jobs {
namespace {

using Mode = config::Route::Mode;
using Kind = Acceptance::Kind;
using std::chrono::seconds;

Preference prefer(std::initializer_list<std::string_view> values) {
  Preference p;
  for (auto v : values) {
    p.add(v);
  }
  return p;
}

TEST(JobsPolicy, PreferParsing) {
  EXPECT_TRUE(prefer({"respond-async"}).respond_async);
  EXPECT_FALSE(prefer({"respond-async"}).wait);
  auto p = prefer({"Respond-Async, wait=10"});
  EXPECT_TRUE(p.respond_async);
  EXPECT_EQ(p.wait, seconds(10));
  EXPECT_EQ(prefer({"return=minimal", "wait=\"7\" ;x=y", "respond-async"}).wait, seconds(7));
  EXPECT_FALSE(prefer({"return=minimal"}).respond_async);
  EXPECT_FALSE(prefer({"respond-async-later"}).respond_async);
  EXPECT_FALSE(prefer({"wait=abc, respond-async"}).wait);
  EXPECT_EQ(prefer({"wait=999999999999, respond-async"}).wait, seconds(3600));
  // The first wait wins (RFC 7240: a preference given twice, the first is used).
  EXPECT_EQ(prefer({"wait=3", "wait=9"}).wait, seconds(3));
}

TEST(JobsPolicy, DecideByModeAndPreference) {
  const std::chrono::milliseconds five(5000);
  EXPECT_EQ(decide(Mode::sync, five, prefer({"respond-async"})).kind, Kind::proxy);
  EXPECT_EQ(decide(Mode::async, five, {}).kind, Kind::async);
  EXPECT_FALSE(decide(Mode::async, five, {}).preference_applied);
  auto h = decide(Mode::hybrid, five, {});
  EXPECT_EQ(h.kind, Kind::wait);
  EXPECT_EQ(h.wait, five);
  EXPECT_EQ(decide(Mode::hybrid, std::chrono::milliseconds(0), {}).kind, Kind::async);
  auto a = decide(Mode::hybrid, five, prefer({"respond-async"}));
  EXPECT_EQ(a.kind, Kind::async);
  EXPECT_TRUE(a.preference_applied);
  auto w = decide(Mode::async, five, prefer({"respond-async, wait=10"}));
  EXPECT_EQ(w.kind, Kind::wait);
  EXPECT_EQ(w.wait, seconds(10));
  EXPECT_TRUE(w.preference_applied);
  // A client cannot hold a connection longer than a minute (or the route's hybrid_wait).
  EXPECT_EQ(decide(Mode::async, five, prefer({"respond-async, wait=600"})).wait, seconds(60));
}

TEST(JobsPolicy, IdsAreRandomHex) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto id = new_job_id();
    EXPECT_TRUE(valid_job_id(id)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000U);
  EXPECT_FALSE(valid_job_id("ABCDEF0123456789abcdef0123456789"));
  EXPECT_FALSE(valid_job_id("abc"));
  EXPECT_FALSE(valid_job_id("../../etc/passwd0123456789abcdef0"));
}

TEST(JobsPolicy, DigestSeparatesParts) {
  EXPECT_EQ(request_digest("POST", "/a", "x"), request_digest("POST", "/a", "x"));
  EXPECT_NE(request_digest("POST", "/a", "x"), request_digest("POST", "/a", "y"));
  EXPECT_NE(request_digest("POST", "/ab", ""), request_digest("POST", "/a", "b"));
  EXPECT_EQ(request_digest("GET", "/", "").size(), 64U);
}

TEST(JobsPolicy, KeptFields) {
  EXPECT_TRUE(keeps_request_field("Authorization", "X-Request-ID"));
  EXPECT_TRUE(keeps_request_field("Content-Type", "X-Request-ID"));
  for (auto name : {"Connection", "Keep-Alive", "Transfer-Encoding", "content-length", "Expect",
                    "Prefer", "X-Forwarded-For", "x-request-id", "Idempotency-Key", "TE"}) {
    EXPECT_FALSE(keeps_request_field(name, "X-Request-ID")) << name;
  }
  EXPECT_TRUE(keeps_response_field("Content-Type"));
  EXPECT_TRUE(keeps_response_field("Set-Cookie"));
  EXPECT_FALSE(keeps_response_field("Transfer-Encoding"));
  EXPECT_FALSE(keeps_response_field("Content-Length"));
  EXPECT_FALSE(keeps_response_field("Connection"));
}

TEST(JobsPolicy, Bodies) {
  Job j;
  j.id = "0123456789abcdef0123456789abcdef";
  j.state = State::queued;
  EXPECT_EQ(accepted_body(j, "/jobs"),
            R"({"job_id":"0123456789abcdef0123456789abcdef","status":"queued",)"
            R"("status_url":"/jobs/0123456789abcdef0123456789abcdef"})");
  j.state = State::succeeded;
  j.attempts = 2;
  j.max_attempts = 3;
  j.created_at = 1764648000123;  // 2025-12-02T04:00:00.123Z
  j.updated_at = j.created_at;
  j.finished_at = j.created_at + 1000;
  j.response = StoredResponse{201, {}, "x"};
  auto s = status_body(j, "/jobs");
  EXPECT_NE(
      s.find(
          R"("status":"succeeded","status_url":"/jobs/0123456789abcdef0123456789abcdef","attempts":2,"max_attempts":3,)"
          R"("created_at":"2025-12-02T04:00:00.123Z")"),
      std::string::npos)
      << s;
  EXPECT_NE(
      s.find(R"("finished_at":"2025-12-02T04:00:01.123Z","upstream_status":201,"error":null)"),
      std::string::npos)
      << s;
  j.state = State::running;
  j.last_error = "a \"quoted\" error";
  s = status_body(j, "/jobs");
  EXPECT_NE(s.find(R"("finished_at":null,"upstream_status":null,"error":"a \"quoted\" error")"),
            std::string::npos)
      << s;
}

Job job(int attempts, int max) {
  Job j;
  j.attempts = attempts;
  j.max_attempts = max;
  return j;
}

TEST(JobsPolicy, JudgeOutcomes) {
  auto retry = Settings::default_retry();  // connect_failure, reset, timeout, 429, 502-504
  retry.jitter = config::Jitter::none;
  const EpochMs now = 1'000'000;
  using F = Attempt::Failure;
  auto v = judge({F::none, 200, {}}, job(1, 3), retry, now, 0);
  EXPECT_EQ(v.state, State::succeeded);
  EXPECT_TRUE(v.error.empty());
  v = judge({F::none, 422, {}}, job(1, 3), retry, now, 0);
  EXPECT_EQ(v.state, State::failed);
  EXPECT_EQ(v.error, "upstream answered 422");
  v = judge({F::none, 500, {}}, job(1, 3), retry, now, 0);  // 500 is not in the default `on`
  EXPECT_EQ(v.state, State::failed);
  v = judge({F::none, 503, {}}, job(1, 3), retry, now, 0);
  EXPECT_EQ(v.state, State::queued);
  EXPECT_EQ(v.run_at, now + 1000);
  v = judge({F::none, 503, {}}, job(2, 3), retry, now, 0);
  EXPECT_EQ(v.run_at, now + 2000);  // exponential
  v = judge({F::none, 503, {}}, job(3, 3), retry, now, 0);
  EXPECT_EQ(v.state, State::dead);
  EXPECT_EQ(v.error, "upstream answered 503 (after 3 attempts)");
  v = judge({F::none, 429, seconds(30)}, job(1, 3), retry, now, 0);
  EXPECT_EQ(v.run_at, now + 30'000);  // Retry-After honoured when longer than the backoff
  v = judge({F::connect_failed, 0, {}}, job(1, 3), retry, now, 0);
  EXPECT_EQ(v.state, State::queued);
  v = judge({F::too_large, 0, {}}, job(1, 3), retry, now, 0);
  EXPECT_EQ(v.state, State::dead);  // the same response would be too large again
  retry.on = 0;
  v = judge({F::reset, 0, {}}, job(1, 3), retry, now, 0);
  EXPECT_EQ(v.state, State::dead);
  // Full jitter stays within the bound, capped at max.
  retry = Settings::default_retry();
  for (std::uint64_t r : {0ULL, 1ULL, 999ULL, 123456789ULL, ~0ULL}) {
    v = judge({F::none, 502, {}}, job(20, 30), retry, now, r);
    EXPECT_GE(v.run_at, now);
    EXPECT_LE(v.run_at, now + 60'000);
  }
}

}  // namespace
}  // namespace gatehouse::filters::jobs
