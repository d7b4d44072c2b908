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

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

bool is_secret_name(std::string_view name) {
  static constexpr std::array<std::string_view, 14> kWords = {
      "token",   "secret",        "password", "passwd",  "pwd",        "apikey",      "api_key",
      "api-key", "authorization", "cookie",   "session", "credential", "private_key", "access_key"};
  return std::any_of(kWords.begin(), kWords.end(),
                     [&](std::string_view w) { return icontains(name, w); });
}

bool ends_value(char c, char quote) {
  if (quote != 0) {
    return c == quote || c == '\n';
  }
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '&' || c == ',' || c == ';' ||
         c == '"' || c == '\'' || c == '<' || c == '>' || c == '}' || c == ')';
}

// The end of the value starting at `i` (after an optional auth scheme word).
std::size_t skip_value(std::string_view text, std::size_t i, char quote) {
  while (i < text.size() && !ends_value(text[i], quote)) {
    ++i;
  }
  return i;
}

}  // namespace

std::string redact_text(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 32);
  std::size_t i = 0;
  auto redact_from = [&](std::size_t value_start, char quote) {
    // Keep an auth scheme ("Bearer ", "Basic ") and replace what follows it.
    std::size_t v = value_start;
    for (std::string_view scheme : {"Bearer ", "Basic ", "Token "}) {
      if (text.size() - v >= scheme.size() && iequals(text.substr(v, scheme.size()), scheme)) {
        v += scheme.size();
        break;
      }
    }
    std::size_t end = skip_value(text, v, quote);
    out.append(text.substr(i, v - i));
    if (end > v) {
      out += "REDACTED";
    }
    i = end;
  };
  while (i < text.size()) {
    char c = text[i];
    if (c == ':' && text.substr(i, 3) == "://") {
      // URL user info: scheme://user:password@host
      std::size_t start = i + 3;
      std::size_t j = start;
      while (j < text.size() && text[j] != '@' && text[j] != '/' && !ends_value(text[j], 0)) {
        ++j;
      }
      auto colon = text.substr(start, j - start).find(':');
      if (j < text.size() && text[j] == '@' && colon != std::string_view::npos) {
        out.append(text.substr(i, 3 + colon + 1));
        out += "REDACTED@";
        i = j + 1;
        continue;
      }
      out.append(text.substr(i, 3));
      i += 3;
      continue;
    }
    if (!is_word_char(c) || (i > 0 && is_word_char(text[i - 1]))) {
      out += c;
      ++i;
      continue;
    }
    std::size_t end = i;
    while (end < text.size() && is_word_char(text[end])) {
      ++end;
    }
    auto word = text.substr(i, end - i);
    if (iequals(word, "Bearer") && end < text.size() && text[end] == ' ') {
      redact_from(end + 1, 0);
      continue;
    }
    if (!is_secret_name(word)) {
      out.append(word);
      i = end;
      continue;
    }
    // NAME, an optional closing quote and blanks, then '=' or ':', blanks and an optional quote.
    std::size_t j = end;
    while (j < text.size() && (text[j] == '"' || text[j] == '\'' || text[j] == ' ')) {
      ++j;
    }
    if (j >= text.size() || (text[j] != '=' && text[j] != ':')) {
      out.append(word);
      i = end;
      continue;
    }
    ++j;
    while (j < text.size() && text[j] == ' ') {
      ++j;
    }
    char quote = 0;
    if (j < text.size() && (text[j] == '"' || text[j] == '\'')) {
      quote = text[j];
      ++j;
    }
    redact_from(j, quote);
  }
  return out;
}

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

bool is_secret_header(std::string_view name) {
  static constexpr std::array<std::string_view, 4> kMore = {"auth", "key", "signature", "csrf"};
  return is_secret_name(name) || std::any_of(kMore.begin(), kMore.end(), [&](std::string_view w) {
           return icontains(name, w);
         });
}

}  // namespace gatehouse::http
