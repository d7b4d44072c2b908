// What every job store does, whatever it is built on: the semantics the gateway side (accept,
// status, runner, admin) relies on. Instantiated for SQLite (sqlite_store_test.cpp) and Redis
// (redis_store_test.cpp).
#include <atomic>
#include <set>

#include "jobs/store_test_util.hpp"

namespace gatehouse::jobs::test {
namespace {

TEST_P(StoreContract, EnqueueThenGetReturnsTheWholeRequest) {
  auto s = open();
  Job j = make_job(std::string("body with \0 NUL and \xff bytes", 28));
  j.idempotency_key = "key-1";
  auto r = enqueue(*s, j);
  ASSERT_EQ(r.status, StoreStatus::ok);
  EXPECT_EQ(r.idempotency, EnqueueResult::Idempotency::created);
  ASSERT_TRUE(r.job);
  EXPECT_EQ(r.job->state, State::queued);
  EXPECT_GT(r.job->created_at, 0);

  auto g = get(*s, j.id);
  ASSERT_EQ(g.status, StoreStatus::ok);
  ASSERT_TRUE(g.job);
  const Job& got = *g.job;
  EXPECT_EQ(got.id, j.id);
  EXPECT_EQ(got.owner, j.owner);
  EXPECT_EQ(got.route, j.route);
  EXPECT_EQ(got.request_id, j.request_id);
  EXPECT_EQ(got.client_ip, j.client_ip);
  EXPECT_EQ(got.idempotency_key, "key-1");
  EXPECT_EQ(got.request_digest, j.request_digest);
  EXPECT_EQ(got.request.method, "POST");
  EXPECT_EQ(got.request.target, j.request.target);
  EXPECT_EQ(got.request.headers, j.request.headers);
  EXPECT_EQ(got.request.body, j.request.body);
  EXPECT_EQ(got.state, State::queued);
  EXPECT_EQ(got.attempts, 0);
  EXPECT_EQ(got.max_attempts, 3);
  EXPECT_EQ(got.created_at, r.job->created_at);
  EXPECT_FALSE(got.response);

  EXPECT_EQ(get(*s, random_id()).status, StoreStatus::not_found);
}

TEST_P(StoreContract, ClaimMarksRunningWithALeaseAndCountsTheAttempt) {
  auto s = open();
  Job j = make_job();
  ASSERT_EQ(enqueue(*s, j).status, StoreStatus::ok);
  Millis before = now_ms();
  auto got = claim(*s, 10, 30s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, j.id);
  EXPECT_EQ(got[0].state, State::running);
  EXPECT_EQ(got[0].attempts, 1);
  EXPECT_EQ(got[0].request.body, j.request.body);
  EXPECT_GE(got[0].run_at, before + 30000);
  EXPECT_EQ(get(*s, j.id).job->state, State::running);
  // Held by the lease: nobody else gets it.
  EXPECT_TRUE(claim(*s, 10, 30s).empty());
  EXPECT_TRUE(eventually([&] { return s->counts().running == 1 && s->counts().queued == 0; }));
}

TEST_P(StoreContract, ClaimTakesAtMostMaxOldestFirst) {
  auto s = open();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    Job j = make_job();
    ids.push_back(j.id);
    ASSERT_EQ(enqueue(*s, j).status, StoreStatus::ok);
  }
  auto first = claim(*s, 3, 30s);
  auto second = claim(*s, 3, 30s);
  ASSERT_EQ(first.size(), 3u);
  ASSERT_EQ(second.size(), 2u);
  std::set<std::string> all;
  for (auto& v : {first, second}) {
    for (auto& j : v) {
      all.insert(j.id);
    }
  }
  EXPECT_EQ(all.size(), 5u);
}

TEST_P(StoreContract, AnExpiredLeaseIsClaimedAgain) {
  auto s = open();
  Job j = make_job();
  ASSERT_EQ(enqueue(*s, j).status, StoreStatus::ok);
  ASSERT_EQ(claim(*s, 1, 100ms).size(), 1u);
  // The claimer "crashed": after its lease the job is taken again (at-least-once).
  auto again = claim(*s, 1, 30s, 5s);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, j.id);
  EXPECT_EQ(again[0].attempts, 2);
}

