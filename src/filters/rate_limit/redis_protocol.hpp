#pragma once
// The Redis side of a rate-limit decision, without any I/O: the Lua script (one script for the
// four algorithms, so stacked limits with different algorithms still commit atomically), its
// SHA-1 for EVALSHA, the EVALSHA arguments for some groups of a StoreRequest, the reply parser,
// and Redis Cluster's key slot. The Redis client (src/server/redis_client.*) moves these bytes.
//
// Key names: <prefix>{<identity>}:<definition, 8 hex> for counters, <prefix>{<identity>}:ban and
// :rej for bans. The identity is the hash tag, so one group's keys share a cluster slot.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "filters/rate_limit/rate_limit_filter.hpp"

struct redisReply;

namespace gatehouse::filters::rate_limit::redis {

std::string_view script();
const std::string& script_sha1();  // 40 lower-case hex digits

// A command's arguments, packed in one buffer (one allocation per call, reused).
struct Command {
  std::string arena;
  std::vector<std::size_t> ends;  // argument i is arena[ends[i-1], ends[i])
  void clear() {
    arena.clear();
    ends.clear();
  }
  void add(std::string_view arg) {
    arena += arg;
    ends.push_back(arena.size());
  }
  std::size_t size() const { return ends.size(); }
  std::string_view arg(std::size_t i) const {
    std::size_t begin = i == 0 ? 0 : ends[i - 1];
    return std::string_view(arena).substr(begin, ends[i] - begin);
  }
};

// The group's counter key for check `c`, its ban key and its rejection-count key.
std::string counter_key(std::string_view prefix, std::string_view identity,
                        std::uint32_t definition);
std::string ban_key(std::string_view prefix, std::string_view identity);
std::string rejection_key(std::string_view prefix, std::string_view identity);

// One script call deciding several requests (each all-or-nothing over its groups): the worker's
// concurrent decisions share one EVALSHA, so Redis runs the script once per batch, not per
// request. Keys of one call must share a slot with Redis Cluster, so batches are single-node.
class DecideBatch {
 public:
  void start(std::string_view prefix, std::int64_t now_us);  // now_us < 0: Redis TIME
  void add(const StoreRequest& req, std::size_t first, std::size_t last);
  std::size_t size() const { return decisions_; }
  std::size_t keys() const { return keys_.size(); }
  // EVALSHA (or, with `with_body`, EVAL carrying the script).
  void finish(bool with_body, Command& out) const;

 private:
  Command keys_;
  Command args_;
  std::string spec_;
  std::string prefix_;
  std::int64_t now_us_ = -1;
  std::size_t decisions_ = 0;
};

// A batch of one: deciding groups [first, last) of `req`.
// `now_us` < 0 uses the server's clock (production); tests pass a time to compare the script
// with the C++ algorithms.
void build_decide(const StoreRequest& req, std::size_t first, std::size_t last,
                  std::string_view prefix, bool with_body, std::int64_t now_us, Command& out);

// Reads the script's reply into `req` for groups [first, last): outcomes of their checks, `all`
// (AND-ed into req.all, which the caller sets true before the first call), bans. Returns false
// with `error` set when the reply is not the script's (an error reply, a wrong shape).
bool parse_decide(const redisReply* reply, StoreRequest& req, std::size_t first, std::size_t last,
                  std::string& error);
// The same for one decision of a batch, starting at element `offset` (advanced past it).
bool parse_decide(const redisReply* reply, StoreRequest& req, std::size_t first, std::size_t last,
                  std::string& error, std::size_t& offset);

// Redis Cluster key slot: CRC16 (XMODEM) of the hash tag or the whole key, mod 16384.
std::uint16_t key_slot(std::string_view key);

}  // namespace gatehouse::filters::rate_limit::redis
