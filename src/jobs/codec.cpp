#include "jobs/codec.hpp"

#include <cstdint>

namespace gatehouse::jobs {

namespace {

void put_u32(std::string& out, std::size_t n) {
  auto v = static_cast<std::uint32_t>(n);
  for (int i = 0; i < 4; ++i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

bool get_string(std::string_view& in, std::string& out) {
  if (in.size() < 4) {
    return false;
  }
  std::uint32_t n = 0;
  for (int i = 0; i < 4; ++i) {
    n |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  }
  in.remove_prefix(4);
  if (in.size() < n) {
    return false;
  }
  out.assign(in.data(), n);
  in.remove_prefix(n);
  return true;
}

}  // namespace

std::string encode_fields(const Fields& fields) {
  std::string out;
  for (const auto& [name, value] : fields) {
    put_u32(out, name.size());
    out += name;
    put_u32(out, value.size());
    out += value;
  }
  return out;
}

std::optional<Fields> decode_fields(std::string_view data) {
  Fields out;
  while (!data.empty()) {
    std::string name, value;
    if (!get_string(data, name) || !get_string(data, value)) {
      return std::nullopt;
    }
    out.emplace_back(std::move(name), std::move(value));
  }
  return out;
}

}  // namespace gatehouse::jobs
