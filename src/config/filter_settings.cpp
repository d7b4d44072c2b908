#include "config/filter_settings.hpp"

#include <atomic>

namespace gatehouse::config::detail {

std::size_t next_filter_slot() {
  static std::atomic<std::size_t> next{0};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace gatehouse::config::detail
