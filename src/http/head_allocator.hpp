#pragma once
// The allocator of the request and response head containers (Beast's basic_fields): a small
// per-thread cache of freed blocks in four size classes. A proxied request allocates and frees
// about eight such blocks (one per header field, plus the start line); glibc's malloc/free cost
// ~100 instructions a pair there, the cache ~20. A head is built and destroyed on its worker's
// thread; a block freed on another thread simply joins that thread's cache.
#include <cstddef>
#include <new>

namespace gatehouse::http {

namespace head_pool {
// Blocks of up to kMaxPooled bytes come from the cache; larger ones from operator new.
inline constexpr std::size_t kMaxPooled = 1024;
inline constexpr std::size_t kKeepPerClass = 64;

void* allocate(std::size_t bytes);
void deallocate(void* p, std::size_t bytes) noexcept;
// Blocks held by this thread's cache (for tests).
std::size_t cached_blocks();
}  // namespace head_pool

template <class T>
struct HeadAllocator {
  static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  using value_type = T;

  HeadAllocator() = default;
  template <class U>
  HeadAllocator(const HeadAllocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)

  T* allocate(std::size_t n) { return static_cast<T*>(head_pool::allocate(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { head_pool::deallocate(p, n * sizeof(T)); }

  template <class U>
  bool operator==(const HeadAllocator<U>&) const noexcept {
    return true;
  }
};

}  // namespace gatehouse::http
