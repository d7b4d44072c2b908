#include "http/canonical_path.hpp"

#include <array>
#include <cstdint>

#include "http/target.hpp"

namespace gatehouse::http {
namespace {

// What a byte is in a path, raw or decoded from an escape.
enum Class : std::uint8_t {
  kPlain,      // RFC 3986 pchar (unreserved, sub-delims, ':', '@') other than '.' and ';'
  kLiteral,    // '.' and ';': pchar too, and what a dot segment is made of
  kEncode,     // not allowed literally: escaped (raw), kept escaped (decoded)
  kSlash,      // the segment delimiter: kept raw, refused encoded
  kPercent,    // raw: starts an escape; decoded: stays %25
  kBackslash,  // refused raw and encoded
  kHash,       // raw: a fragment (refused); decoded: stays %23
  kNul,        // refused
};

constexpr std::array<std::uint8_t, 256> make_classes() {
  std::array<std::uint8_t, 256> t{};
  t.fill(kEncode);
  for (int c = 'a'; c <= 'z'; ++c) {
    t[c] = kPlain;
  }
  for (int c = 'A'; c <= 'Z'; ++c) {
    t[c] = kPlain;
  }
  for (int c = '0'; c <= '9'; ++c) {
    t[c] = kPlain;
  }
  for (unsigned char c : std::string_view("-_~!$&'()*+,=:@")) {
    t[c] = kPlain;
  }
  t['.'] = kLiteral;
  t[';'] = kLiteral;
  t['/'] = kSlash;
  t['%'] = kPercent;
  t['\\'] = kBackslash;
  t['#'] = kHash;
  t[0] = kNul;
  return t;
}

constexpr std::array<std::uint8_t, 256> kClass = make_classes();

// 1 for the bytes the full pass must look at: all but kPlain and '/'.
constexpr std::array<std::uint8_t, 256> make_needs_look() {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[c] = kClass[c] != kPlain && c != '/';
  }
  return t;
}

constexpr std::array<std::uint8_t, 256> kNeedsLook = make_needs_look();

// Whether a path that starts with '/' is canonical by a cheaper test: only plain bytes and
// single slashes (merged or not). Branch-free, so segment ends cost no mispredicted branch; four
// accumulators and a separate slash-pair loop (vectorised by the compiler) keep the dependency
// chains short.
bool plainly_canonical(std::string_view raw, bool merge_slashes) {
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  const std::size_t n = raw.size();
  unsigned a = 0;
  unsigned b = 0;
  unsigned c = 0;
  unsigned d = 0;
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    a |= kNeedsLook[p[i]];
    b |= kNeedsLook[p[i + 1]];
    c |= kNeedsLook[p[i + 2]];
    d |= kNeedsLook[p[i + 3]];
  }
  for (; i < n; ++i) {
    a |= kNeedsLook[p[i]];
  }
  if ((a | b | c | d) != 0) {
    return false;
  }
  if (!merge_slashes) {
    return true;
  }
  unsigned doubled = 0;
  for (std::size_t j = 1; j < n; ++j) {
    doubled |= static_cast<unsigned>(p[j - 1] == '/') & static_cast<unsigned>(p[j] == '/');
  }
  return doubled == 0;
}

bool is_pchar(std::uint8_t k) {
  return k == kPlain || k == kLiteral;
}

std::uint8_t class_of(char c) {
  return kClass[static_cast<unsigned char>(c)];
}
constexpr char kHexUpper[] = "0123456789ABCDEF";

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
  if (plainly_canonical(raw, merge_slashes)) {
    return out;  // most paths: no escape, no dot, no doubled slash
  }
  // One pass decides refusal and whether anything changes; a path with escapes that stay (UTF-8)
  // may still be canonical and leave here without a copy.
  bool changed = false;
  Segment seg = Segment::other;
  const std::size_t n = raw.size();
  std::size_t i = 0;
  while (i < n) {
    if (class_of(raw[i]) == kPlain) {
      // Most bytes of most paths: skipped in a tight loop; they end a dot-segment candidate.
      do {
        ++i;
      } while (i < n && class_of(raw[i]) == kPlain);
      seg = Segment::other;
      continue;
    }
    auto c = static_cast<unsigned char>(raw[i]);
    auto k = kClass[c];
    std::size_t width = 1;
    if (k == kPercent) {
      int hi = i + 2 < n ? hex_value(raw[i + 1]) : -1;
      int lo = i + 2 < n ? hex_value(raw[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        out.reason = "bad percent-escape in path";
        return out;
      }
      c = static_cast<unsigned char>(hi * 16 + lo);
      k = kClass[c];
      width = 3;
      if (is_pchar(k)) {
        changed = true;  // decoded in the second pass; judged below like the raw byte
      } else if (k == kEncode || k == kPercent || k == kHash) {
        // Stays escaped: data to every rule, not a delimiter or a dot.
        changed = changed || is_lower_hex(raw[i + 1]) || is_lower_hex(raw[i + 2]);
        seg = Segment::other;
        i += width;
        continue;
      } else if (k == kSlash) {
        out.reason = "encoded slash in path";
        return out;
      }
    }
    switch (k) {
      case kPlain:
        seg = Segment::other;
        break;
      case kLiteral:
        if (seg != Segment::other) {
          if (c == '.') {
            seg = seg == Segment::start     ? Segment::one_dot
                  : seg == Segment::one_dot ? Segment::two_dots
                                            : Segment::other;
          } else if (seg != Segment::start) {  // ';' after "." or ".."
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
      default:  // kEncode, raw
        changed = true;
        seg = Segment::other;
        break;
    }
    i += width;
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
  for (std::size_t j = 0; j < n; ++j) {
    auto c = static_cast<unsigned char>(raw[j]);
    if (c == '%') {
      c = static_cast<unsigned char>(hex_value(raw[j + 1]) * 16 + hex_value(raw[j + 2]));
      j += 2;
      if (is_pchar(kClass[c])) {
        out.path += static_cast<char>(c);
      } else {
        append_escape(out.path, c);
      }
      continue;
    }
    switch (kClass[c]) {
      case kPlain:
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
