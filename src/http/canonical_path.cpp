#include "http/canonical_path.hpp"

#include <array>
#include <cstdint>

namespace gatehouse::http {
namespace {

// What a byte is in a path, raw or decoded from an escape.
enum Class : std::uint8_t {
  kEncode,     // not allowed literally: escaped (raw), kept escaped (decoded)
  kLiteral,    // RFC 3986 pchar: unreserved, sub-delims, ':', '@'
  kSlash,      // the segment delimiter: kept raw, refused encoded
  kPercent,    // raw: starts an escape; decoded: stays %25
  kBackslash,  // refused raw and encoded
  kHash,       // raw: a fragment (refused); decoded: stays %23
  kNul,        // refused
};

constexpr std::array<std::uint8_t, 256> make_classes() {
  std::array<std::uint8_t, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) {
    t[c] = kLiteral;
  }
  for (int c = 'A'; c <= 'Z'; ++c) {
    t[c] = kLiteral;
  }
  for (int c = '0'; c <= '9'; ++c) {
    t[c] = kLiteral;
  }
  for (unsigned char c : std::string_view("-._~!$&'()*+,;=:@")) {
    t[c] = kLiteral;
  }
  t['/'] = kSlash;
  t['%'] = kPercent;
  t['\\'] = kBackslash;
  t['#'] = kHash;
  t[0] = kNul;
  return t;
}

constexpr std::array<std::uint8_t, 256> kClass = make_classes();
constexpr char kHexUpper[] = "0123456789ABCDEF";

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  return -1;
}

bool is_lower_hex(char c) {
  return c >= 'a' && c <= 'f';
}

// Where the current segment's name stands, for the dot-segment check on decoded bytes. A ';'
// ends the name: "/..;jsessionid=x" is a dot segment to servers that strip path parameters.
enum class Segment : std::uint8_t { start, one_dot, two_dots, other };

void append_escape(std::string& out, unsigned char d) {
  out += '%';
  out += kHexUpper[d >> 4];
  out += kHexUpper[d & 0xf];
}

}  // namespace

CanonicalPath canonical_path(std::string_view raw, bool merge_slashes) {
  CanonicalPath out;
  if (raw.empty() || raw[0] != '/') {
    out.reason = "path does not start with '/'";
    return out;
  }
  // One pass decides refusal and whether anything changes; most paths are canonical already and
  // leave here without a copy.
  bool changed = false;
  Segment seg = Segment::other;
  const std::size_t n = raw.size();
  for (std::size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(raw[i]);
    auto k = kClass[c];
    if (k == kPercent) {
      if (i + 2 >= n) {
        out.reason = "bad percent-escape in path";
        return out;
      }
      int hi = hex_value(raw[i + 1]);
      int lo = hex_value(raw[i + 2]);
      if (hi < 0 || lo < 0) {
        out.reason = "bad percent-escape in path";
        return out;
      }
      c = static_cast<unsigned char>(hi * 16 + lo);
      k = kClass[c];
      switch (k) {
        case kLiteral:
          changed = true;  // decoded below, like a raw literal
          break;
        case kSlash:
          out.reason = "encoded slash in path";
          return out;
        case kBackslash:
          out.reason = "backslash in path";
          return out;
        case kNul:
          out.reason = "NUL in path";
          return out;
        default:
          changed = changed || is_lower_hex(raw[i + 1]) || is_lower_hex(raw[i + 2]);
          seg = Segment::other;
          i += 2;
          continue;
      }
      i += 2;
    }
    switch (k) {
      case kLiteral:
        if (seg != Segment::other) {
          if (c == '.') {
            seg = seg == Segment::start     ? Segment::one_dot
                  : seg == Segment::one_dot ? Segment::two_dots
                                            : Segment::other;
          } else if (c == ';' && seg != Segment::start) {
            out.reason = "dot segment in path";
            return out;
          } else {
            seg = Segment::other;
          }
        }
        break;
      case kSlash:
        if (seg == Segment::one_dot || seg == Segment::two_dots) {
          out.reason = "dot segment in path";
          return out;
        }
        changed = changed || (merge_slashes && seg == Segment::start);
        seg = Segment::start;
        break;
      case kBackslash:
        out.reason = "backslash in path";
        return out;
      case kHash:
        out.reason = "fragment in request target";
        return out;
      case kNul:
        out.reason = "NUL in path";
        return out;
      default:  // kEncode
        changed = true;
        seg = Segment::other;
        break;
    }
  }
  if (seg == Segment::one_dot || seg == Segment::two_dots) {
    out.reason = "dot segment in path";
    return out;
  }
  if (!changed) {
    return out;
  }

  out.changed = true;
  out.path.reserve(n + 8);
  for (std::size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(raw[i]);
    if (c == '%') {
      c = static_cast<unsigned char>(hex_value(raw[i + 1]) * 16 + hex_value(raw[i + 2]));
      i += 2;
      if (kClass[c] == kLiteral) {
        out.path += static_cast<char>(c);
      } else {
        append_escape(out.path, c);
      }
      continue;
    }
    switch (kClass[c]) {
      case kLiteral:
        out.path += static_cast<char>(c);
        break;
      case kSlash:
        if (!(merge_slashes && out.path.ends_with('/'))) {
          out.path += '/';
        }
        break;
      default:
        append_escape(out.path, c);
        break;
    }
  }
  return out;
}

CanonicalPath canonical_target_path(std::string_view target, bool merge_slashes) {
  if (target.find('#') != std::string_view::npos) {
    CanonicalPath out;
    out.reason = "fragment in request target";
    return out;
  }
  return canonical_path(target_path(target), merge_slashes);
}

}  // namespace gatehouse::http
