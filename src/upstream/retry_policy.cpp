#include "upstream/retry_policy.hpp"

namespace gatehouse::upstream {

bool idempotent_method(std::string_view m) {
  return m == "GET" || m == "HEAD" || m == "OPTIONS" || m == "TRACE" || m == "PUT" || m == "DELETE";
}

RetryDecision RetryPolicy::decide(const RetryInput& in) const {
  if (in.tries >= settings_.max_tries) {
    return {};
  }
  // Only a reused connection that turned out closed: a fresh connection failing, or a timeout,
  // says the upstream itself is in trouble, and trying again would add load to it.
  if (!in.reused_connection || in.failure != TryFailure::closed) {
    return {};
  }
  if (in.body == RetryInput::Body::not_kept) {
    return {};
  }
  // The upstream may have run a request it received before dying: sending it again is safe only
  // when it never left, or when running it twice is harmless (RFC 9110 9.2.2) or deduplicated by
  // the app (Idempotency-Key).
  if (in.wrote_any && !in.idempotent && !in.idempotency_key) {
    return {};
  }
  return {true, true};
}

}  // namespace gatehouse::upstream
