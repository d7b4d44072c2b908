#pragma once
// The invalidation bus's messages (issue 14): one purged prefix per Redis PUBLISH, tagged with the
// sending instance so that it can skip its own echo. Pure: encoded and decoded without sockets.
//
//   gh1 <instance: 16 lower-case hex digits> <canonical path prefix>
//
// A message is bounded (kMaxMessage bytes); one that does not decode, or whose prefix is not
// already canonical, is refused and counted, never applied.
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"

namespace gatehouse::filters::cache_bus {

inline constexpr std::string_view kMagic = "gh1";
inline constexpr std::size_t kInstanceIdSize = 16;
inline constexpr std::size_t kMaxMessage =
    kMagic.size() + 1 + kInstanceIdSize + 1 + config::Route::kMaxInvalidatePrefix;

// A random instance id (kInstanceIdSize hex digits), fresh at every start.
std::string new_instance_id();

std::string encode(std::string_view instance, std::string_view prefix);

struct Message {
  std::string_view instance;
  std::string_view prefix;
};
// Views into `payload`; nullopt when malformed or too long.
std::optional<Message> decode(std::string_view payload);

// A prefix as the bus carries it: starts with '/', at most kMaxInvalidatePrefix bytes, already
// canonical (http::canonical_path leaves it unchanged).
bool valid_prefix(std::string_view prefix);

// The prefix of `DELETE /admin/cache?prefix=...` (already percent-decoded) in canonical form, or
// the reason it is refused.
struct AdminPrefix {
  std::string prefix;
  std::string error;  // empty when valid
};
AdminPrefix admin_prefix(std::string_view decoded, bool merge_slashes);

}  // namespace gatehouse::filters::cache_bus
