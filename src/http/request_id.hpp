#pragma once
// Request identity: X-Request-ID validation/generation and W3C traceparent propagation.
#include <cstdint>
#include <string>
#include <string_view>

namespace gatehouse::http {

inline constexpr std::size_t kMaxRequestIdLength = 128;

// True when `id` is 1..128 characters from [A-Za-z0-9._:-]; anything else is replaced, so
// log lines and upstream headers never carry attacker-chosen separators or control bytes.
bool is_valid_request_id(std::string_view id);

// Fast per-thread generator (xoshiro256**, seeded from std::random_device): ids are unique, not
// secret, so a CSPRNG is not needed on the hot path.
class IdGenerator {
 public:
  IdGenerator();
  std::string request_id();  // 32 lowercase hex characters
  std::string span_id();     // 16 lowercase hex characters
  std::uint64_t next();

 private:
  std::uint64_t s_[4];
};

IdGenerator& thread_id_generator();

// Returns the traceparent to send upstream: a valid incoming one keeps its trace id and flags
// with a new parent id; otherwise a new trace (the request id doubles as trace id when it is
// 32 hex characters, so logs and traces join up).
std::string next_traceparent(std::string_view incoming, std::string_view request_id,
                             IdGenerator& gen);
bool is_valid_traceparent(std::string_view value);

}  // namespace gatehouse::http
