#pragma once
// Redis URLs (`rate_limit.store`): redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]. Pure parsing, so the
// config loader can point at the exact problem; the password never appears in messages
// (redacted()).
#include <cstdint>
#include <string>
#include <string_view>

namespace gatehouse::redis {

struct Url {
  std::string host = "127.0.0.1";  // a literal address or a name (resolved once at start-up)
  std::uint16_t port = 6379;
  std::string username;  // ACL user (AUTH user pass); empty: AUTH pass or no AUTH
  std::string password;  // empty: no AUTH
  unsigned db = 0;       // SELECT; must be 0 with Redis Cluster
  // "redis://:***@127.0.0.1:6379/0": for logs, health and errors.
  std::string redacted() const;
  bool operator==(const Url&) const = default;
};

// Parses `text`; on failure returns false and sets `error` ("expected redis://...", "invalid port
// ...", ...). Percent-escapes in the user and password are decoded.
bool parse_url(std::string_view text, Url& out, std::string& error);

}  // namespace gatehouse::redis
