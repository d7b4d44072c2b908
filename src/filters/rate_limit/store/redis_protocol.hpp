#pragma once
// The Redis side of a rate-limit decision, without any I/O: the Lua script (one script for the
// four algorithms, so stacked limits with different algorithms still commit atomically), its
// SHA-1 for EVALSHA, the EVALSHA arguments for some groups of a StoreRequest and the reply
// parser. The store (redis_store_net.*) sends them with the general Redis client (src/redis/).
//
// Key names: <prefix>{<identity>}:<definition, 8 hex> for counters, <prefix>{<identity>}:ban and
// :rej for bans. The identity is the hash tag, so one group's keys share a cluster slot.
#include <cstdint>
#include <string>
#include <string_view>

#include "filters/rate_limit/rate_limit_filter.hpp"
#include "redis/command.hpp"

struct redisReply;

namespace gatehouse::filters::rate_limit::store {

std::string_view script();
const std::string& script_sha1();  // 40 lower-case hex digits

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
  void finish(bool with_body, redis::Command& out) const;

 private:
  redis::Command keys_;
  redis::Command args_;
  std::string spec_;
  std::string prefix_;
  std::int64_t now_us_ = -1;
  std::size_t decisions_ = 0;
};

// A batch of one: deciding groups [first, last) of `req`.
// `now_us` < 0 uses the server's clock (production); tests pass a time to compare the script
// with the C++ algorithms.
void build_decide(const StoreRequest& req, std::size_t first, std::size_t last,
                  std::string_view prefix, bool with_body, std::int64_t now_us,
                  redis::Command& out);

// Reads the script's reply into `req` for groups [first, last): outcomes of their checks, `all`
// (AND-ed into req.all, which the caller sets true before the first call), bans. Returns false
// with `error` set when the reply is not the script's (an error reply, a wrong shape).
bool parse_decide(const redisReply* reply, StoreRequest& req, std::size_t first, std::size_t last,
                  std::string& error);
// The same for one decision of a batch, starting at element `offset` (advanced past it).
bool parse_decide(const redisReply* reply, StoreRequest& req, std::size_t first, std::size_t last,
                  std::string& error, std::size_t& offset);

}  // namespace gatehouse::filters::rate_limit::store
