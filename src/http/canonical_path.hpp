#pragma once
// The one form of a request path every rule judges (router, access rules, rate-limit exemptions,
// health paths, logs) and, by default, the one the upstream serves. Canonicalisation maps each
// decoded byte to one fixed spelling, so two targets an application decodes to the same path get
// the same canonical path, and prefix matching on canonical strings equals prefix matching on
// decoded ones. The rules are in docs/security.md ("Client identity: the canonical path").
#include <string>
#include <string_view>

namespace gatehouse::http {

struct CanonicalPath {
  // Why the path is refused (reply 400), or empty.
  std::string_view reason;
  // The canonical path differs from the raw one; only then is `path` set (the common, already
  // canonical path costs no copy).
  bool changed = false;
  std::string path;

  // The canonical path: `path` when changed, else the raw path it was computed from.
  std::string_view view(std::string_view raw_path) const {
    return changed ? std::string_view(path) : raw_path;
  }
};

// `raw_path`: an origin-form path without the query. Escapes of bytes allowed literally in a path
// segment (RFC 3986 pchar) are decoded, other escapes get upper-case hex, bytes not allowed
// literally are escaped, repeated slashes are merged when `merge_slashes`. Refused: a path not
// starting with '/', an encoded slash, a backslash (raw or encoded), NUL, a bad or truncated
// escape, a raw '#', and dot segments ("." or "..", raw or encoded, also before a ';').
CanonicalPath canonical_path(std::string_view raw_path, bool merge_slashes);

// The same for a whole request target ("/a?x=1"): a fragment anywhere is refused, the path (up
// to the first '?') is canonicalised and the query is left alone.
CanonicalPath canonical_target_path(std::string_view target, bool merge_slashes);

// The path part of a request target: up to the first '?'.
inline std::string_view target_path(std::string_view target) {
  return target.substr(0, target.find('?'));
}

}  // namespace gatehouse::http