TEST_P(StoreContract, RenewKeepsTheJob) {
  auto s = open();
  Job j = make_job();
  ASSERT_EQ(enqueue(*s, j).status, StoreStatus::ok);
  ASSERT_EQ(claim(*s, 1, 200ms).size(), 1u);
  s->renew(j.id, 30s);
  // Renewal is fire-and-forget; a get afterwards is ordered behind it.
  auto g = get(*s, j.id);
  EXPECT_GE(g.job->run_at, now_ms() + 20000);
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(claim(*s, 1, 30s).empty());
}

TEST_P(StoreContract, RetryLaterIsNotClaimedBeforeRunAt) {
  auto s = open();
  Job j = make_job();
  ASSERT_EQ(enqueue(*s, j).status, StoreStatus::ok);
  ASSERT_EQ(claim(*s, 1, 30s).size(), 1u);
  Millis run_at = now_ms() + 400;
  ASSERT_EQ(retry_later(*s, j.id, run_at, "upstream 503"), StoreStatus::ok);
  auto g = get(*s, j.id);
  EXPECT_EQ(g.job->state, State::queued);
  EXPECT_EQ(g.job->last_error, "upstream 503");
  EXPECT_EQ(g.job->attempts, 1);
  EXPECT_TRUE(claim(*s, 1, 30s).empty());
  // A long poll is answered when the backoff ends.
  auto got = claim(*s, 1, 30s, 20s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_GE(now_ms(), run_at);
  EXPECT_EQ(got[0].attempts, 2);
  EXPECT_EQ(retry_later(*s, random_id(), now_ms()), StoreStatus::not_found);
}

TEST_P(StoreContract, ALongPollIsWokenByAnEnqueue) {
  auto s = open();
  auto p = std::make_shared<std::promise<std::vector<Job>>>();
  // Waits far longer than the test's bound: only the enqueue can end it in time.
  s->claim(4, 30s, 60s, [p](std::vector<Job> j) { p->set_value(std::move(j)); });
  std::this_thread::sleep_for(50ms);
  Job j = make_job();
  ASSERT_EQ(enqueue(*s, j).status, StoreStatus::ok);
  auto got = await(p, 10s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, j.id);
}

TEST_P(StoreContract, ALongPollEndsWithNone) {
  auto s = open();
  EXPECT_TRUE(claim(*s, 4, 30s, 100ms).empty());
}

TEST_P(StoreContract, FinishKeepsTheResponseAndTheError) {
  auto s = open();
  Job ok = make_job(), bad = make_job(), dead = make_job();
  for (auto* j : {&ok, &bad, &dead}) {
    ASSERT_EQ(enqueue(*s, *j).status, StoreStatus::ok);
  }
  ASSERT_EQ(claim(*s, 3, 30s).size(), 3u);
  StoredResponse resp{200, {{"Content-Type", "text/plain"}, {"X-A", "1"}}, std::string("ok\0!", 4)};
  ASSERT_EQ(finish(*s, ok.id, State::succeeded, resp), StoreStatus::ok);
  ASSERT_EQ(finish(*s, bad.id, State::failed, StoredResponse{422, {}, "no"}), StoreStatus::ok);
  ASSERT_EQ(finish(*s, dead.id, State::dead, std::nullopt, "connect refused"), StoreStatus::ok);

  auto g = get(*s, ok.id).job;
  ASSERT_TRUE(g);
  EXPECT_EQ(g->state, State::succeeded);
  ASSERT_TRUE(g->response);
  EXPECT_EQ(g->response->status, 200u);
  EXPECT_EQ(g->response->headers, resp.headers);
  EXPECT_EQ(g->response->body, resp.body);
  EXPECT_GT(g->finished_at, 0);
  EXPECT_EQ(get(*s, bad.id).job->state, State::failed);
  EXPECT_EQ(get(*s, bad.id).job->response->status, 422u);
  auto d = get(*s, dead.id).job;
  EXPECT_EQ(d->state, State::dead);
  EXPECT_FALSE(d->response);
  EXPECT_EQ(d->last_error, "connect refused");

  EXPECT_EQ(finish(*s, random_id(), State::succeeded), StoreStatus::not_found);
  EXPECT_TRUE(eventually([&] {
    auto c = s->counts();
    return c.succeeded == 1 && c.failed == 1 && c.dead == 1 && c.running == 0;
  }));
  // Final jobs are never claimed again.
  EXPECT_TRUE(claim(*s, 10, 30s).empty());
}

TEST_P(StoreContract, IdempotencyKeys) {
  auto s = open();
  Job first = make_job("body-1");
  first.idempotency_key = "k";
  auto r1 = enqueue(*s, first);
  ASSERT_EQ(r1.idempotency, EnqueueResult::Idempotency::created);

  Job same = make_job("body-1");
  same.idempotency_key = "k";
  auto r2 = enqueue(*s, same);
  EXPECT_EQ(r2.status, StoreStatus::ok);
  EXPECT_EQ(r2.idempotency, EnqueueResult::Idempotency::existing);
  ASSERT_TRUE(r2.job);
  EXPECT_EQ(r2.job->id, first.id);
  EXPECT_EQ(get(*s, same.id).status, StoreStatus::not_found);

  Job other_body = make_job("body-2");
  other_body.idempotency_key = "k";
  EXPECT_EQ(enqueue(*s, other_body).idempotency, EnqueueResult::Idempotency::mismatch);

  // Keys are per owner.
  Job other_owner = make_job("body-1");
  other_owner.idempotency_key = "k";
  other_owner.owner = "owner-b";
  EXPECT_EQ(enqueue(*s, other_owner).idempotency, EnqueueResult::Idempotency::created);

  // Done: the same key still answers the stored job, with its response.
  ASSERT_EQ(claim(*s, 10, 30s).size(), 2u);
  ASSERT_EQ(finish(*s, first.id, State::succeeded, StoredResponse{201, {}, "made"}),
            StoreStatus::ok);
  auto r3 = enqueue(*s, same);
  EXPECT_EQ(r3.idempotency, EnqueueResult::Idempotency::existing);
  ASSERT_TRUE(r3.job && r3.job->response);
  EXPECT_EQ(r3.job->response->body, "made");
}

TEST_P(StoreContract, ADuplicateOfAnUncommittedAcceptIsInProgress) {
  auto s = open();
  // Hold the store thread in a callback so both enqueues land in the same batch.
  std::promise<void> release;
  auto released = release.get_future().share();
  auto held = std::make_shared<std::promise<bool>>();
  s->get(random_id(), [released, held](StoreStatus, std::optional<Job>) {
    held->set_value(true);
    released.wait();
  });
  ASSERT_TRUE(await(held));
  Job a = make_job("same"), b = make_job("same");
  a.idempotency_key = b.idempotency_key = "dup";
  auto pa = std::make_shared<std::promise<EnqueueResult>>();
  auto pb = std::make_shared<std::promise<EnqueueResult>>();
  s->enqueue(a, false, 30s, [pa](EnqueueResult r) { pa->set_value(std::move(r)); });
  s->enqueue(b, false, 30s, [pb](EnqueueResult r) { pb->set_value(std::move(r)); });
  release.set_value();
  auto ra = await(pa), rb = await(pb);
  EXPECT_EQ(ra.idempotency, EnqueueResult::Idempotency::created);
  EXPECT_EQ(rb.idempotency, EnqueueResult::Idempotency::in_progress);
  // Once committed, the same duplicate is an existing job.
  EXPECT_EQ(enqueue(*s, b).idempotency, EnqueueResult::Idempotency::existing);
}

TEST_P(StoreContract, ListRequeueRemove) {
  auto s = open();
  std::vector<Job> jobs;
  for (int i = 0; i < 3; ++i) {
    jobs.push_back(make_job("body-" + std::to_string(i)));
    ASSERT_EQ(enqueue(*s, jobs.back()).status, StoreStatus::ok);
    std::this_thread::sleep_for(5ms);  // distinct created_at: newest first is observable
  }
  ASSERT_EQ(claim(*s, 3, 30s).size(), 3u);
  for (auto& j : jobs) {
    ASSERT_EQ(finish(*s, j.id, State::dead, std::nullopt, "boom"), StoreStatus::ok);
  }
  auto l = list(*s, State::dead);
  ASSERT_EQ(l.status, StoreStatus::ok);
  ASSERT_EQ(l.jobs.size(), 3u);
  EXPECT_EQ(l.jobs[0].id, jobs[2].id);
  EXPECT_EQ(l.jobs[2].id, jobs[0].id);
  EXPECT_TRUE(l.jobs[0].request.body.empty());  // listed without bodies
  EXPECT_EQ(l.jobs[0].last_error, "boom");
  EXPECT_EQ(list(*s, State::dead, 2).jobs.size(), 2u);
  EXPECT_TRUE(list(*s, State::queued).jobs.empty());

  ASSERT_EQ(requeue(*s, jobs[0].id), StoreStatus::ok);
  auto g = get(*s, jobs[0].id).job;
  EXPECT_EQ(g->state, State::queued);
  EXPECT_EQ(g->attempts, 0);
  EXPECT_EQ(list(*s, State::queued).jobs.size(), 1u);
  // Only dead or failed jobs are re-queued.
  EXPECT_EQ(requeue(*s, jobs[0].id), StoreStatus::not_found);
  EXPECT_EQ(requeue(*s, random_id()), StoreStatus::not_found);
  auto again = claim(*s, 1, 30s);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempts, 1);

  ASSERT_EQ(remove(*s, jobs[1].id), StoreStatus::ok);
  EXPECT_EQ(get(*s, jobs[1].id).status, StoreStatus::not_found);
  EXPECT_EQ(remove(*s, jobs[1].id), StoreStatus::not_found);
  EXPECT_EQ(list(*s, State::dead).jobs.size(), 1u);
  EXPECT_TRUE(eventually([&] { return s->counts().dead == 1 && s->counts().running == 1; }));
}

