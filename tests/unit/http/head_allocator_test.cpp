#include "http/head_allocator.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace gatehouse::http {
namespace {

TEST(HeadAllocator, FreedBlockIsReusedForTheSameSizeClass) {
  HeadAllocator<char> a;
  char* p = a.allocate(100);
  std::memset(p, 'x', 100);  // the whole requested size is usable
  auto before = head_pool::cached_blocks();
  a.deallocate(p, 100);
  EXPECT_EQ(head_pool::cached_blocks(), before + 1);
  char* q = a.allocate(120);  // same class (<= 128 bytes)
  EXPECT_EQ(q, p);
  EXPECT_EQ(head_pool::cached_blocks(), before);
  a.deallocate(q, 120);
}

TEST(HeadAllocator, OtherClassesAndLargeBlocksAreNotMixedUp) {
  HeadAllocator<char> a;
  char* small = a.allocate(64);
  a.deallocate(small, 64);
  char* mid = a.allocate(300);  // 512-byte class: must not get the 128-byte block
  EXPECT_NE(mid, small);
  std::memset(mid, 'y', 300);
  auto before = head_pool::cached_blocks();
  char* large = a.allocate(head_pool::kMaxPooled + 1);  // not cached
  std::memset(large, 'z', head_pool::kMaxPooled + 1);
  a.deallocate(large, head_pool::kMaxPooled + 1);
  EXPECT_EQ(head_pool::cached_blocks(), before);
  a.deallocate(mid, 300);
}

TEST(HeadAllocator, CacheIsBounded) {
  HeadAllocator<char> a;
  std::vector<char*> blocks;
  for (std::size_t i = 0; i < 3 * head_pool::kKeepPerClass; ++i) {
    blocks.push_back(a.allocate(200));
  }
  for (char* p : blocks) {
    a.deallocate(p, 200);
  }
  EXPECT_LE(head_pool::cached_blocks(), 4 * head_pool::kKeepPerClass);
}

TEST(HeadAllocator, WorksAsAContainerAllocatorAndAcrossThreads) {
  using Alloc = HeadAllocator<std::pair<const std::string, std::string>>;
  std::map<std::string, std::string, std::less<>, Alloc> m;
  for (int i = 0; i < 200; ++i) {
    m.emplace("field-" + std::to_string(i), std::string(static_cast<std::size_t>(i), 'v'));
  }
  EXPECT_EQ(m.at("field-150").size(), 150u);
  // Blocks allocated here and freed on another thread join that thread's cache, which frees them
  // when the thread ends (ASan's leak check sees the difference).
  std::thread t([&m] { m.clear(); });
  t.join();
  EXPECT_TRUE(m.empty());
}

}  // namespace
}  // namespace gatehouse::http
