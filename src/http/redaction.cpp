#include "http/redaction.hpp"

#include <algorithm>
#include <array>

#include "http/fields.hpp"

namespace gatehouse::http {
namespace {

bool icontains(std::string_view hay, std::string_view needle) {
  if (needle.size() > hay.size()) {
    return false;
  }
  for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    if (iequals(hay.substr(i, needle.size()), needle)) {
      return true;
    }
  }
  return false;
}

bool is_secret_param(std::string_view name) {
  static constexpr std::array<std::string_view, 10> kWords = {
      "token", "key",       "secret",  "password", "passwd",
      "auth",  "signature", "session", "jwt",      "code"};
  return std::any_of(kWords.begin(), kWords.end(),
                     [&](std::string_view w) { return icontains(name, w); });
}

}  // namespace

std::string redact_target(std::string_view target) {
  auto q = target.find('?');
  if (q == std::string_view::npos) {
    return std::string(target);
  }
  std::string out(target.substr(0, q + 1));
  std::string_view query = target.substr(q + 1);
  bool first = true;
  while (true) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    if (!first) {
      out += '&';
    }
    first = false;
    auto eq = pair.find('=');
    if (eq != std::string_view::npos && is_secret_param(pair.substr(0, eq))) {
      out.append(pair.substr(0, eq + 1));
      out += "REDACTED";
    } else {
      out.append(pair);
    }
    if (amp == std::string_view::npos) {
      break;
    }
    query.remove_prefix(amp + 1);
  }
  return out;
}

}  // namespace gatehouse::http