TEST_P(StoreContract, MaxQueuedAnswersFull) {
  StoreOptions o;
  o.max_queued = 2;
  auto s = open(o);
  ASSERT_EQ(enqueue(*s, make_job()).status, StoreStatus::ok);
  ASSERT_EQ(enqueue(*s, make_job()).status, StoreStatus::ok);
  Job third = make_job();
  EXPECT_EQ(enqueue(*s, third).status, StoreStatus::full);
  EXPECT_EQ(get(*s, third.id).status, StoreStatus::not_found);
  // A claimed job leaves the queue: room again.
  ASSERT_EQ(claim(*s, 1, 30s).size(), 1u);
  EXPECT_EQ(enqueue(*s, third).status, StoreStatus::ok);
}

TEST_P(StoreContract, FinalJobsExpireAfterTheResultTtl) {
  StoreOptions o;
  o.result_ttl = 300ms;
  auto s = open(o);
  Job j = make_job("expiring");
  j.idempotency_key = "ttl-key";
  Job pending = make_job();
  ASSERT_EQ(enqueue(*s, j).status, StoreStatus::ok);
  ASSERT_EQ(claim(*s, 1, 30s).size(), 1u);
  ASSERT_EQ(enqueue(*s, pending).status, StoreStatus::ok);
  ASSERT_EQ(finish(*s, j.id, State::succeeded, StoredResponse{200, {}, "r"}), StoreStatus::ok);
  EXPECT_EQ(get(*s, j.id).status, StoreStatus::ok);
  EXPECT_TRUE(eventually([&] { return get(*s, j.id).status == StoreStatus::not_found; }));
  EXPECT_TRUE(eventually([&] { return s->counts().succeeded == 0; }));
  // Its idempotency key went with it; jobs not final never expire.
  Job reuse = make_job("expiring");
  reuse.idempotency_key = "ttl-key";
  EXPECT_EQ(enqueue(*s, reuse).idempotency, EnqueueResult::Idempotency::created);
  EXPECT_EQ(get(*s, pending.id).status, StoreStatus::ok);
}

