// The response cache's store with an injected clock: expiry, LRU by bytes, Vary variants,
// coalescing (one fill, waiters, bounds) and purges racing fills.
#include "filters/cache/store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <new>
#include <string>
#include <thread>
#include <vector>

// Allocations made by this thread while counting (the store's miss path must make none once a
// key's pending entry exists).
namespace {
thread_local bool counting = false;
thread_local std::size_t allocations = 0;
}  // namespace

// The replacements pair malloc with free; GCC sees through the inlined pair and warns wrongly.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (counting) {
    ++allocations;
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) {
    return p;
  }
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace gatehouse::filters::cache {
namespace {

using namespace std::chrono_literals;

const Clock::time_point t0 = Clock::time_point() + 1000h;

std::shared_ptr<Entry> entry(std::string body, Clock::time_point now, Clock::duration ttl,
                             Clock::duration stale = 0s) {
  auto e = std::make_shared<Entry>();
  e->body = std::move(body);
  e->lines = "Content-Type: text/plain\r\n";
  e->stored = now;
  e->fresh_until = now + ttl;
  e->swr_until = e->fresh_until + stale;
  e->stale_until = e->fresh_until + stale;
  return e;
}

struct Headers {
  std::map<std::string, std::string> values;
  HeaderLookup lookup() const {
    return [this](std::string_view n) -> std::string_view {
      auto it = values.find(std::string(n));
      return it == values.end() ? std::string_view() : std::string_view(it->second);
    };
  }
};

const Headers kNone;
const Waker kNoWake = [](std::shared_ptr<const Entry>) {};

Store::Lookup look(Store& s, const Key& k, Clock::time_point now, const Headers& h = kNone,
                   std::size_t max_waiters = 10, const Waker& w = kNoWake) {
  return s.lookup(k, h.lookup(), now, max_waiters, [&] { return w; });
}

void put(Store& s, const Key& k, std::shared_ptr<Entry> e, Clock::time_point now) {
  auto l = look(s, k, now);
  ASSERT_EQ(l.outcome, Store::Outcome::fill);
  EXPECT_TRUE(l.fill.complete(std::move(e), now));
}

TEST(CacheStore, MissFillsThenHitsUntilTheTtlEnds) {
  Store s({.max_memory = 1 << 20});
  Key k("/a", "GET");
  put(s, k, entry("hello", t0, 60s), t0);
  auto l = look(s, k, t0 + 59s);
  ASSERT_EQ(l.outcome, Store::Outcome::hit);
  EXPECT_EQ(l.entry->body, "hello");
  EXPECT_EQ(l.entry->age(t0 + 59s), 59);
  EXPECT_EQ(look(s, k, t0 + 60s).outcome, Store::Outcome::fill);
}

TEST(CacheStore, StaleWithinTheWindowAndOneRefreshPerKey) {
  Store s({.max_memory = 1 << 20});
  Key k("/a", "GET");
  put(s, k, entry("old", t0, 10s, 30s), t0);
  auto first = look(s, k, t0 + 15s);
  ASSERT_EQ(first.outcome, Store::Outcome::stale);
  EXPECT_TRUE(first.fill);  // this one refreshes
  auto second = look(s, k, t0 + 16s);
  ASSERT_EQ(second.outcome, Store::Outcome::stale);
  EXPECT_FALSE(second.fill);  // a refresh is already running
  first.fill.complete(entry("new", t0 + 17s, 10s, 30s), t0 + 17s);
  auto third = look(s, k, t0 + 18s);
  ASSERT_EQ(third.outcome, Store::Outcome::hit);
  EXPECT_EQ(third.entry->body, "new");
  // Past the window: a miss that still sees the expired copy (for stale_if_error).
  EXPECT_EQ(look(s, k, t0 + 17s + 41s).outcome, Store::Outcome::fill);
}

TEST(CacheStore, ConcurrentMissesWaitForOneFill) {
  Store s({.max_memory = 1 << 20});
  Key k("/a", "GET");
  auto filler = look(s, k, t0);
  ASSERT_EQ(filler.outcome, Store::Outcome::fill);
  std::vector<std::string> woken;
  Waker w = [&](std::shared_ptr<const Entry> e) { woken.push_back(e ? e->body : "(none)"); };
  EXPECT_EQ(look(s, k, t0, kNone, 2, w).outcome, Store::Outcome::waiting);
  EXPECT_EQ(look(s, k, t0, kNone, 2, w).outcome, Store::Outcome::waiting);
  EXPECT_EQ(look(s, k, t0, kNone, 2, w).outcome, Store::Outcome::bypass);  // over max_waiters
  EXPECT_TRUE(woken.empty());
  filler.fill.complete(entry("body", t0, 60s), t0);
  EXPECT_EQ(woken, (std::vector<std::string>{"body", "body"}));
}

TEST(CacheStore, AnAbandonedFillReleasesItsWaitersAndTheKey) {
  Store s({.max_memory = 1 << 20});
  Key k("/a", "GET");
  std::vector<std::string> woken;
  Waker w = [&](std::shared_ptr<const Entry> e) { woken.push_back(e ? e->body : "(none)"); };
  {
    auto filler = look(s, k, t0);
    EXPECT_EQ(look(s, k, t0, kNone, 10, w).outcome, Store::Outcome::waiting);
  }  // dropped unfinished (SSE, too large, failed upstream)
  EXPECT_EQ(woken, (std::vector<std::string>{"(none)"}));
  EXPECT_EQ(look(s, k, t0).outcome, Store::Outcome::fill);  // the next miss fills again
}

TEST(CacheStore, LruByBytesStaysWithinMaxMemory) {
  const std::size_t max = 64 * 1024;
  Store s({.max_memory = max, .shards = 1});
  for (int i = 0; i < 200; ++i) {
    Key k("/k/" + std::to_string(i), "GET");
    put(s, k, entry(std::string(1000, 'x'), t0, 60s), t0);
    ASSERT_LE(s.usage().bytes, max);
  }
  auto u = s.usage();
  EXPECT_GT(u.evictions, 0u);
  EXPECT_LT(u.entries, 64u);
  EXPECT_GT(u.entries, 20u);
  // The newest are kept, the oldest evicted; a hit refreshes recency.
  EXPECT_EQ(look(s, Key("/k/199", "GET"), t0).outcome, Store::Outcome::hit);
  EXPECT_EQ(look(s, Key("/k/0", "GET"), t0).outcome, Store::Outcome::fill);
}

TEST(CacheStore, BytesCountKeysAndHeadsNotOnlyBodies) {
  Store s({.max_memory = 1 << 20, .shards = 1});
  std::string long_path = "/" + std::string(4000, 'p');
  auto e = entry("", t0, 60s);
  e->lines = std::string(2000, 'h');
  put(s, Key(long_path, "GET"), e, t0);
  EXPECT_GE(s.usage().bytes, 6000u);
}

TEST(CacheStore, AnEntryLargerThanAShardIsNotStoredButWaitersGetIt) {
  Store s({.max_memory = 64 * 1024, .shards = 16});  // 4 KiB per shard
  Key k("/big", "GET");
  auto filler = look(s, k, t0);
  std::string got;
  Waker w = [&](std::shared_ptr<const Entry> e) { got = e ? e->body : "(none)"; };
  look(s, k, t0, kNone, 10, w);
  EXPECT_FALSE(filler.fill.complete(entry(std::string(8000, 'b'), t0, 60s), t0));
  EXPECT_EQ(got.size(), 8000u);
  EXPECT_EQ(s.usage().entries, 0u);
}

TEST(CacheStore, VaryKeepsOneVariantPerValueSet) {
  Store s({.max_memory = 1 << 20});
  Key k("/v", "GET");
  Headers en{{{"accept-language", "en"}}};
  Headers fr{{{"accept-language", "fr"}}};
  auto e1 = entry("hello", t0, 60s);
  e1->vary = {"accept-language"};
  e1->vary_values = vary_values(e1->vary, en.lookup());
  auto f = look(s, k, t0, en);
  f.fill.complete(e1, t0);
  auto l = look(s, k, t0, fr);
  ASSERT_EQ(l.outcome, Store::Outcome::fill);  // another variant: a miss
  auto e2 = entry("bonjour", t0, 60s);
  e2->vary = {"accept-language"};
  e2->vary_values = vary_values(e2->vary, fr.lookup());
  l.fill.complete(e2, t0);
  EXPECT_EQ(look(s, k, t0, en).entry->body, "hello");
  EXPECT_EQ(look(s, k, t0, fr).entry->body, "bonjour");
  EXPECT_EQ(s.usage().entries, 2u);
}

TEST(CacheStore, PurgeRemovesByCanonicalPathPrefix) {
  Store s({.max_memory = 1 << 20});
  put(s, Key("/api/slugs/a", "GET"), entry("a", t0, 60s), t0);
  put(s, Key("/api/slugs/b", "GET\x1fq"), entry("b", t0, 60s), t0);
  put(s, Key("/api/pages", "GET"), entry("p", t0, 60s), t0);
  EXPECT_EQ(s.purge_prefix("/api/slugs/"), 2u);
  EXPECT_EQ(look(s, Key("/api/slugs/a", "GET"), t0).outcome, Store::Outcome::fill);
  EXPECT_EQ(look(s, Key("/api/pages", "GET"), t0).outcome, Store::Outcome::hit);
  EXPECT_EQ(s.usage().purged, 2u);
}

TEST(CacheStore, PurgeWalksOnlyThePrefixRangeOfTheIndex) {
  // Paths sorting just before, inside and just after the prefix's range; several keys per path.
  Store s({.max_memory = 1 << 22, .shards = 4});
  const char* paths[] = {"/api/slug",      "/api/slugs",  "/api/slugs/", "/api/slugs/a",
                         "/api/slugs/a/b", "/api/slugs0", "/api/slugt",  "/api/slugs/\xff"};
  for (const char* p : paths) {
    put(s, Key(p, "GET"), entry(p, t0, 60s), t0);
    put(s, Key(p, "HEAD"), entry(p, t0, 60s), t0);
  }
  EXPECT_EQ(s.purge_prefix("/api/slugs/"), 8u);  // "/api/slugs/", "/a", "/a/b", "/\xff", x2
  for (const char* p : paths) {
    const bool gone = std::string_view(p).starts_with("/api/slugs/");
    EXPECT_EQ(look(s, Key(p, "GET"), t0).outcome, gone ? Store::Outcome::fill : Store::Outcome::hit)
        << p;
  }
  EXPECT_EQ(s.purge_prefix(""), 8u);  // everything left
  EXPECT_EQ(s.usage().entries, 0u);
}

TEST(CacheStore, AFillThatBeganBeforeAPurgeOfItsPathStoresNothing) {
  Store s({.max_memory = 1 << 20});
  Key k("/api/slugs/a", "GET");
  auto slow = look(s, k, t0);  // a slow miss goes upstream ...
  std::string got = "-";
  Waker w = [&](std::shared_ptr<const Entry> e) { got = e ? e->body : "(none)"; };
  look(s, k, t0, kNone, 10, w);
  s.purge_prefix("/api/slugs/");  // ... a write invalidates meanwhile ...
  EXPECT_FALSE(slow.fill.complete(entry("old", t0, 60s), t0));  // ... its answer is not kept
  EXPECT_EQ(got, "(none)");  // and its waiters go upstream for a fresh one
  EXPECT_EQ(look(s, k, t0).outcome, Store::Outcome::fill);
}

TEST(CacheStore, APurgeOfAnotherPathDoesNotDropAFill) {
  Store s({.max_memory = 1 << 20});
  Key k("/api/templates", "GET");
  auto fill = look(s, k, t0);
  s.purge_prefix("/api/slugs/");
  EXPECT_TRUE(fill.fill.complete(entry("t", t0, 60s), t0));
}

TEST(CacheStore, AFillOlderThanThePurgeLogStoresNothing) {
  Store s({.max_memory = 1 << 20});
  Key k("/a", "GET");
  auto fill = look(s, k, t0);
  for (std::size_t i = 0; i < Store::kPurgeLog + 1; ++i) {
    s.purge_prefix("/zzz");
  }
  EXPECT_FALSE(fill.fill.complete(entry("a", t0, 60s), t0));  // cannot tell: assume purged
}

TEST(CacheStore, PurgesRacingFillsNeverLeaveAnEntryFilledBeforeThePurge) {
  Store s({.max_memory = 1 << 22});
  std::atomic<bool> stop{false};
  std::thread purger([&] {
    while (!stop.load()) {
      s.purge_prefix("/p/");
    }
  });
  for (int i = 0; i < 2000; ++i) {
    Key k("/p/" + std::to_string(i % 7), "GET");
    auto l = look(s, k, t0);
    if (l.outcome != Store::Outcome::fill) {
      continue;
    }
    auto before = s.purge_prefix("/never");  // bumps the epoch: the log must still clear us
    (void)before;
    l.fill.complete(entry("x", t0, 60s), t0);
  }
  stop = true;
  purger.join();
  s.purge_prefix("/p/");
  EXPECT_EQ(s.usage().entries, 0u);
}

// A miss whose response is not storable (the compare-cache-miss benchmark): after the key's first
// miss, looking up, taking the fill and releasing it allocate nothing (no key copy, no pending
// entry), and the release takes no lock when nobody waits.
TEST(CacheStore, RepeatedUnstorableMissesOnOneKeyAllocateNothing) {
  Store s({.max_memory = 1 << 20});
  Key k("/a/long/enough/path/not/in/any/small/string/buffer", "GET");
  const KeyView v = k.view();
  const HeaderLookup none = kNone.lookup();
  const std::function<Waker()> no_waker = [] { return kNoWake; };
  look(s, k, t0).fill.abandon();  // the first miss makes the pending entry
  counting = true;
  allocations = 0;
  for (int i = 0; i < 100; ++i) {
    auto l = s.lookup(v, none, t0, 0, no_waker);
    ASSERT_EQ(l.outcome, Store::Outcome::fill);
    l.fill.abandon();
  }
  counting = false;
  EXPECT_EQ(allocations, 0u);
}

TEST(CacheStore, EndedFillsOfDistinctKeysDoNotPileUp) {
  Store s({.max_memory = 1 << 20, .shards = 1});
  for (int i = 0; i < 5000; ++i) {
    look(s, Key("/k/" + std::to_string(i), "GET"), t0).fill.abandon();
  }
  EXPECT_LE(s.usage().pending, 100u);
}

TEST(CacheStore, AWaiterRacingALockFreeReleaseIsNeverStranded) {
  // One thread fills and releases (nothing stored, often nobody waiting: the lock-free path);
  // another joins as a waiter. Every join must end in a wake-up or in a fill of its own.
  Store s({.max_memory = 1 << 20});
  Key k("/race", "GET");
  std::atomic<int> woken{0};
  std::atomic<bool> stop{false};
  int joined = 0;
  std::thread filler([&] {
    while (!stop.load()) {
      auto l = look(s, k, t0);
      if (l.outcome == Store::Outcome::fill) {
        l.fill.abandon();
      }
    }
  });
  Waker w = [&](std::shared_ptr<const Entry>) { woken.fetch_add(1); };
  for (int i = 0; i < 20000; ++i) {
    auto l = look(s, k, t0, kNone, 10, w);
    if (l.outcome == Store::Outcome::waiting) {
      ++joined;
    } else if (l.outcome == Store::Outcome::fill) {
      l.fill.abandon();
    }
  }
  stop = true;
  filler.join();
  look(s, k, t0).fill.abandon();
  EXPECT_EQ(woken.load(), joined);
}

TEST(CacheStore, BodiesBeingReadCountAgainstMaxMemory) {
  // A flood of concurrent large misses: what they are reading is held against max_memory, so
  // together with what is stored it never exceeds it.
  const std::size_t max = 64 * 1024;
  Store s({.max_memory = max, .shards = 1});
  for (int i = 0; i < 20; ++i) {
    put(s, Key("/small/" + std::to_string(i), "GET"), entry(std::string(1000, 's'), t0, 60s), t0);
  }
  std::vector<Store::Lookup> fills;
  int admitted = 0;
  for (int i = 0; i < 10; ++i) {
    fills.push_back(look(s, Key("/big/" + std::to_string(i), "GET"), t0));
    ASSERT_TRUE(fills.back().fill);
    if (s.reserve(fills.back().fill, 20 * 1024)) {
      ++admitted;
    }
    auto u = s.usage();
    ASSERT_LE(u.bytes + u.reserved, max);
  }
  EXPECT_EQ(admitted, 3);              // 3 x 20 KiB fit in 64 KiB, stored entries evicted
  EXPECT_GT(s.usage().evictions, 0u);  // the LRU made room for them
  EXPECT_FALSE(s.reserve(fills[9].fill, 70 * 1024));  // never more than the whole budget
  for (auto& f : fills) {
    f.fill.complete(entry(std::string(20 * 1024 - 400, 'b'), t0, 60s), t0);
    auto u = s.usage();
    ASSERT_LE(u.bytes + u.reserved, max);
  }
  EXPECT_EQ(s.usage().reserved, 0u);  // every reservation given back
}

TEST(CacheStore, AHeadMissDoesNotTakeTheFill) {
  Store s({.max_memory = 1 << 20});
  Key k("/h", "GET");
  const std::function<Waker()> no_waker = [] { return kNoWake; };
  auto head = s.lookup(k, kNone.lookup(), t0, 10, no_waker, false, /*may_fill=*/false);
  EXPECT_EQ(head.outcome, Store::Outcome::fill);
  EXPECT_FALSE(head.fill);  // goes upstream as a HEAD, storing nothing
  auto get = look(s, k, t0);
  ASSERT_EQ(get.outcome, Store::Outcome::fill);
  EXPECT_TRUE(get.fill);  // so a GET still fills, and a HEAD arriving now waits for it
  std::string got;
  Waker w = [&](std::shared_ptr<const Entry> e) { got = e ? e->body : "(none)"; };
  auto waiting = s.lookup(
      k, kNone.lookup(), t0, 10, [&] { return w; }, false, false);
  EXPECT_EQ(waiting.outcome, Store::Outcome::waiting);
  get.fill.complete(entry("body", t0, 60s), t0);
  EXPECT_EQ(got, "body");
}

}  // namespace
}  // namespace gatehouse::filters::cache
