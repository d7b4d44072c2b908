#pragma once
// Content-Security-Policy sources for a page's own inline blocks: 'sha256-...' of each
// <script>/<style> element's text, so a page compiled into the binary can run its inline code
// under a policy that allows nothing else (no 'unsafe-inline', no nonce to generate per reply).
#include <string>
#include <string_view>

namespace gatehouse::http {

// "'sha256-B64' 'sha256-B64'" for every <tag>...</tag> (tag without attributes) in `html`;
// empty when there is none.
std::string inline_hash_sources(std::string_view html, std::string_view tag);

// The base64 (RFC 4648, padded) of SHA-256 of `text`.
std::string sha256_base64(std::string_view text);

}  // namespace gatehouse::http
