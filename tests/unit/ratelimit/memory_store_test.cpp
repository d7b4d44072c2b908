// The in-memory table: all-or-nothing commits across stacked checks, LRU eviction under the key
// cap, hashed long keys, an IP spray that must not cost real clients their counts or the process
// its memory, and exact admissions under concurrent decisions.
#include "ratelimit/memory_store.hpp"

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <array>
#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

// mallinfo2() means nothing under ASan's allocator (GCC defines __SANITIZE_ADDRESS__, Clang
// answers __has_feature).
#if defined(__SANITIZE_ADDRESS__)
#define GATEHOUSE_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GATEHOUSE_TEST_ASAN 1
#endif
#endif
#if !defined(GATEHOUSE_TEST_ASAN)
#include <malloc.h>
#endif

namespace gatehouse::ratelimit {
namespace {

constexpr Nanos kSec = 1'000'000'000;
constexpr Nanos kMin = 60 * kSec;
constexpr Nanos kT0 = 5 * kSec;

Check check(std::string_view key, std::uint64_t count, Nanos period = kMin,
            Algorithm a = Algorithm::fixed_window) {
  Check c;
  c.key = key;
  c.algorithm = a;
  c.params = Params{count, period, 0};
  return c;
}

// a + b without GCC 12's false -Wrestrict on `"literal" + std::string`.
std::string cat(std::string_view a, std::string_view b) {
  std::string out(a);
  out += b;
  return out;
}

// One request against one key.
bool hit(MemoryStore& store, std::string_view key, std::uint64_t count, Nanos now,
         Algorithm a = Algorithm::fixed_window) {
  std::array<Check, 1> c{check(key, count, kMin, a)};
  return store.decide(c, now);
}

TEST(MemoryStore, SingleCheckCountsAndReports) {
  MemoryStore store(1000);
  for (int i = 0; i < 3; ++i) {
    std::array<Check, 1> c{check("k", 3)};
    EXPECT_TRUE(store.decide(c, kT0));
    EXPECT_TRUE(c[0].outcome.allowed);
    EXPECT_EQ(c[0].outcome.remaining, static_cast<std::uint64_t>(2 - i));
  }
  std::array<Check, 1> c{check("k", 3)};
  EXPECT_FALSE(store.decide(c, kT0 + kSec));
  EXPECT_EQ(c[0].outcome.retry_after, kMin - kSec);
  EXPECT_EQ(store.keys(), 1u);
  EXPECT_EQ(store.evictions(), 0u);
}

// "200/day; 50/hour" style stacking: a request refused by one limit takes nothing from the
// others, and their outcome reports the quota still left.
TEST(MemoryStore, CommitsAllOrNothing) {
  MemoryStore store(1000);
  auto both = [&](Nanos now, std::array<Check, 3>& c) {
    c = {check("wide", 10), check("narrow", 2), check("mid", 5)};
    return store.decide(c, now);
  };
  std::array<Check, 3> c;
  EXPECT_TRUE(both(kT0, c));
  EXPECT_TRUE(both(kT0, c));
  EXPECT_EQ(c[0].outcome.remaining, 8u);
  EXPECT_EQ(c[1].outcome.remaining, 0u);
  EXPECT_EQ(c[2].outcome.remaining, 3u);
  for (int i = 0; i < 20; ++i) {
    EXPECT_FALSE(both(kT0 + i, c));
    EXPECT_TRUE(c[0].outcome.allowed);
    EXPECT_FALSE(c[1].outcome.allowed);
    EXPECT_TRUE(c[2].outcome.allowed);
    // Not consumed: what is left now, not what would have been left.
    EXPECT_EQ(c[0].outcome.remaining, 8u);
    EXPECT_EQ(c[2].outcome.remaining, 3u);
  }
  // "mid" still has exactly 3, "wide" exactly 8.
  int mid = 0;
  int wide = 0;
  for (int i = 0; i < 10; ++i) {
    mid += hit(store, "mid", 5, kT0 + kSec) ? 1 : 0;
    wide += hit(store, "wide", 10, kT0 + kSec) ? 1 : 0;
  }
  EXPECT_EQ(mid, 3);
  EXPECT_EQ(wide, 8);
}

TEST(MemoryStore, CapIsTheMaxKeysAtLeastOneRequestsChecks) {
  EXPECT_EQ(MemoryStore(100).capacity(), 100u);
  EXPECT_EQ(MemoryStore(100'000).capacity(), 100'000u);
  EXPECT_EQ(MemoryStore(1).capacity(), kMaxChecks);
  EXPECT_EQ(MemoryStore(0).capacity(), kMaxChecks);
}

// A key that is still in the table keeps its count: with 1/minute, a second request is refused
// while the key is tracked and admitted once it was evicted.
TEST(MemoryStore, EvictsLeastRecentlyUsed) {
  MemoryStore store(100);
  auto key = [](int i) { return cat("k", std::to_string(i)); };
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(hit(store, key(i), 1, kT0));
  }
  EXPECT_EQ(store.keys(), 100u);
  EXPECT_EQ(store.evictions(), 0u);
  // Touch k0 (a refused request counts as use), then a new key evicts k1, the oldest.
  EXPECT_FALSE(hit(store, key(0), 1, kT0));
  EXPECT_TRUE(hit(store, key(100), 1, kT0));
  EXPECT_EQ(store.keys(), 100u);
  EXPECT_EQ(store.evictions(), 1u);
  EXPECT_FALSE(hit(store, key(0), 1, kT0));  // kept
  EXPECT_FALSE(hit(store, key(2), 1, kT0));  // kept
  // k1 is fresh again; bringing it back evicts k3, the oldest now.
  EXPECT_TRUE(hit(store, key(1), 1, kT0));
  EXPECT_EQ(store.evictions(), 2u);
  EXPECT_FALSE(hit(store, key(4), 1, kT0));
  EXPECT_TRUE(hit(store, key(3), 1, kT0));  // evicted: fresh
  EXPECT_EQ(store.evictions(), 3u);
  EXPECT_EQ(store.keys(), 100u);
  EXPECT_LE(store.memory_bytes(), MemoryStore::memory_cap(100));
}

TEST(MemoryStore, KeysNeverExceedTheCap) {
  for (std::size_t max_keys :
       {std::size_t{64}, std::size_t{1000}, std::size_t{65'536 + 17}, std::size_t{100'000}}) {
    SCOPED_TRACE(max_keys);
    MemoryStore store(max_keys);
    const std::size_t n = max_keys * 3 / 2;
    for (std::uint32_t i = 0; i < n; ++i) {
      char key[5] = {'s'};
      std::memcpy(key + 1, &i, 4);
      hit(store, std::string_view(key, 5), 1, kT0);
    }
    EXPECT_LE(store.keys(), max_keys);
    EXPECT_GE(store.keys(), max_keys * 9 / 10);  // the shards fill evenly
    EXPECT_EQ(store.evictions(), n - store.keys());
    EXPECT_LE(store.memory_bytes(), MemoryStore::memory_cap(max_keys));
  }
}

// Several checks of one request never evict each other, even in the smallest table.
TEST(MemoryStore, OneRequestsChecksNeverEvictEachOther) {
  MemoryStore store(1);
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < kMaxChecks; ++i) {
    keys.push_back(cat("key-", std::to_string(i)));
  }
  for (int round = 0; round < 2; ++round) {
    std::vector<Check> checks;
    for (const auto& k : keys) {
      checks.push_back(check(k, 2));
    }
    EXPECT_TRUE(store.decide(checks, kT0));
    for (const auto& c : checks) {
      EXPECT_EQ(c.outcome.remaining, round == 0 ? 1u : 0u);
    }
  }
  std::vector<Check> checks;
  for (const auto& k : keys) {
    checks.push_back(check(k, 2));
  }
  EXPECT_FALSE(store.decide(checks, kT0));
  EXPECT_EQ(store.keys(), kMaxChecks);
}

TEST(MemoryStore, LongKeysAreHashedAndDistinct) {
  MemoryStore store(1000);
  std::string a(500, 'x');
  std::string b = a;
  b.back() = 'y';
  EXPECT_TRUE(hit(store, a, 1, kT0));
  EXPECT_TRUE(hit(store, b, 1, kT0));  // differs only in the last byte: its own bucket
  EXPECT_FALSE(hit(store, a, 1, kT0));
  EXPECT_FALSE(hit(store, b, 1, kT0));

  // 39 bytes are stored as they are, 40 as a digest; either way distinct and remembered.
  std::string k39(39, 'k');
  std::string k40(40, 'k');
  EXPECT_TRUE(hit(store, k39, 1, kT0));
  EXPECT_TRUE(hit(store, k40, 1, kT0));
  EXPECT_FALSE(hit(store, k39, 1, kT0));
  EXPECT_FALSE(hit(store, k40, 1, kT0));

  // A short key that looks like a stored digest cannot take a long key's bucket.
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(a.data()), a.size(), digest);
  std::string lookalike =
      cat("\xff", std::string_view(reinterpret_cast<char*>(digest), sizeof digest));
  EXPECT_TRUE(hit(store, lookalike, 1, kT0));
  EXPECT_FALSE(hit(store, lookalike, 1, kT0));
  EXPECT_EQ(store.keys(), 5u);
}

