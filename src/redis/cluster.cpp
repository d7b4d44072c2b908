#include "redis/cluster.hpp"

#include <hiredis/hiredis.h>

#include <charconv>

namespace gatehouse::redis {

std::uint16_t key_slot(std::string_view key) {
  if (auto open = key.find('{'); open != std::string_view::npos) {
    auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) {
      key = key.substr(open + 1, close - open - 1);
    }
  }
  std::uint16_t crc = 0;
  for (unsigned char byte : key) {
    crc ^= static_cast<std::uint16_t>(byte << 8);
    for (int i = 0; i < 8; ++i) {
      crc = (crc & 0x8000) != 0 ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021)
                                : static_cast<std::uint16_t>(crc << 1);
    }
  }
  return crc & 16383;
}

bool parse_cluster_slots(const redisReply* reply, std::vector<SlotRange>& out) {
  out.clear();
  if (reply == nullptr || reply->type != REDIS_REPLY_ARRAY) {
    return false;
  }
  for (std::size_t i = 0; i < reply->elements; ++i) {
    const redisReply* e = reply->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER ||
        e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2) {
      return false;
    }
    const redisReply* master = e->element[2];
    if (master->element[0]->type != REDIS_REPLY_STRING ||
        master->element[1]->type != REDIS_REPLY_INTEGER) {
      return false;
    }
    SlotRange range;
    range.first = static_cast<std::uint16_t>(e->element[0]->integer);
    range.last = static_cast<std::uint16_t>(e->element[1]->integer);
    range.node.host.assign(master->element[0]->str, master->element[0]->len);
    range.node.port = static_cast<std::uint16_t>(master->element[1]->integer);
    if (range.first > range.last || range.last >= kSlots) {
      return false;
    }
    out.push_back(std::move(range));
  }
  return true;
}

bool parse_redirect(std::string_view error, std::uint16_t& slot, NodeAddress& to) {
  auto space = error.find(' ');
  if (space == std::string_view::npos) {
    return false;
  }
  auto rest = error.substr(space + 1);
  auto space2 = rest.find(' ');
  if (space2 == std::string_view::npos) {
    return false;
  }
  unsigned s = 0;
  auto slot_text = rest.substr(0, space2);
  auto r = std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), s);
  if (r.ec != std::errc() || s >= kSlots) {
    return false;
  }
  auto addr = rest.substr(space2 + 1);
  auto colon = addr.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return false;
  }
  unsigned port = 0;
  auto port_text = addr.substr(colon + 1);
  r = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (r.ec != std::errc() || port == 0 || port > 65535) {
    return false;
  }
  slot = static_cast<std::uint16_t>(s);
  to.host = std::string(addr.substr(0, colon));
  if (to.host.size() > 2 && to.host.front() == '[' && to.host.back() == ']') {
    to.host = to.host.substr(1, to.host.size() - 2);
  }
  to.port = static_cast<std::uint16_t>(port);
  return true;
}

}  // namespace gatehouse::redis
