#include "filters/cache_bus/message.hpp"

#include <random>

#include "http/canonical_path.hpp"

namespace gatehouse::filters::cache_bus {
namespace {

bool is_lower_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

}  // namespace

std::string new_instance_id() {
  static constexpr char kHex[] = "0123456789abcdef";
  std::random_device rd;
  std::uint64_t v = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  std::string out(kInstanceIdSize, '0');
  for (std::size_t i = 0; i < kInstanceIdSize; ++i) {
    out[i] = kHex[(v >> (4 * i)) & 0xf];
  }
  return out;
}

std::string encode(std::string_view instance, std::string_view prefix) {
  std::string out;
  out.reserve(kMagic.size() + instance.size() + prefix.size() + 2);
  out += kMagic;
  out += ' ';
  out += instance;
  out += ' ';
  out += prefix;
  return out;
}

std::optional<Message> decode(std::string_view payload) {
  if (payload.size() > kMaxMessage || !payload.starts_with(kMagic) ||
      payload.size() < kMagic.size() + kInstanceIdSize + 3 || payload[kMagic.size()] != ' ') {
    return std::nullopt;
  }
  auto rest = payload.substr(kMagic.size() + 1);
  auto instance = rest.substr(0, kInstanceIdSize);
  for (char c : instance) {
    if (!is_lower_hex(c)) {
      return std::nullopt;
    }
  }
  if (rest[kInstanceIdSize] != ' ') {
    return std::nullopt;
  }
  auto prefix = rest.substr(kInstanceIdSize + 1);
  if (!valid_prefix(prefix)) {
    return std::nullopt;
  }
  return Message{instance, prefix};
}

bool valid_prefix(std::string_view prefix) {
  if (prefix.empty() || prefix.front() != '/' ||
      prefix.size() > config::Route::kMaxInvalidatePrefix) {
    return false;
  }
  // Blanks, '?' and '#' are never part of a canonical path; canonical_path would escape them.
  auto canonical = http::canonical_path(prefix, false);
  return canonical.reason.empty() && !canonical.changed;
}

AdminPrefix admin_prefix(std::string_view decoded, bool merge_slashes) {
  AdminPrefix out;
  if (decoded.empty() || decoded.front() != '/') {
    out.error = "The prefix must start with '/' (prefix=/ purges everything).";
    return out;
  }
  if (decoded.find_first_of("?#") != std::string_view::npos) {
    out.error = "The prefix is a path: no '?' or '#'.";
    return out;
  }
  auto canonical = http::canonical_path(decoded, merge_slashes);
  if (!canonical.reason.empty()) {
    out.error = "Invalid path: " + std::string(canonical.reason) + ".";
    return out;
  }
  out.prefix = std::string(canonical.view(decoded));
  if (out.prefix.size() > config::Route::kMaxInvalidatePrefix) {
    out.error = "The prefix is longer than " + std::to_string(config::Route::kMaxInvalidatePrefix) +
                " characters.";
    out.prefix.clear();
  }
  return out;
}

}  // namespace gatehouse::filters::cache_bus
