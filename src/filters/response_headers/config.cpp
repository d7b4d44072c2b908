#include "filters/response_headers/config.hpp"

#include "config/config.hpp"
#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"
#include "http/json.hpp"

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
  out.append("X-Process-Time: ");
  http::append_thousandths(out, ms);
  out.append("\r\n");
}

}  // namespace gatehouse::filters::response_headers
