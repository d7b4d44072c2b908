#pragma once
// What logs may show of a request: secrets in the query string are replaced; and of an upstream
// error page (errors.intercept), secrets in free text.
#include <string>
#include <string_view>

namespace gatehouse::http {

// Request target for logs: query values of token-like parameters replaced by "REDACTED".
std::string redact_target(std::string_view target);

// Free text (a traceback, an HTML error page) for the error log: the value after a secret-looking
// name and '=' or ':' (password=..., "api_key": "...", Authorization: Bearer ...), the token after
// "Bearer ", and the password of a URL's user info (postgres://user:pw@host) become "REDACTED".
// Best effort: it cannot know every secret, so logs stay access-controlled.
std::string redact_text(std::string_view text);

// Request headers reports (Sentry) must never carry: Authorization, Proxy-Authorization, Cookie,
// and any name with auth, key, token, secret, password, session, signature or credential in it.
bool is_secret_header(std::string_view name);

}  // namespace gatehouse::http
