#pragma once
// A Redis command's arguments, packed in one buffer (one allocation per call, reused): the client
// writes them as RESP itself, without hiredis's per-argument formatting.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace gatehouse::redis {

struct Command {
  std::string arena;
  std::vector<std::size_t> ends;  // argument i is arena[ends[i-1], ends[i])
  void clear() {
    arena.clear();
    ends.clear();
  }
  void add(std::string_view arg) {
    arena += arg;
    ends.push_back(arena.size());
  }
  std::size_t size() const { return ends.size(); }
  std::string_view arg(std::size_t i) const {
    std::size_t begin = i == 0 ? 0 : ends[i - 1];
    return std::string_view(arena).substr(begin, ends[i] - begin);
  }
};

}  // namespace gatehouse::redis