TEST(MemoryStore, MemoryDoesNotGrowWithKeyLength) {
  MemoryStore short_keys(10'000);
  MemoryStore long_keys(10'000);
  for (int i = 0; i < 2000; ++i) {
    std::string s = std::to_string(i);
    std::string l = cat(std::string(10'000, 'a'), s);
    hit(short_keys, s, 5, kT0);
    hit(long_keys, l, 5, kT0);
  }
  EXPECT_EQ(short_keys.keys(), 2000u);
  EXPECT_EQ(long_keys.keys(), 2000u);
  EXPECT_EQ(long_keys.memory_bytes(), short_keys.memory_bytes());
  EXPECT_LE(long_keys.memory_bytes(), MemoryStore::memory_cap(2000));
}

// The attack the cap exists for: 1,000,000 distinct addresses, one request each, while 10 real
// clients keep coming back. Their counts stay exact (LRU keeps them) and memory stays bounded.
void spray(std::size_t max_keys, std::uint32_t spray_keys) {
  SCOPED_TRACE(max_keys);
#if !defined(GATEHOUSE_TEST_ASAN)
  const auto before = mallinfo2();
#endif
  {
    MemoryStore store(max_keys);
    constexpr int kClients = 10;
    std::array<std::vector<bool>, kClients> answers;
    Nanos now = kT0;
    for (std::uint32_t i = 0; i < spray_keys; ++i) {
      char key[5] = {'s'};
      std::memcpy(key + 1, &i, 4);
      now += 1000;  // 1 ms per 1000 requests: the whole spray fits in a second
      ASSERT_TRUE(hit(store, std::string_view(key, 5), 10, now, Algorithm::sliding_window));
      if (i % 1000 == 999) {
        int c = static_cast<int>(i / 1000 % kClients);
        std::string client = cat("client-", std::to_string(c));
        answers[c].push_back(hit(store, client, 10, now, Algorithm::sliding_window));
      }
    }
    for (int c = 0; c < kClients; ++c) {
      SCOPED_TRACE(c);
      ASSERT_GE(answers[c].size(), 11u);
      for (std::size_t r = 0; r < answers[c].size(); ++r) {
        // 10/minute: the first 10 admitted, the 11th and every later one refused.
        EXPECT_EQ(answers[c][r], r < 10) << "request " << r + 1;
      }
    }
    const std::size_t distinct = spray_keys + kClients;
    EXPECT_LE(store.keys(), max_keys);
    // Each of the 64 shards caps its own share, so a random spray fills the table to within a
    // few per cent of max_keys, never beyond.
    EXPECT_GE(store.keys(), std::min(distinct, max_keys) * 99 / 100);
    EXPECT_EQ(store.evictions(), distinct - store.keys());
    EXPECT_LE(store.memory_bytes(), MemoryStore::memory_cap(max_keys));
#if !defined(GATEHOUSE_TEST_ASAN)
    const auto after = mallinfo2();
    const std::size_t grown = (after.uordblks + after.hblkhd) - (before.uordblks + before.hblkhd);
    EXPECT_LE(grown, MemoryStore::memory_cap(max_keys) + 256 * 1024)
        << "memory_bytes " << store.memory_bytes();
#endif
  }
}

TEST(MemoryStore, MillionKeySprayWithHundredThousandKeys) {
  spray(100'000, 1'000'000);
}

TEST(MemoryStore, MillionKeySprayWithDefaultCap) {
  // The default max_keys: about the whole spray fits, memory is still bounded.
  spray(1'000'000, 1'000'000);
}

// Two threads deciding on overlapping keys: exactly the quota is admitted in total, and stacked
// checks spanning shards (locked in one global order) neither deadlock nor lose updates.
TEST(MemoryStore, ConcurrentDecisionsAreExact) {
  MemoryStore store(100'000);  // many shards
  constexpr int kPerThread = 20'000;
  std::atomic<int> single{0};
  std::atomic<int> stacked{0};
  std::array<std::atomic<int>, 100> per_key{};
  auto work = [&] {
    for (int i = 0; i < kPerThread; ++i) {
      if (hit(store, "one-key", 1000, kT0)) {
        single.fetch_add(1);
      }
      std::string k = cat("k", std::to_string(i % 100));
      std::array<Check, 2> c{check("global", 5000), check(k, 60)};
      if (store.decide(c, kT0)) {
        stacked.fetch_add(1);
        per_key[i % 100].fetch_add(1);
      }
    }
  };
  std::thread t1(work);
  std::thread t2(work);
  t1.join();
  t2.join();
  EXPECT_EQ(single.load(), 1000);
  // 100 keys x 60 would allow 6000: the global 5000 binds, and is reached exactly.
  EXPECT_EQ(stacked.load(), 5000);
  for (auto& n : per_key) {
    EXPECT_LE(n.load(), 60);
  }
  EXPECT_FALSE(hit(store, "global", 5000, kT0));
}

}  // namespace
}  // namespace gatehouse::ratelimit
