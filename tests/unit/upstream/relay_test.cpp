#include "upstream/relay.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "loopback.hpp"

namespace gatehouse::upstream {
namespace {

using io::Framing;
using io::ResponseParser;
namespace net = io::net;

constexpr std::string_view kHead = "CLIENT-HEAD\r\n\r\n";  // stands for the client response head

// The body of a chunked message (after its head), decoded; `terminated` says whether the last
// chunk was there.
struct Dechunked {
  std::string body;
  bool terminated = false;
};
Dechunked dechunk(std::string_view s) {
  Dechunked out;
  for (;;) {
    auto eol = s.find("\r\n");
    if (eol == std::string_view::npos) {
      return out;
    }
    auto size = std::stoul(std::string(s.substr(0, eol)), nullptr, 16);
    s.remove_prefix(eol + 2);
    if (size == 0) {
      out.terminated = s == "\r\n";
      return out;
    }
    out.body += s.substr(0, size);
    s.remove_prefix(size + 2);
  }
}

struct Piece {
  std::string data;
  bool last;
};

// One exchange over real loopback sockets: the test plays the upstream (what it sent is written,
// and closed if asked, before the relay runs) and reads what the client received at the end.
class RelayTest : public ::testing::Test {
 protected:
  RelayTest() {
    auto [gw_up, up] = test::socket_pair(ioc_);
    upstream_.socket = std::move(gw_up);
    upstream_.socket.non_blocking(true);  // as Cluster sets it: the relay polls without waiting
    upstream_peer_ = std::move(up);
    auto [gw_client, client] = test::socket_pair(ioc_);
    client_stream_.emplace(std::move(gw_client));
    client_deadline_.emplace(client_stream_->socket());
    client_peer_ = std::move(client);
  }

  struct Outcome {
    io::error_code head_ec;
    unsigned status = 0;
    ResponseFraming framing{};
    RelayResult relay;
    std::string client_got;  // everything the client received, head included
  };

  // The upstream sends `response` (then closes when `close`); the relay answers a GET (HEAD when
  // `head_request`) from an HTTP/1.1 client (1.0 when `http10`).
  Outcome exchange(std::string_view response, bool close, bool head_request = false,
                   bool http10 = false) {
    net::write(upstream_peer_, net::buffer(response));
    if (close) {
      upstream_peer_.close();
    }
    Outcome o;
    o.relay = test::run(ioc_, relay(o, head_request, http10));
    io::error_code ignore;
    client_stream_->socket().shutdown(tcp::socket::shutdown_send, ignore);
    o.client_got = test::read_to_eof(client_peer_);
    return o;
  }

  net::awaitable<RelayResult> relay(Outcome& o, bool head_request, bool http10) {
    std::optional<ResponseParser> rp;
    reset_response_parser(rp, head_request);
    o.head_ec = co_await read_response_head(upstream_, rp, std::chrono::seconds(5), head_request);
    if (o.head_ec) {
      co_return RelayResult{};
    }
    o.status = rp->get().result_int();
    o.framing = response_framing(*rp, head_request, http10);
    ClientSide client{*client_stream_, *client_deadline_, client_buffer_};
    BodyObserver observer;
    if (observe_) {
      observer = {[](void* ctx, std::span<const char> piece, bool last) {
                    static_cast<std::vector<Piece>*>(ctx)->push_back(
                        {std::string(piece.data(), piece.size()), last});
                  },
                  &pieces_};
    }
    co_return co_await relay_response(
        buffers_, client, upstream_, head_,
        {*rp, o.framing, std::chrono::seconds(5), std::chrono::seconds(5), bytes_out_, observer});
  }

  std::string observed() const {
    std::string all;
    for (const auto& p : pieces_) {
      all += p.data;
    }
    return all;
  }
  // Exactly one piece says last, and it is the final one.
  bool ends_once() const {
    std::size_t lasts = 0;
    for (const auto& p : pieces_) {
      lasts += p.last ? 1 : 0;
    }
    return lasts == 1 && !pieces_.empty() && pieces_.back().last;
  }

