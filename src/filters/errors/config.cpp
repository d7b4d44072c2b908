#include "filters/errors/config.hpp"

#include <algorithm>
#include <string>

#include "config/config.hpp"
#include "config/value_readers.hpp"
#include "config/yaml_reader.hpp"
#include "http/fields.hpp"

namespace gatehouse::filters::errors {

Settings default_settings(config::Environment environment) {
  Settings s;
  if (environment == config::Environment::development) {
    s.intercept.clear();
  }
  return s;
}

Settings read_settings(const config::detail::Value& v, config::Environment environment) {
  Settings out = default_settings(environment);
  config::detail::Map m(v, {"intercept", "log_body"});
  if (auto x = m.find("intercept")) {
    out.intercept.clear();
    if (!(x->node().IsScalar() && (x->text() == "off" || x->text() == "false"))) {
      for (const auto& item : x->items()) {
        auto status = static_cast<unsigned>(config::detail::read_integer(item, 400, 599));
        if (std::find(out.intercept.begin(), out.intercept.end(), status) != out.intercept.end()) {
          item.fail("duplicate status " + std::to_string(status));
        }
        out.intercept.push_back(status);
      }
    }
  }
  if (auto x = m.find("log_body")) {
    out.log_body = config::detail::read_size(*x, config::detail::Zero::allowed);
    if (out.log_body > kMaxReadBytes) {
      x->fail("must be at most 64KiB");
    }
  }
  return out;
}

bool is_json_content_type(std::string_view ct) {
  auto semi = ct.find(';');
  auto type = ct.substr(0, semi);
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) {
    type.remove_suffix(1);
  }
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) {
    type.remove_prefix(1);
  }
  auto slash = type.find('/');
  if (slash == std::string_view::npos) {
    return false;
  }
  auto sub = type.substr(slash + 1);
  return http::iequals(sub, "json") ||
         (sub.size() > 5 && http::iequals(sub.substr(sub.size() - 5), "+json"));
}

bool should_intercept(const Settings& s, unsigned status, bool head_request,
                      std::string_view content_type) {
  if (head_request || status == 204 || status == 304 || status < 400) {
    return false;
  }
  if (std::find(s.intercept.begin(), s.intercept.end(), status) == s.intercept.end()) {
    return false;
  }
  return !is_json_content_type(content_type);
}

}  // namespace gatehouse::filters::errors
