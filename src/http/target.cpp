#include "http/target.hpp"

namespace gatehouse::http {

bool percent_decode(std::string_view in, std::string& out, bool plus_is_space) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (plus_is_space && in[i] == '+') {
      out += ' ';
    } else if (in[i] == '%') {
      if (i + 2 >= in.size()) {
        return false;
      }
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) {
        return false;
      }
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += in[i];
    }
  }
  return true;
}

std::optional<std::string> query_param(std::string_view target, std::string_view name) {
  auto q = target.find('?');
  if (q == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    auto pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) != name) {
      continue;
    }
    std::string_view raw = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    std::string out;
    if (!percent_decode(raw, out, true)) {
      return std::nullopt;
    }
    return out;
  }
  return std::nullopt;
}

bool is_host_name(std::string_view host) {
  for (char c : host) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '-' || c == '_')) {
      return false;
    }
  }
  return true;
}

bool is_valid_host(std::string_view host) {
  std::size_t i = 0;
  if (!host.empty() && host[0] == '[') {
    auto close = host.find(']');
    if (close == std::string_view::npos || close < 3) {
      return false;
    }
    for (char ch : host.substr(1, close - 1)) {
      bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') ||
                ch == ':' || ch == '.';
      if (!ok) {
        return false;
      }
    }
    i = close + 1;
  } else {
    for (; i < host.size() && host[i] != ':'; ++i) {
      char ch = host[i];
      bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '%' || ch == '!' ||
                ch == '$' || ch == '&' || ch == '\'' || ch == '(' || ch == ')' || ch == '*' ||
                ch == '+' || ch == ';' || ch == '=';
      if (!ok) {
        return false;
      }
    }
  }
  if (i == host.size()) {
    return true;
  }
  if (host[i] != ':' || i + 1 == host.size() || host.size() - i - 1 > 5) {
    return false;
  }
  for (char ch : host.substr(i + 1)) {
    if (ch < '0' || ch > '9') {
      return false;
    }
  }
  return true;
}

}  // namespace gatehouse::http