TEST_P(StoreContract, ReleaseRunningQueuesHeldJobsAgain) {
  auto s = open();
  Job j = make_job();
  ASSERT_EQ(enqueue(*s, j).status, StoreStatus::ok);
  ASSERT_EQ(claim(*s, 1, 60s).size(), 1u);
  ASSERT_TRUE(release_running(*s));
  EXPECT_EQ(get(*s, j.id).job->state, State::queued);
  auto again = claim(*s, 1, 60s);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, j.id);
}

TEST_P(StoreContract, RunHereIsRunningUnderTheCallersLease) {
  auto s = open();
  Job j = make_job();
  auto r = enqueue(*s, j, /*run_here=*/true, 30s);
  ASSERT_EQ(r.status, StoreStatus::ok);
  ASSERT_TRUE(r.job);
  EXPECT_EQ(r.job->state, State::running);
  EXPECT_EQ(r.job->attempts, 1);
  EXPECT_EQ(get(*s, j.id).job->state, State::running);
  EXPECT_TRUE(claim(*s, 1, 30s).empty());
  ASSERT_EQ(finish(*s, j.id, State::succeeded, StoredResponse{200, {}, "x"}), StoreStatus::ok);
}

TEST_P(StoreContract, ManyConcurrentEnqueuesAreAllStored) {
  auto s = open();
  constexpr int kThreads = 4, kPer = 250;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  std::vector<std::shared_ptr<std::promise<bool>>> all(kThreads * kPer);
  for (auto& p : all) {
    p = std::make_shared<std::promise<bool>>();
  }
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPer; ++i) {
        auto p = all[static_cast<std::size_t>(t * kPer + i)];
        s->enqueue(make_job(), false, 30s, [p, &ok](EnqueueResult r) {
          ok += r.status == StoreStatus::ok ? 1 : 0;
          p->set_value(true);
        });
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  for (auto& p : all) {
    await(p);
  }
  EXPECT_EQ(ok.load(), kThreads * kPer);
  EXPECT_TRUE(eventually([&] { return s->counts().queued == kThreads * kPer; }));
  std::size_t claimed = 0;
  for (int i = 0; i < 20 && claimed < kThreads * kPer; ++i) {
    claimed += claim(*s, 100, 30s).size();
  }
  EXPECT_EQ(claimed, static_cast<std::size_t>(kThreads * kPer));
  EXPECT_TRUE(s->health().ok);
}

}  // namespace
}  // namespace gatehouse::jobs::test

