#include "config/interpolate.hpp"

#include <cstdlib>

#include "config/config.hpp"

namespace gatehouse::config::detail {
namespace {

bool is_name_start(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

bool is_name_char(char c) {
  return is_name_start(c) || (c >= '0' && c <= '9');
}

// A quote opens a quoted scalar only where a scalar can start: at the start of a line, or after
// ':', '-', '?', ',', '[' or '{' and blanks.
bool can_open_quote(std::string_view line_so_far) {
  auto last = line_so_far.find_last_not_of(" \t");
  if (last == std::string_view::npos) {
    return true;
  }
  char c = line_so_far[last];
  return c == ':' || c == '-' || c == '?' || c == ',' || c == '[' || c == '{';
}

class Interpolator {
 public:
  Interpolator(std::string_view text, const std::string& source, const EnvLookup& env)
      : text_(text), source_(source), env_(env) {}

  std::string run() {
    out_.reserve(text_.size());
    while (pos_ < text_.size()) {
      step();
    }
    return std::move(out_);
  }

 private:
  void step() {
    char c = text_[pos_];
    if (c == '\n') {
      ++line_;
      line_start_ = pos_ + 1;
      in_comment_ = false;
      copy(1);
      return;
    }
    if (in_comment_) {
      copy(1);
      return;
    }
    if (at("$${")) {
      out_ += "${";
      pos_ += 3;
      return;
    }
    if (at("${")) {
      substitute();
      return;
    }
    track_quotes_and_comments(c);
  }

  void track_quotes_and_comments(char c) {
    std::string_view line_so_far = text_.substr(line_start_, pos_ - line_start_);
    if (in_double_) {
      if (c == '\\' && pos_ + 1 < text_.size() && text_[pos_ + 1] != '\n') {
        copy(2);
        return;
      }
      in_double_ = c != '"';
    } else if (in_single_) {
      if (at("''")) {
        copy(2);
        return;
      }
      in_single_ = c != '\'';
    } else if (c == '"' || c == '\'') {
      if (can_open_quote(line_so_far)) {
        (c == '"' ? in_double_ : in_single_) = true;
      }
    } else if (c == '#') {
      in_comment_ = line_so_far.empty() || line_so_far.back() == ' ' || line_so_far.back() == '\t';
    }
    copy(1);
  }

  void substitute() {
    std::size_t column = pos_ - line_start_ + 1;
    std::size_t close = text_.find_first_of("}\n", pos_ + 2);
    if (close == std::string_view::npos || text_[close] != '}') {
      auto rest = text_.substr(pos_, close == std::string_view::npos ? close : close - pos_);
      fail(column, std::string(rest), "unterminated variable reference (missing '}')");
    }
    std::string_view reference = text_.substr(pos_, close + 1 - pos_);
    std::string_view body = text_.substr(pos_ + 2, close - pos_ - 2);
    std::size_t name_end = 0;
    while (name_end < body.size() && is_name_char(body[name_end])) {
      ++name_end;
    }
    std::string name(body.substr(0, name_end));
    std::string_view after = body.substr(name_end);
    bool has_default = after.starts_with(":-");
    if (name.empty() || !is_name_start(name[0]) || (!after.empty() && !has_default)) {
      fail(column, std::string(reference),
           "invalid variable reference (expected ${NAME} or ${NAME:-default}, NAME made of "
           "letters, digits and '_')");
    }
    auto value = env_(name);
    if (has_default && (!value || value->empty())) {
      value = std::string(after.substr(2));
    }
    if (!value) {
      fail(column, "${" + name + "}",
           "environment variable " + name + " is not set (use ${" + name +
               ":-default} to give a default)");
    }
    if (value->find_first_of("\r\n") != std::string::npos) {
      fail(column, "${" + name + "}", "environment variable " + name + " contains a line break");
    }
    out_ += *value;
    pos_ = close + 1;
  }

  [[noreturn]] void fail(std::size_t column, const std::string& what, const std::string& message) {
    throw ConfigError(source_ + ":" + std::to_string(line_) + ":" + std::to_string(column) + ": " +
                      what + ": " + message);
  }

  bool at(std::string_view s) const { return text_.substr(pos_).starts_with(s); }

  void copy(std::size_t n) {
    out_.append(text_.substr(pos_, n));
    pos_ += n;
  }

  std::string_view text_;
  const std::string& source_;
  const EnvLookup& env_;
  std::string out_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
  std::size_t line_start_ = 0;
  bool in_comment_ = false;
  bool in_single_ = false;
  bool in_double_ = false;
};

}  // namespace

std::optional<std::string> process_env(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) {
    return std::nullopt;
  }
  return std::string(value);
}

std::string interpolate(std::string_view text, const std::string& source, const EnvLookup& env) {
  return Interpolator(text, source, env).run();
}

}  // namespace gatehouse::config::detail
