#pragma once
// Concurrent requests per key (max_in_flight). Entries exist only while a key has requests in
// flight, so memory is bounded by the number of open requests, not by the number of clients.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace gatehouse::ratelimit {

class InFlight {
 public:
  InFlight();
  ~InFlight();
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

  // Takes a slot for `key` if fewer than `max` are taken; returns whether it did.
  bool acquire(std::string_view key, std::uint32_t max);
  void release(std::string_view key);
  std::size_t keys() const;

 private:
  struct Shard;
  std::unique_ptr<Shard[]> shards_;
};

}  // namespace gatehouse::ratelimit
