#pragma once
// JSON string literals for the bodies and log lines gatehouse writes itself (error replies, access
// log, admin answers), without building a JSON tree on the request path.
#include <string>
#include <string_view>

namespace gatehouse::http {

// Appends `s` as a JSON string literal (quotes included) to `out`: quotes, backslashes and
// control bytes escaped; valid UTF-8 kept, any other byte written as \ufffd, so the result is
// always valid JSON.
void append_json_string(std::string& out, std::string_view s);

}  // namespace gatehouse::http
