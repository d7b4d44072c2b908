#include "http/request_id.hpp"

#include <random>

namespace gatehouse::http {
namespace {

constexpr char kHex[] = "0123456789abcdef";

bool is_lower_hex(std::string_view s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

bool all_zero(std::string_view s) {
  return s.find_first_not_of('0') == std::string_view::npos;
}

// The low `digits` (<= 16) hex digits of v, most significant first, in one append: a push_back
// per digit made the ids of a request (request id, traceparent) ~1,000 instructions.
void append_hex(std::string& out, std::uint64_t v, int digits) {
  char buf[16];
  for (int i = digits - 1; i >= 0; --i) {
    buf[i] = kHex[v & 0xf];
    v >>= 4;
  }
  out.append(buf, static_cast<std::size_t>(digits));
}

std::uint64_t rotl(std::uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

}  // namespace

bool is_valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxRequestIdLength) {
    return false;
  }
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) {
      return false;
    }
  }
  return true;
}

IdGenerator::IdGenerator() {
  std::random_device rd;
  for (auto& s : s_) {
    s = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }
  if ((s_[0] | s_[1] | s_[2] | s_[3]) == 0) {
    s_[0] = 0x9e3779b97f4a7c15ULL;
  }
}

std::uint64_t IdGenerator::next() {
  const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

std::string IdGenerator::request_id() {
  std::string out;
  out.reserve(32);
  append_hex(out, next(), 16);
  append_hex(out, next(), 16);
  return out;
}

std::string IdGenerator::span_id() {
  std::string out;
  out.reserve(16);
  std::uint64_t v = next();
  append_hex(out, v == 0 ? 1 : v, 16);
  return out;
}

IdGenerator& thread_id_generator() {
  thread_local IdGenerator gen;
  return gen;
}

bool is_valid_traceparent(std::string_view v) {
  // version(2) - trace-id(32) - parent-id(16) - flags(2)
  if (v.size() != 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') {
    return false;
  }
  auto version = v.substr(0, 2), trace = v.substr(3, 32), parent = v.substr(36, 16),
       flags = v.substr(53, 2);
  return is_lower_hex(version) && version != "ff" && is_lower_hex(trace) && !all_zero(trace) &&
         is_lower_hex(parent) && !all_zero(parent) && is_lower_hex(flags);
}

std::string next_traceparent(std::string_view incoming, std::string_view request_id,
                             IdGenerator& gen) {
  std::string out;
  out.reserve(55);
  out += "00-";
  std::string_view flags = "01";
  if (is_valid_traceparent(incoming)) {
    out += incoming.substr(3, 32);
    flags = incoming.substr(53, 2);
  } else if (request_id.size() == 32 && is_lower_hex(request_id) && !all_zero(request_id)) {
    out += request_id;
  } else {
    append_hex(out, gen.next() | 1, 16);
    append_hex(out, gen.next(), 16);
  }
  out += '-';
  out += gen.span_id();
  out += '-';
  out += flags;
  return out;
}

}  // namespace gatehouse::http
