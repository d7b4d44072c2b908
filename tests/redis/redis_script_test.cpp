// The Redis decision script against a real redis-server started by the test: its four algorithms
// must give the same answers as the C++ ones (src/ratelimit/algorithm.cpp) on random schedules,
// commit all-or-nothing, count rejections into bans, and bound Redis memory with TTLs. Time is
// injected (the script's ARGV[1]) so both sides see the same clock; production uses Redis TIME.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "filters/rate_limit/store/redis_protocol.hpp"
#include "ratelimit/algorithm.hpp"
#include "redis/cluster.hpp"
#include "redis/command.hpp"

namespace gatehouse::filters::rate_limit::store {
namespace {

using ::gatehouse::redis::Command;
using ::gatehouse::redis::key_slot;
using ratelimit::Algorithm;
using ratelimit::Nanos;

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// One redis-server for the whole binary.
class RedisServer : public ::testing::Environment {
 public:
  void SetUp() override {
    port = free_port();
    pid = ::fork();
    if (pid == 0) {
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      std::string p = std::to_string(port);
      ::execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", "--dir", "/tmp", nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 100 && ctx == nullptr; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      redisContext* c = redisConnect("127.0.0.1", port);
      if (c != nullptr && c->err == 0) {
        ctx = c;
      } else if (c != nullptr) {
        redisFree(c);
      }
    }
    ASSERT_NE(ctx, nullptr) << "redis-server did not start (is it installed?)";
  }
  void TearDown() override {
    if (ctx != nullptr) {
      redisFree(ctx);
    }
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  }
  static inline redisContext* ctx = nullptr;
  static inline int port = 0;
  pid_t pid = -1;
};

struct Reply {
  redisReply* r = nullptr;
  ~Reply() {
    if (r != nullptr) {
      freeReplyObject(r);
    }
  }
};

void run(const Command& cmd, Reply& out) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (std::size_t i = 0; i < cmd.size(); ++i) {
    argv.push_back(cmd.arg(i).data());
    lens.push_back(cmd.arg(i).size());
  }
  out.r = static_cast<redisReply*>(
      redisCommandArgv(RedisServer::ctx, static_cast<int>(argv.size()), argv.data(), lens.data()));
  ASSERT_NE(out.r, nullptr);
}

long long integer(const std::string& command) {
  Reply r;
  r.r = static_cast<redisReply*>(redisCommand(RedisServer::ctx, command.c_str()));
  EXPECT_NE(r.r, nullptr);
  return r.r != nullptr && r.r->type == REDIS_REPLY_INTEGER ? r.r->integer : -99;
}

// A request with one group per entry of `limits` (all on one identity).
struct Request {
  StoreRequest req;
  std::vector<ratelimit::BanRule> bans;
};

void add_group(StoreRequest& req, const std::string& identity,
               const std::vector<ratelimit::Check>& checks, const ratelimit::BanRule* ban) {
  StoreRequest::Group g;
  g.identity = identity;
  g.first = static_cast<std::uint16_t>(req.checks.size());
  g.count = static_cast<std::uint16_t>(checks.size());
  g.ban = ban;
  g.ban_reason = ban != nullptr ? "route=t limit=test" : "";
  for (const auto& c : checks) {
    req.checks.push_back(c);
    req.definitions.push_back(static_cast<std::uint32_t>(req.definitions.size() + 0x1000));
  }
  req.groups.push_back(std::move(g));
}

// Runs the script; returns false on an error reply.
bool decide(StoreRequest& req, std::int64_t now_us, bool eval = false) {
  Command cmd;
  build_decide(req, 0, req.groups.size(), "t:", eval, now_us, cmd);
  Reply r;
  run(cmd, r);
  req.all = true;
  req.banned_group = -1;
  req.new_bans = 0;
  std::string error;
  bool ok = parse_decide(r.r, req, 0, req.groups.size(), error);
  EXPECT_TRUE(ok) << error;
  return ok;
}

std::int64_t ceil_us(Nanos ns) {
  return ns <= 0 ? 0 : (ns + 999) / 1000;
}

class RedisScript : public ::testing::Test {
 protected:
  // Each test on an empty database with the script loaded (ctest runs every test in its own
  // process and server; NoScriptThenEvalLoadsIt flushes the script cache).
  void SetUp() override {
    Reply r;
    r.r = static_cast<redisReply*>(redisCommand(RedisServer::ctx, "FLUSHALL"));
    ASSERT_NE(r.r, nullptr);
    Reply load;
    load.r = static_cast<redisReply*>(
        redisCommand(RedisServer::ctx, "SCRIPT LOAD %b", script().data(), script().size()));
    ASSERT_NE(load.r, nullptr);
    ASSERT_EQ(load.r->type, REDIS_REPLY_STRING);
  }
};

TEST_F(RedisScript, Sha1MatchesScriptLoad) {
  Reply r;
  r.r = static_cast<redisReply*>(
      redisCommand(RedisServer::ctx, "SCRIPT LOAD %b", script().data(), script().size()));
  ASSERT_NE(r.r, nullptr);
  ASSERT_EQ(r.r->type, REDIS_REPLY_STRING) << r.r->str;
  EXPECT_EQ(std::string(r.r->str, r.r->len), script_sha1());
}

// Random schedules: the script and evaluate() agree on every field, request by request.
TEST_F(RedisScript, AgreesWithTheCppAlgorithms) {
  std::mt19937_64 rng(20261123);
  const std::vector<Algorithm> algorithms{Algorithm::sliding_window, Algorithm::fixed_window,
                                          Algorithm::token_bucket, Algorithm::gcra};
  const std::vector<std::uint64_t> counts{1, 3, 7, 10, 100};
  const std::vector<Nanos> periods{1'000'000'000LL, 7'000'000'000LL, 60'000'000'000LL};
  int compared = 0;
  int key = 0;
  for (auto algorithm : algorithms) {
    for (auto count : counts) {
      for (auto period : periods) {
        ratelimit::Params params{count, period, 0};
        if ((algorithm == Algorithm::token_bucket || algorithm == Algorithm::gcra) &&
            rng() % 2 == 0) {
          params.burst = 1 + rng() % (2 * count);
        }
        SCOPED_TRACE(std::string(ratelimit::algorithm_name(algorithm)) +
                     " count=" + std::to_string(count) + " period=" + std::to_string(period) +
                     " burst=" + std::to_string(params.burst));
        ratelimit::State state = ratelimit::State::fresh();
        std::int64_t now_us = 1'795'000'000'000'000LL + static_cast<std::int64_t>(rng() % 1000000);
        // Appended, not "k" + to_string(): GCC 12's -Wrestrict false positive (bug 105651).
        std::string identity = "k";
        identity += std::to_string(++key);
        for (int step = 0; step < 60; ++step) {
          // Mostly short gaps (bursts), sometimes a fraction of the period, sometimes longer.
          auto r = rng() % 10;
          std::int64_t gap = r < 5   ? static_cast<std::int64_t>(rng() % 2000)
                             : r < 9 ? static_cast<std::int64_t>(rng() % (period / 1000 / 3 + 1))
                                     : static_cast<std::int64_t>(rng() % (2 * period / 1000 + 1));
          now_us += gap;
          auto e = ratelimit::evaluate(algorithm, params, state, now_us * 1000);
          StoreRequest req;
          ratelimit::Check c;
          c.algorithm = algorithm;
          c.params = params;
          add_group(req, identity, {c}, nullptr);
          ASSERT_TRUE(decide(req, now_us));
          const auto& o = req.checks[0].outcome;
          SCOPED_TRACE("step " + std::to_string(step) + " now_us " + std::to_string(now_us));
          ASSERT_EQ(o.allowed, e.outcome.allowed);
          ASSERT_EQ(o.remaining, e.outcome.remaining);
          ASSERT_EQ(o.retry_after / 1000, ceil_us(e.outcome.retry_after));
          ASSERT_EQ(o.reset_after / 1000, ceil_us(e.outcome.reset_after));
          ASSERT_EQ(req.all, e.outcome.allowed);
          if (e.outcome.allowed) {
            state = e.next;
          }
          ++compared;
        }
      }
    }
  }
  EXPECT_EQ(compared, 4 * 5 * 3 * 60);
}

TEST_F(RedisScript, CommitsOnlyWhenEveryLimitAllows) {
  ratelimit::Check per_second{{}, Algorithm::fixed_window, {2, 1'000'000'000LL, 0}, {}};
  ratelimit::Check per_minute{{}, Algorithm::fixed_window, {3, 60'000'000'000LL, 0}, {}};
  const std::int64_t t0 = 1'795'000'000'000'000LL;
  std::vector<bool> admitted;
  for (int i = 0; i < 3; ++i) {
    StoreRequest req;
    add_group(req, "ip=1", {per_second, per_minute}, nullptr);
    ASSERT_TRUE(decide(req, t0 + i));
    admitted.push_back(req.all);
  }
  EXPECT_EQ(admitted, (std::vector<bool>{true, true, false}));
  // The third was refused by the per-second limit: the per-minute one did not count it, so one
  // more fits once the second has passed.
  StoreRequest req;
  add_group(req, "ip=1", {per_second, per_minute}, nullptr);
  ASSERT_TRUE(decide(req, t0 + 1'000'001));
  EXPECT_TRUE(req.all);
  EXPECT_EQ(req.checks[1].outcome.remaining, 0u);
}

TEST_F(RedisScript, BansAfterRepeatedRejectionsAndExpires) {
  ratelimit::BanRule rule{2, 60'000'000'000LL, 5'000'000'000LL};
  ratelimit::Check one{{}, Algorithm::fixed_window, {1, 60'000'000'000LL, 0}, {}};
  const std::int64_t t0 = 1'795'000'000'000'000LL;
  auto attempt = [&](std::int64_t t) {
    StoreRequest req;
    req.check_bans = true;
    add_group(req, "ip=9", {one}, &rule);
    EXPECT_TRUE(decide(req, t));
    return req;
  };
  EXPECT_TRUE(attempt(t0).all);
  auto r1 = attempt(t0 + 1);
  EXPECT_FALSE(r1.all);
  EXPECT_EQ(r1.new_bans, 0u);
  auto r2 = attempt(t0 + 2);
  EXPECT_EQ(r2.new_bans, 1u);  // the second rejection starts the ban
  auto r3 = attempt(t0 + 3);
  EXPECT_EQ(r3.banned_group, 0);
  EXPECT_GT(r3.ban_left, 4'000'000'000LL);
  EXPECT_LE(r3.ban_left, 5'000'000'000LL);
  EXPECT_GT(integer("PTTL t:{ip=9}:ban"), 4000);
  EXPECT_EQ(integer("EXISTS t:{ip=9}:rej"), 0);
}

TEST_F(RedisScript, EveryKeyHasATtl) {
  const std::int64_t t0 = 1'795'000'000'000'000LL;
  for (auto algorithm : {Algorithm::sliding_window, Algorithm::fixed_window,
                         Algorithm::token_bucket, Algorithm::gcra}) {
    StoreRequest req;
    ratelimit::Check c{{}, algorithm, {10, 60'000'000'000LL, 0}, {}};
    add_group(req, std::string("ttl-") + ratelimit::algorithm_name(algorithm), {c}, nullptr);
    ASSERT_TRUE(decide(req, t0));
    auto key = counter_key("t:", req.groups[0].identity, req.definitions[0]);
    auto ttl = integer("PTTL " + key);
    EXPECT_GT(ttl, 0) << key;
    EXPECT_LE(ttl, 120'000) << key;  // at most two periods (sliding window)
  }
}

TEST_F(RedisScript, NoScriptThenEvalLoadsIt) {
  Reply flush;
  flush.r = static_cast<redisReply*>(redisCommand(RedisServer::ctx, "SCRIPT FLUSH"));
  StoreRequest req;
  ratelimit::Check c{{}, Algorithm::gcra, {5, 1'000'000'000LL, 0}, {}};
  add_group(req, "ns", {c}, nullptr);
  Command cmd;
  build_decide(req, 0, 1, "t:", false, -1, cmd);
  Reply r;
  run(cmd, r);
  ASSERT_EQ(r.r->type, REDIS_REPLY_ERROR);
  EXPECT_EQ(std::string(r.r->str, r.r->len).rfind("NOSCRIPT", 0), 0u);
  ASSERT_TRUE(decide(req, -1, true));  // EVAL with the body, server time
  EXPECT_TRUE(req.all);
  ASSERT_TRUE(decide(req, -1, false));  // and EVALSHA works again
  EXPECT_EQ(req.checks[0].outcome.remaining, 3u);
}

// Several requests in one call, as a worker batches them: each is all-or-nothing on its own,
// later ones see what earlier ones committed, and the reply splits back per request.
TEST_F(RedisScript, BatchOfDecisions) {
  ratelimit::Check two{{}, Algorithm::fixed_window, {2, 60'000'000'000LL, 0}, {}};
  ratelimit::BanRule rule{1, 60'000'000'000LL, 5'000'000'000LL};
  std::vector<StoreRequest> reqs(5);
  for (auto& r : reqs) {
    r.check_bans = true;
    add_group(r, "ip=5", {two}, &rule);
  }
  DecideBatch batch;
  batch.start("t:", 1'795'000'000'000'000LL);
  for (auto& r : reqs) {
    batch.add(r, 0, 1);
  }
  EXPECT_EQ(batch.size(), 5u);
  Command cmd;
  batch.finish(false, cmd);
  Reply reply;
  run(cmd, reply);
  std::size_t offset = 0;
  std::vector<std::string> got;
  for (auto& r : reqs) {
    r.all = true;
    std::string error;
    ASSERT_TRUE(parse_decide(reply.r, r, 0, 1, error, offset)) << error;
    got.push_back(r.banned_group >= 0 ? "banned" : r.all ? "ok" : r.new_bans ? "ban!" : "limited");
  }
  EXPECT_EQ(offset, reply.r->elements);
  EXPECT_EQ(got, (std::vector<std::string>{"ok", "ok", "ban!", "banned", "banned"}));
}

TEST(RedisProtocol, KeySlotMatchesRedis) {
  // Reference values from the Redis Cluster specification and CLUSTER KEYSLOT.
  EXPECT_EQ(key_slot("123456789"), 12739);
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
  EXPECT_EQ(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
  EXPECT_EQ(key_slot("{ip=1.2.3.4}"), key_slot("gatehouse:{ip=1.2.3.4}:0000abcd"));
  Reply r;
  r.r = static_cast<redisReply*>(redisCommand(RedisServer::ctx, "CLUSTER KEYSLOT %s", "x"));
  // Without cluster mode CLUSTER KEYSLOT still answers on Redis 7.
  if (r.r != nullptr && r.r->type == REDIS_REPLY_INTEGER) {
    for (std::string k :
         {"x", "gatehouse:{global}:12345678", "a{b}c", "{}", "{ip=::1 route=api}"}) {
      Reply s;
      s.r = static_cast<redisReply*>(
          redisCommand(RedisServer::ctx, "CLUSTER KEYSLOT %b", k.data(), k.size()));
      ASSERT_NE(s.r, nullptr);
      ASSERT_EQ(s.r->type, REDIS_REPLY_INTEGER) << k;
      EXPECT_EQ(key_slot(k), s.r->integer) << k;
    }
  }
}

TEST(RedisProtocol, CommandLayout) {
  StoreRequest req;
  ratelimit::Check c{{}, Algorithm::token_bucket, {10, 60'000'000'000LL, 20}, {}};
  ratelimit::BanRule rule{3, 60'000'000'000LL, 900'000'000'000LL};
  req.check_bans = true;
  add_group(req, "ip=1.2.3.4", {c}, &rule);
  Command cmd;
  build_decide(req, 0, 1, "gatehouse:", false, -1, cmd);
  std::vector<std::string> args;
  for (std::size_t i = 0; i < cmd.size(); ++i) {
    args.emplace_back(cmd.arg(i));
  }
  ASSERT_EQ(args.size(), 10u);
  EXPECT_EQ(std::vector<std::string>(args.begin(), args.begin() + 8),
            (std::vector<std::string>{
                "EVALSHA", script_sha1(), "3", "gatehouse:{ip=1.2.3.4}:00001000",
                "gatehouse:{ip=1.2.3.4}:ban", "gatehouse:{ip=1.2.3.4}:rej", "", "1"}));
  // The spec: bans, groups; counters, ban after/within ms/for ms; algorithm, count, period us,
  // burst, as little-endian doubles.
  const std::string& spec = args[8];
  ASSERT_EQ(spec.size() % sizeof(double), 0u);
  std::vector<double> values(spec.size() / sizeof(double));
  std::memcpy(values.data(), spec.data(), spec.size());
  EXPECT_EQ(values, (std::vector<double>{1, 1, 1, 3, 60000, 900000, 2, 10, 60000000, 20}));
  EXPECT_EQ(args[9], "route=t limit=test");
}

}  // namespace
}  // namespace gatehouse::filters::rate_limit::store

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new gatehouse::filters::rate_limit::store::RedisServer);
  return RUN_ALL_TESTS();
}
