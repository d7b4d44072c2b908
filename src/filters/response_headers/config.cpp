#include "filters/response_headers/config.hpp"

#include <array>

#include "config/config.hpp"
#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"

namespace gatehouse::filters::response_headers {

Settings read_settings(const config::detail::Value& v) {
  Settings out;
  config::detail::Map m(v, {"process_time"});
  if (auto x = m.find("process_time")) {
    out.process_time = config::detail::read_bool(*x);
  }
  return out;
}

void append_process_time(std::string& out, std::chrono::nanoseconds elapsed) {
  std::uint64_t ms = elapsed.count() <= 0
                         ? 0
                         : (static_cast<std::uint64_t>(elapsed.count()) + 500'000) / 1'000'000;
  // Digits from the right: "S.mmm" with at least one digit before the point.
  std::array<char, 32> buf;
  char* end = buf.data() + buf.size();
  char* p = end;
  for (int i = 0; i < 3; ++i) {
    *--p = static_cast<char>('0' + ms % 10);
    ms /= 10;
  }
  *--p = '.';
  do {
    *--p = static_cast<char>('0' + ms % 10);
    ms /= 10;
  } while (ms > 0);
  out.append("X-Process-Time: ");
  out.append(p, static_cast<std::size_t>(end - p));
  out.append("\r\n");
}

}  // namespace gatehouse::filters::response_headers