  net::io_context ioc_;
  io::BufferPool buffers_;
  Connection upstream_{ioc_.get_executor()};
  tcp::socket upstream_peer_{ioc_};
  std::optional<io::ClientStream> client_stream_;
  std::optional<io::Deadline> client_deadline_;
  io::beast::flat_buffer client_buffer_;
  tcp::socket client_peer_{ioc_};
  std::string head_{kHead};
  std::uint64_t bytes_out_ = 0;
  bool observe_ = true;
  std::vector<Piece> pieces_;
};

TEST_F(RelayTest, ContentLength) {
  auto o = exchange("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
  ASSERT_FALSE(o.head_ec) << o.head_ec.message();
  EXPECT_EQ(o.framing.in, Framing::length);
  EXPECT_EQ(o.framing.out, Framing::length);
  EXPECT_EQ(o.client_got, std::string(kHead) + "hello");
  EXPECT_TRUE(o.relay.client_ok);
  EXPECT_TRUE(o.relay.upstream_reusable);
  EXPECT_FALSE(o.relay.upstream_ec);
  EXPECT_EQ(bytes_out_, 5u);
  EXPECT_EQ(observed(), "hello");
  EXPECT_TRUE(ends_once());
}

TEST_F(RelayTest, ContentLengthLargerThanOneTransferBuffer) {
  std::string body(io::BufferPool::kSize * 2 + 123, 'x');
  for (std::size_t i = 0; i < body.size(); ++i) {
    body[i] = static_cast<char>('a' + i % 26);
  }
  auto o = exchange(
      "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body,
      false);
  EXPECT_EQ(o.client_got, std::string(kHead) + body);
  EXPECT_TRUE(o.relay.upstream_reusable);
  EXPECT_EQ(bytes_out_, body.size());
  EXPECT_EQ(observed(), body);
  EXPECT_TRUE(ends_once());
}

TEST_F(RelayTest, ConnectionCloseFromUpstreamIsNotReusable) {
  auto o = exchange("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", false);
  EXPECT_EQ(o.client_got, std::string(kHead) + "ok");
  EXPECT_TRUE(o.relay.client_ok);
  EXPECT_FALSE(o.relay.upstream_reusable);
}

TEST_F(RelayTest, ChunkedIsReframedForTheClient) {
  auto o = exchange(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
      false);
  EXPECT_EQ(o.framing.in, Framing::chunked);
  EXPECT_EQ(o.framing.out, Framing::chunked);
  ASSERT_TRUE(o.client_got.starts_with(kHead)) << o.client_got;
  auto d = dechunk(std::string_view(o.client_got).substr(kHead.size()));
  EXPECT_EQ(d.body, "hello world");
  EXPECT_TRUE(d.terminated) << o.client_got;
  EXPECT_EQ(o.client_got.find("ext=1"), std::string::npos) << "extensions are not forwarded";
  EXPECT_TRUE(o.relay.upstream_reusable);
  EXPECT_EQ(observed(), "hello world");
  EXPECT_TRUE(ends_once());
}

TEST_F(RelayTest, ChunkedToAnHttp10ClientIsCloseDelimited) {
  auto o = exchange("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                    false, false, /*http10=*/true);
  EXPECT_EQ(o.framing.out, Framing::until_close);
  EXPECT_EQ(o.client_got, std::string(kHead) + "hello");
}

TEST_F(RelayTest, CloseDelimitedBodyIsChunkedForAnHttp11Client) {
  auto o = exchange("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello until close", true);
  EXPECT_EQ(o.framing.in, Framing::until_close);
  EXPECT_EQ(o.framing.out, Framing::chunked);
  ASSERT_TRUE(o.client_got.starts_with(kHead));
  auto d = dechunk(std::string_view(o.client_got).substr(kHead.size()));
  EXPECT_EQ(d.body, "hello until close");
  EXPECT_TRUE(d.terminated);
  EXPECT_TRUE(o.relay.client_ok) << "the chunked client connection can carry on";
  EXPECT_FALSE(o.relay.upstream_reusable);
  EXPECT_FALSE(o.relay.upstream_ec) << "EOF is the end of this body, not a failure";
  EXPECT_EQ(observed(), "hello until close");
  EXPECT_TRUE(ends_once());
}

TEST_F(RelayTest, CloseDelimitedBodyToAnHttp10ClientEndsWithClose) {
  auto o = exchange("HTTP/1.0 200 OK\r\n\r\nold style", true, false, /*http10=*/true);
  EXPECT_EQ(o.framing.out, Framing::until_close);
  EXPECT_EQ(o.client_got, std::string(kHead) + "old style");
  EXPECT_FALSE(o.relay.client_ok) << "only closing the client connection ends this body";
  EXPECT_FALSE(o.relay.upstream_ec);
}

TEST_F(RelayTest, InterimResponsesAreSkipped) {
  auto o = exchange(
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
      "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
      false);
  ASSERT_FALSE(o.head_ec) << o.head_ec.message();
  EXPECT_EQ(o.status, 201u);
  EXPECT_EQ(o.client_got, std::string(kHead) + "ok");
  EXPECT_TRUE(o.relay.upstream_reusable);
}

TEST_F(RelayTest, HeadResponseHasNoBodyDespiteContentLength) {
  auto o = exchange("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, /*head_request=*/true);
  EXPECT_EQ(o.framing.in, Framing::none);
  EXPECT_EQ(o.client_got, kHead);
  EXPECT_TRUE(o.relay.upstream_reusable);
  EXPECT_EQ(upstream_.buffer.size(), 0u);
  EXPECT_EQ(observed(), "");
  EXPECT_TRUE(ends_once()) << "the end of an empty body is still observed";
}

TEST_F(RelayTest, NoContentHasNoBody) {
  auto o = exchange("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", false);
  EXPECT_EQ(o.framing.in, Framing::none);
  EXPECT_EQ(o.client_got, kHead);
  EXPECT_TRUE(o.relay.upstream_reusable);
}

TEST_F(RelayTest, NotModifiedHasNoBody) {
  auto o = exchange("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\nETag: \"a\"\r\n\r\n", false);
  EXPECT_EQ(o.framing.in, Framing::none);
  EXPECT_EQ(o.client_got, kHead);
  EXPECT_TRUE(o.relay.upstream_reusable);
}

TEST_F(RelayTest, EmptyContentLengthBody) {
  auto o = exchange("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false);
  EXPECT_EQ(o.client_got, kHead);
  EXPECT_TRUE(o.relay.upstream_reusable);
  EXPECT_TRUE(ends_once());
}

TEST_F(RelayTest, UpstreamCutOffAfterPartOfTheBody) {
  auto o = exchange("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true);
  EXPECT_TRUE(o.relay.upstream_ec);
  EXPECT_TRUE(o.relay.head_sent);
  EXPECT_FALSE(o.relay.client_ok) << "the truncation is shown by closing";
  EXPECT_FALSE(o.relay.upstream_reusable);
  EXPECT_EQ(o.client_got, std::string(kHead) + "abc");
  EXPECT_EQ(observed(), "abc");
  EXPECT_FALSE(pieces_.back().last) << "a cut-off body never reports its end";
}

TEST_F(RelayTest, UpstreamCutOffRightAfterTheHeadSendsNothing) {
  // The EOF is already there when the relay looks: nothing went to the client, a 502 is due.
  auto o = exchange("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true);
  EXPECT_TRUE(o.relay.upstream_ec);
  EXPECT_FALSE(o.relay.head_sent);
  EXPECT_TRUE(o.relay.client_ok) << "the client can still get an error reply";
  EXPECT_EQ(o.client_got, "");
  EXPECT_TRUE(pieces_.empty());
}

TEST_F(RelayTest, ChunkedCutOffMidBody) {
  auto o =
      exchange("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n8\r\nwor", true);
  EXPECT_TRUE(o.relay.upstream_ec);
  EXPECT_TRUE(o.relay.head_sent);
  EXPECT_FALSE(o.relay.client_ok);
  auto d = dechunk(std::string_view(o.client_got).substr(kHead.size()));
  EXPECT_FALSE(d.terminated) << "no last chunk: the client sees the truncation";
}

TEST_F(RelayTest, HeadReadFailuresAreClassifiedForTheRetryPolicy) {
  auto o = exchange("", true);
  EXPECT_EQ(classify_head_failure(o.head_ec), TryFailure::closed) << o.head_ec.message();
  EXPECT_EQ(classify_head_failure(io::timeout_error()), TryFailure::timed_out);
}

TEST_F(RelayTest, PartialHeadThenCloseIsClosed) {
  auto o = exchange("HTTP/1.1 200 OK\r\nContent-Le", true);
  EXPECT_EQ(o.head_ec, io::http::error::partial_message);
  EXPECT_EQ(classify_head_failure(o.head_ec), TryFailure::closed);
}

TEST_F(RelayTest, WithoutAnObserverTheBytesAreTheSame) {
  observe_ = false;
  auto o = exchange("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false);
  EXPECT_EQ(o.client_got, std::string(kHead) + "hello");
  EXPECT_TRUE(pieces_.empty());
}

// The request side: head and body go up, the body is kept for a replay when asked.
class SendTest : public RelayTest {
 protected:
  // The client sent `request`; its head is parsed here (as the session does) and the rest stays
  // in the client buffer, or arrives later from the client peer when `later` is set.
  SendOutcome send(std::string_view head, std::string_view body, bool later = false) {
    io::error_code ec;
    parser_.header_limit(8192);
    parser_.put(net::buffer(head), ec);
    EXPECT_TRUE(parser_.is_header_done()) << ec.message();
    if (later) {
      net::write(client_peer_, net::buffer(body));
    } else if (!body.empty()) {  // (an empty prepare() may give a null pointer to memcpy)
      auto b = client_buffer_.prepare(body.size());
      std::memcpy(b.data(), body.data(), body.size());
      client_buffer_.commit(body.size());
    }
    io::Framing framing = parser_.chunked() ? Framing::chunked : Framing::length;
    ClientSide client{*client_stream_, *client_deadline_, client_buffer_};
    auto out = test::run(
        ioc_, send_request(buffers_, client, upstream_, std::chrono::seconds(5), upstream_head_,
                           {parser_, framing, limits_, Clock::now(), bytes_in_, replay_, resend_}));
    upstream_.socket.shutdown(tcp::socket::shutdown_send, ec);
    upstream_got_ = test::read_to_eof(upstream_peer_);
    return out;
  }

  pipeline::RequestParser parser_;
  config::Limits limits_;
  std::uint64_t bytes_in_ = 0;
  std::string upstream_head_ = "UPSTREAM-HEAD\r\n\r\n";
  ReplayBuffer* replay_ = nullptr;
  const ReplayBuffer* resend_ = nullptr;
  std::string upstream_got_;
};

TEST_F(SendTest, ContentLengthBodyFollowsTheHead) {
  ReplayBuffer replay(1024);
  replay_ = &replay;
  auto out = send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", "hello world");
  EXPECT_EQ(out.result, SendResult::ok);
  EXPECT_TRUE(out.wrote_any);
  EXPECT_EQ(upstream_got_, upstream_head_ + "hello world");
  EXPECT_EQ(bytes_in_, 11u);
  EXPECT_EQ(std::string(replay.data().data(), replay.data().size()), "hello world");
  EXPECT_FALSE(replay.overflowed());
}

TEST_F(SendTest, BodyStillArrivingIsStreamed) {
  auto out = send("PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n", "late", true);
  EXPECT_EQ(out.result, SendResult::ok);
  EXPECT_EQ(upstream_got_, upstream_head_ + "late");
}

TEST_F(SendTest, ChunkedBodyIsReframedAndKeptDecoded) {
  ReplayBuffer replay(1024);
  replay_ = &replay;
  auto out = send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                  "3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n");
  EXPECT_EQ(out.result, SendResult::ok);
  ASSERT_TRUE(upstream_got_.starts_with(upstream_head_));
  auto d = dechunk(std::string_view(upstream_got_).substr(upstream_head_.size()));
  EXPECT_EQ(d.body, "abcde");
  EXPECT_TRUE(d.terminated);
  EXPECT_EQ(std::string(replay.data().data(), replay.data().size()), "abcde");
}

TEST_F(SendTest, BadChunkIsABadBody) {
  auto out = send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                  "zz\r\nabc\r\n0\r\n\r\n");
  EXPECT_EQ(out.result, SendResult::bad_body);
}

TEST_F(SendTest, ReplayBufferOverflowDropsTheBody) {
  ReplayBuffer replay(5);
  replay_ = &replay;
  auto out = send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", "hello world");
  EXPECT_EQ(out.result, SendResult::ok);
  EXPECT_EQ(upstream_got_, upstream_head_ + "hello world") << "the cap never limits the send";
  EXPECT_TRUE(replay.overflowed());
  EXPECT_TRUE(replay.data().empty());
}

// A retry: the body comes from what was kept; the client is not read (it has nothing more).
TEST_F(SendTest, ResendSendsTheKeptBodyWhole) {
  ReplayBuffer kept(1024, &buffers_);
  kept.keep(std::span<const char>("hello ", 6));
  kept.keep(std::span<const char>("world", 5));
  resend_ = &kept;
  auto out = send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", "");
  EXPECT_EQ(out.result, SendResult::ok);
  EXPECT_EQ(upstream_got_, upstream_head_ + "hello world");
  EXPECT_EQ(bytes_in_, 0u) << "nothing read from the client";
}

TEST_F(SendTest, ResendOfAChunkedBodyIsOneChunk) {
  ReplayBuffer kept(1024);
  kept.keep(std::span<const char>("abcde", 5));
  resend_ = &kept;
  auto out = send("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "");
  EXPECT_EQ(out.result, SendResult::ok);
  EXPECT_EQ(upstream_got_, upstream_head_ + "5\r\nabcde\r\n0\r\n\r\n");
}

// buffer_request: the whole body is read before any upstream is involved.
class ReadBodyTest : public SendTest {
 protected:
  SendResult read(std::string_view head, std::string_view body, ReplayBuffer& into) {
    io::error_code ec;
    parser_.header_limit(8192);
    parser_.body_limit(limit_);
    parser_.put(net::buffer(head), ec);
    EXPECT_TRUE(parser_.is_header_done()) << ec.message();
    net::write(client_peer_, net::buffer(body));
    io::Framing framing = parser_.chunked() ? Framing::chunked : Framing::length;
    ClientSide client{*client_stream_, *client_deadline_, client_buffer_};
    return test::run(
        ioc_, read_request_body(buffers_, client,
                                {parser_, framing, limits_, Clock::now(), bytes_in_, &into}));
  }
  std::uint64_t limit_ = 1'000'000;
};

TEST_F(ReadBodyTest, ReadsALengthBodyWhole) {
  ReplayBuffer into(std::numeric_limits<std::size_t>::max());
  std::string body(100'000, 'x');
  EXPECT_EQ(read("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n", body, into),
            SendResult::ok);
  EXPECT_EQ(std::string(into.data().data(), into.data().size()), body);
  EXPECT_EQ(bytes_in_, 100'000u);
}

TEST_F(ReadBodyTest, ReadsAChunkedBodyDecoded) {
  ReplayBuffer into(std::numeric_limits<std::size_t>::max());
  EXPECT_EQ(read("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                 "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", into),
            SendResult::ok);
  EXPECT_EQ(std::string(into.data().data(), into.data().size()), "abcde");
}

TEST_F(ReadBodyTest, AChunkedBodyOverTheLimitIsTooLarge) {
  ReplayBuffer into(std::numeric_limits<std::size_t>::max());
  limit_ = 4;
  EXPECT_EQ(read("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                 "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", into),
            SendResult::too_large);
}

TEST_F(RelayTest, HoldReadsTheWholeBodyThenTheRelaySendsIt) {
  net::write(upstream_peer_,
             net::buffer(std::string_view("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                          "Content-Length: 11\r\n\r\n{\"a\":")));
  auto rest = [&]() -> net::awaitable<void> {
    // The rest arrives later: the hold must wait for it.
    net::steady_timer t(co_await net::this_coro::executor, std::chrono::milliseconds(20));
    co_await t.async_wait(net::use_awaitable);
    co_await net::async_write(upstream_peer_, net::buffer(std::string_view("[1,2]}")),
                              net::use_awaitable);
  };
  net::co_spawn(ioc_, rest(), net::detached);
  std::optional<ResponseParser> rp;
  reset_response_parser(rp, false);
  io::error_code ec;
  auto held = test::run(ioc_, [&]() -> net::awaitable<std::string> {
    ec = co_await read_response_head(upstream_, rp, std::chrono::seconds(5), false);
    if (ec) {
      co_return "";
    }
    ec = co_await hold_response_body(upstream_, 11, std::chrono::seconds(5));
    auto d = upstream_.buffer.data();
    co_return std::string(static_cast<const char*>(d.data()), d.size());
  }());
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(held, R"({"a":[1,2]})");
  EXPECT_TRUE(json_parses(held));
}

TEST(ReplayBuffer, InALeasedBufferUpToTheCap) {
  io::BufferPool pool;
  ReplayBuffer r(io::BufferPool::kSize, &pool);
  std::string big(io::BufferPool::kSize - 1, 'x');
  r.keep(big);
  r.keep(std::span<const char>("y", 1));
  EXPECT_FALSE(r.overflowed());
  EXPECT_EQ(r.data().size(), io::BufferPool::kSize);
  EXPECT_EQ(r.data().back(), 'y');
  r.keep(std::span<const char>("z", 1));
  EXPECT_TRUE(r.overflowed());
  EXPECT_TRUE(r.data().empty());
}

TEST(ReplayBuffer, KeepsPiecesUpToTheCap) {
  ReplayBuffer r(6);
  r.keep(std::span<const char>("abc", 3));
  r.keep(std::span<const char>("def", 3));
  EXPECT_FALSE(r.overflowed());
  EXPECT_EQ(std::string(r.data().data(), r.data().size()), "abcdef");
  r.keep(std::span<const char>("g", 1));
  EXPECT_TRUE(r.overflowed());
  r.keep(std::span<const char>("", 0));
  EXPECT_TRUE(r.overflowed()) << "overflow is final until clear()";
  r.clear();
  EXPECT_FALSE(r.overflowed());
  EXPECT_TRUE(r.data().empty());
}

}  // namespace
}  // namespace gatehouse::upstream
