#pragma once
// Redis Cluster without I/O: key slots, the CLUSTER SLOTS reply and MOVED/ASK redirections.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

struct redisReply;

namespace gatehouse::redis {

inline constexpr std::size_t kSlots = 16384;

struct NodeAddress {
  std::string host;  // numeric
  std::uint16_t port = 0;
  bool operator==(const NodeAddress&) const = default;
};

// Slot ranges from CLUSTER SLOTS (masters only).
struct SlotRange {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  NodeAddress node;
};

// Redis Cluster key slot: CRC16 (XMODEM) of the hash tag or the whole key, mod 16384.
std::uint16_t key_slot(std::string_view key);

// Parses CLUSTER SLOTS; false when the reply is not one.
bool parse_cluster_slots(const redisReply* reply, std::vector<SlotRange>& out);
// "MOVED 3999 127.0.0.1:6381" / "ASK ...": the slot and the address.
bool parse_redirect(std::string_view error, std::uint16_t& slot, NodeAddress& to);

}  // namespace gatehouse::redis
