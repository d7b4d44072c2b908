#include "upstream/target_slots.hpp"

#include <algorithm>

namespace gatehouse::upstream {

SlotChanges diff_slots(std::span<const std::string> slots, std::span<const std::string> resolved) {
  SlotChanges out;
  auto is_resolved = [&](const std::string& a) {
    return std::find(resolved.begin(), resolved.end(), a) != resolved.end();
  };
  // Free slots in the order they are taken: those already free, then those freed now (a worker
  // may still be connecting to a just-removed address for a moment; its slot is taken last).
  std::vector<std::size_t> free;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].empty()) {
      free.push_back(i);
    } else if (!is_resolved(slots[i])) {
      out.removed.push_back(i);
    }
  }
  free.insert(free.end(), out.removed.begin(), out.removed.end());
  std::size_t next_free = 0;
  for (std::size_t r = 0; r < resolved.size(); ++r) {
    const auto& a = resolved[r];
    if (a.empty() || std::find(resolved.begin(), resolved.begin() + static_cast<long>(r), a) !=
                         resolved.begin() + static_cast<long>(r)) {
      continue;  // a duplicate (one address per socket type, or listed twice)
    }
    if (std::find(slots.begin(), slots.end(), a) != slots.end()) {
      continue;  // still there: keeps its slot
    }
    if (next_free == free.size()) {
      out.overflow.push_back(a);
      continue;
    }
    out.added.emplace_back(free[next_free++], a);
  }
  return out;
}

}  // namespace gatehouse::upstream
