// Concurrent-request slots per key: taken up to the cap, freed on release, entries gone when idle.
#include "ratelimit/in_flight.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace gatehouse::ratelimit {
namespace {

TEST(InFlight, CapsConcurrentSlotsPerKey) {
  InFlight f;
  EXPECT_TRUE(f.acquire("a", 2));
  EXPECT_TRUE(f.acquire("a", 2));
  EXPECT_FALSE(f.acquire("a", 2));  // the third at once
  EXPECT_TRUE(f.acquire("b", 2));   // another key has its own slots
  EXPECT_EQ(f.keys(), 2u);
  f.release("a");
  EXPECT_TRUE(f.acquire("a", 2));  // release frees one slot
  EXPECT_FALSE(f.acquire("a", 2));
}

TEST(InFlight, EntriesExistOnlyWhileInFlight) {
  InFlight f;
  EXPECT_EQ(f.keys(), 0u);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(f.acquire(std::string("key").append(std::to_string(i)), 1));
  }
  EXPECT_EQ(f.keys(), 100u);
  for (int i = 0; i < 100; ++i) {
    f.release(std::string("key").append(std::to_string(i)));
  }
  EXPECT_EQ(f.keys(), 0u);
}

TEST(InFlight, ReleaseOfUnknownKeyIsHarmless) {
  InFlight f;
  f.release("nobody");
  EXPECT_TRUE(f.acquire("a", 1));
  f.release("a");
  f.release("a");  // one too many: no underflow
  EXPECT_EQ(f.keys(), 0u);
  EXPECT_TRUE(f.acquire("a", 1));
  EXPECT_FALSE(f.acquire("a", 1));
}

TEST(InFlight, ZeroMeansNone) {
  InFlight f;
  EXPECT_FALSE(f.acquire("a", 0));
  EXPECT_EQ(f.keys(), 0u);
}

TEST(InFlight, NeverMoreThanTheCapAcrossThreads) {
  InFlight f;
  constexpr std::uint32_t kMax = 3;
  std::atomic<int> holding{0};
  std::atomic<int> peak{0};
  auto work = [&] {
    for (int i = 0; i < 20'000; ++i) {
      if (f.acquire("shared", kMax)) {
        int now = holding.fetch_add(1) + 1;
        int seen = peak.load();
        while (now > seen && !peak.compare_exchange_weak(seen, now)) {
        }
        holding.fetch_sub(1);
        f.release("shared");
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back(work);
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_LE(peak.load(), static_cast<int>(kMax));
  EXPECT_GE(peak.load(), 1);
  EXPECT_EQ(f.keys(), 0u);
}

}  // namespace
}  // namespace gatehouse::ratelimit