namespace gatehouse::jobs::test {
namespace {

// One bad call (an id that exists already) fails alone, not the calls batched with it.
TEST_P(StoreContract, ABadCallDoesNotFailItsBatch) {
  auto s = open();
  Job first = make_job();
  ASSERT_EQ(enqueue(*s, first).status, StoreStatus::ok);
  std::promise<void> release;
  auto released = release.get_future().share();
  auto held = std::make_shared<std::promise<bool>>();
  s->get(random_id(), [released, held](StoreStatus, std::optional<Job>) {
    held->set_value(true);
    released.wait();
  });
  ASSERT_TRUE(await(held));
  Job dup = make_job("another body");
  dup.id = first.id;
  Job good = make_job();
  auto pd = std::make_shared<std::promise<EnqueueResult>>();
  auto pg = std::make_shared<std::promise<EnqueueResult>>();
  s->enqueue(dup, false, 30s, [pd](EnqueueResult r) { pd->set_value(std::move(r)); });
  s->enqueue(good, false, 30s, [pg](EnqueueResult r) { pg->set_value(std::move(r)); });
  release.set_value();
  EXPECT_EQ(await(pd).status, StoreStatus::unavailable);
  EXPECT_EQ(await(pg).status, StoreStatus::ok);
  EXPECT_EQ(get(*s, first.id).job->request.body, first.request.body);
  EXPECT_EQ(get(*s, good.id).status, StoreStatus::ok);
  EXPECT_TRUE(s->health().ok);
}

}  // namespace
}  // namespace gatehouse::jobs::test

namespace gatehouse::jobs::test {
namespace {

TEST_P(StoreContract, CountsTellTheOldestQueuedJob) {
  auto s = open();
  EXPECT_EQ(s->counts().oldest_queued_at, 0);
  auto a = enqueue(*s, make_job());
  std::this_thread::sleep_for(5ms);
  auto b = enqueue(*s, make_job());
  ASSERT_TRUE(a.job && b.job);
  EXPECT_TRUE(eventually([&] { return s->counts().oldest_queued_at == a.job->created_at; }))
      << s->counts().oldest_queued_at << " vs " << a.job->created_at;
  auto got = claim(*s, 1, 30s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, a.job->id);  // oldest first
  EXPECT_TRUE(eventually([&] { return s->counts().oldest_queued_at == b.job->created_at; }));
  ASSERT_EQ(claim(*s, 1, 30s).size(), 1u);
  EXPECT_TRUE(eventually([&] { return s->counts().oldest_queued_at == 0; }));
}

}  // namespace
}  // namespace gatehouse::jobs::test
