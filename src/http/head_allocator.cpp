#include "http/head_allocator.hpp"

#include <array>

namespace gatehouse::http::head_pool {
namespace {

inline constexpr std::size_t kClasses = 4;  // 128, 256, 512, 1024 bytes

// Size class of a block of `bytes` (<= kMaxPooled).
std::size_t class_of(std::size_t bytes) {
  return bytes <= 128 ? 0 : bytes <= 256 ? 1 : bytes <= 512 ? 2 : 3;
}

std::size_t class_bytes(std::size_t c) {
  return std::size_t{128} << c;
}

struct FreeBlock {
  FreeBlock* next;
};

struct Cache {
  std::array<FreeBlock*, kClasses> head{};
  std::array<std::size_t, kClasses> count{};
  ~Cache();
};

// Trivially destructible, so it can be read while other thread_locals are destroyed: a head
// destroyed after the cache (thread exit) goes straight to operator delete.
thread_local bool cache_gone = false;
thread_local Cache cache;

Cache::~Cache() {
  for (std::size_t c = 0; c < kClasses; ++c) {
    while (head[c] != nullptr) {
      auto* b = head[c];
      head[c] = b->next;
      ::operator delete(b);
    }
  }
  cache_gone = true;
}

}  // namespace

void* allocate(std::size_t bytes) {
  if (bytes > kMaxPooled) {
    return ::operator new(bytes);
  }
  auto c = class_of(bytes);
  if (!cache_gone) {
    if (auto* b = cache.head[c]; b != nullptr) {
      cache.head[c] = b->next;
      --cache.count[c];
      return b;
    }
  }
  return ::operator new(class_bytes(c));
}

void deallocate(void* p, std::size_t bytes) noexcept {
  if (bytes > kMaxPooled) {
    ::operator delete(p);
    return;
  }
  auto c = class_of(bytes);
  if (cache_gone || cache.count[c] >= kKeepPerClass) {
    ::operator delete(p);
    return;
  }
  auto* b = static_cast<FreeBlock*>(p);
  b->next = cache.head[c];
  cache.head[c] = b;
  ++cache.count[c];
}

std::size_t cached_blocks() {
  if (cache_gone) {
    return 0;
  }
  std::size_t n = 0;
  for (auto k : cache.count) {
    n += k;
  }
  return n;
}

}  // namespace gatehouse::http::head_pool
