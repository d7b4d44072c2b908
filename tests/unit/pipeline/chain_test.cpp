// The chain's contract with filters that record what they were asked: order, stopping at a reply,
// suspending and resuming, strips, encode_headers for local and proxied heads, encode_data only
// when some filter observes bodies, and on_complete for every filter.
#include "pipeline/chain.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gatehouse::pipeline {
namespace {

struct Services {
  std::vector<std::string>* log;
  const config::Config& cfg;
};

// Answers according to the request's target: "/reply-<name>" replies, "/wait-<name>" suspends.
template <char Name>
class Recorder {
 public:
  explicit Recorder(Services& s) : log_(*s.log) {}
  Next decode_headers(Context& ctx) {
    log_.push_back(std::string("decode ") + Name);
    if (ctx.target == std::string("/reply-") + Name) {
      ctx.reply.status = 418;
      return Next::Reply;
    }
    if (ctx.target == std::string("/wait-") + Name) {
      return Next::Suspend;
    }
    return Next::Continue;
  }
  net::awaitable<Next> resume(Context& ctx) {
    log_.push_back(std::string("resume ") + Name);
    co_return ctx.upstream_error == "refuse" ? (ctx.reply.status = 429, Next::Reply)
                                             : Next::Continue;
  }
  bool strips(std::string_view name) const { return name == std::string("X-") + Name; }
  void encode_headers(Context&, ResponseHead& head) {
    head.lines += std::string(1, Name) + (head.local() ? "L;" : "P;");
  }
  void on_complete(Context&) { log_.push_back(std::string("complete ") + Name); }

 private:
  std::vector<std::string>& log_;
};

// Takes part in decode only.
class Plain {
 public:
  explicit Plain(Services& s) : log_(*s.log) {}
  Next decode_headers(Context&) {
    log_.push_back("decode plain");
    return Next::Continue;
  }

 private:
  std::vector<std::string>& log_;
};

class BodyReader {
 public:
  explicit BodyReader(Services& s) : log_(*s.log) {}
  void encode_data(Context&, std::span<const char> piece, bool last) {
    log_.push_back("data " + std::string(piece.begin(), piece.end()) + (last ? " last" : ""));
  }

 private:
  std::vector<std::string>& log_;
};

// Reads bodies only when it says so (the response cache: only while it fills).
class SometimesReader {
 public:
  explicit SometimesReader(Services&) {}
  bool wants_body(const Context&) const { return wants; }
  void encode_data(Context&, std::span<const char>, bool) {}
  bool wants = false;
};

using Abc = Chain<Recorder<'a'>, Plain, Recorder<'b'>>;
static_assert(!Abc::kObservesBody);
static_assert(Chain<Plain, BodyReader>::kObservesBody);

struct ChainTest : ::testing::Test {
  config::Config cfg;
  std::vector<std::string> log;
  Services services{&log, cfg};
  Context ctx{cfg, Clock::now()};

  Next run(Abc& chain) {
    net::io_context ioc;
    Next out = chain.decode(ctx);
    while (out == Next::Suspend) {
      bool done = false;
      net::co_spawn(
          ioc,
          [&]() -> net::awaitable<void> {
            out = co_await chain.resume(ctx);
            done = true;
          },
          net::detached);
      ioc.run();
      ioc.restart();
      EXPECT_TRUE(done);
    }
    return out;
  }
};

TEST_F(ChainTest, DecodesInOrderAndCompletesEveryFilter) {
  Abc chain(services);
  ctx.target = "/";
  EXPECT_EQ(run(chain), Next::Continue);
  chain.on_complete(ctx);
  EXPECT_EQ(log, (std::vector<std::string>{"decode a", "decode plain", "decode b", "complete a",
                                           "complete b"}));
}

TEST_F(ChainTest, AReplyStopsTheChain) {
  Abc chain(services);
  ctx.target = "/reply-a";
  EXPECT_EQ(run(chain), Next::Reply);
  EXPECT_EQ(ctx.reply.status, 418u);
  EXPECT_EQ(log, (std::vector<std::string>{"decode a"}));
}

TEST_F(ChainTest, ResumeContinuesAfterTheSuspendedFilter) {
  Abc chain(services);
  ctx.target = "/wait-a";
  EXPECT_EQ(run(chain), Next::Continue);
  EXPECT_EQ(log, (std::vector<std::string>{"decode a", "resume a", "decode plain", "decode b"}));
}

TEST_F(ChainTest, ResumeMayReply) {
  Abc chain(services);
  ctx.target = "/wait-b";
  ctx.upstream_error = "refuse";
  EXPECT_EQ(run(chain), Next::Reply);
  EXPECT_EQ(ctx.reply.status, 429u);
  EXPECT_EQ(log, (std::vector<std::string>{"decode a", "decode plain", "decode b", "resume b"}));
}

TEST_F(ChainTest, StripsIfAnyFilterStrips) {
  Abc chain(services);
  EXPECT_TRUE(chain.strips("X-a"));
  EXPECT_TRUE(chain.strips("X-b"));
  EXPECT_FALSE(chain.strips("X-c"));
}

TEST_F(ChainTest, EncodeHeadersInChainOrderForLocalAndProxiedHeads) {
  Abc chain(services);
  std::string lines;
  ResponseHead local{200, nullptr, lines};
  chain.encode_headers(ctx, local);
  EXPECT_EQ(lines, "aL;bL;");
  Fields upstream;  // the proxied response head type
  upstream.set("X-App", "1");
  lines.clear();
  ResponseHead proxied{200, &upstream, lines};
  EXPECT_TRUE(proxied.upstream_has("x-app"));
  EXPECT_FALSE(proxied.upstream_has("X-Other"));
  chain.encode_headers(ctx, proxied);
  EXPECT_EQ(lines, "aP;bP;");
}

TEST_F(ChainTest, EncodeDataReachesBodyReaders) {
  Chain<Plain, BodyReader> chain(services);
  std::string piece = "hello";
  chain.encode_data(ctx, piece, false);
  chain.encode_data(ctx, {}, true);
  EXPECT_EQ(log, (std::vector<std::string>{"data hello", "data  last"}));
}

TEST_F(ChainTest, WantsBodyAsksTheFiltersThatSayAndAssumesTheOthersDo) {
  Chain<Plain> none(services);
  EXPECT_FALSE(none.wants_body(ctx));
  Chain<Plain, SometimesReader> sometimes(services);
  EXPECT_FALSE(sometimes.wants_body(ctx));  // the relay then skips encode_data
  sometimes.get<SometimesReader>().wants = true;
  EXPECT_TRUE(sometimes.wants_body(ctx));
  Chain<SometimesReader, BodyReader> always(services);
  EXPECT_TRUE(always.wants_body(ctx));  // a reader without wants_body reads every body
}

}  // namespace
}  // namespace gatehouse::pipeline
