#include "observability/process_stats.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <string>

namespace gatehouse::observability {

std::optional<std::uint64_t> parse_statm_rss(std::string_view statm, std::uint64_t page_size) {
  // Second field: resident pages.
  auto first_end = statm.find(' ');
  if (first_end == std::string_view::npos) {
    return std::nullopt;
  }
  auto rest = statm.substr(first_end + 1);
  std::uint64_t pages = 0;
  auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), pages);
  if (ec != std::errc{} || ptr == rest.data() ||
      (ptr != rest.data() + rest.size() && *ptr != ' ' && *ptr != '\n')) {
    return std::nullopt;
  }
  return pages * page_size;
}

ProcessStats read_process_stats() {
  ProcessStats out;
  std::ifstream statm("/proc/self/statm");
  std::string text((std::istreambuf_iterator<char>(statm)), std::istreambuf_iterator<char>());
  long page = sysconf(_SC_PAGESIZE);
  out.rss_bytes = parse_statm_rss(text, page > 0 ? static_cast<std::uint64_t>(page) : 4096);
  if (DIR* d = opendir("/proc/self/fd")) {
    std::uint64_t n = 0;
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') {
        ++n;
      }
    }
    closedir(d);
    out.open_files = n > 0 ? n - 1 : 0;  // less the descriptor opendir itself holds
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    out.max_open_files = rl.rlim_cur;
  }
  return out;
}

}  // namespace gatehouse::observability
