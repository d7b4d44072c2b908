#pragma once
// What logs may show of a request: secrets in the query string are replaced.
#include <string>
#include <string_view>

namespace gatehouse::http {

// Request target for logs: query values of token-like parameters replaced by "REDACTED".
std::string redact_target(std::string_view target);

}  // namespace gatehouse::http
