// upstream::fetch (issue 13): one exchange held whole in memory through a real Cluster, against
// a scripted loopback upstream.
#include "upstream/fetch.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "loopback.hpp"

namespace gatehouse::upstream {
namespace {

namespace net = io::net;

// A loopback upstream that answers each request (read up to the blank line and its
// Content-Length body) with the next scripted reply; "" closes the connection instead. After
// the script's replies on a connection, `close_after` closes it.
struct Script {
  std::deque<std::string> replies;
  std::vector<std::string> requests;
  bool close_after_each = false;
  int connections = 0;
};

net::awaitable<void> serve_conn(tcp::socket s, std::shared_ptr<Script> script) {
  std::string buf;
  char tmp[4096];
  for (;;) {
    auto end = buf.find("\r\n\r\n");
    while (end == std::string::npos) {
      auto [ec, n] = co_await s.async_read_some(net::buffer(tmp), io::nothrow);
      if (ec) {
        co_return;
      }
      buf.append(tmp, n);
      end = buf.find("\r\n\r\n");
    }
    std::size_t length = 0;
    auto cl = buf.find("Content-Length: ");
    if (cl != std::string::npos && cl < end) {
      length = std::stoul(buf.substr(cl + 16));
    }
    while (buf.size() < end + 4 + length) {
      auto [ec, n] = co_await s.async_read_some(net::buffer(tmp), io::nothrow);
      if (ec) {
        co_return;
      }
      buf.append(tmp, n);
    }
    script->requests.push_back(buf.substr(0, end + 4 + length));
    buf.erase(0, end + 4 + length);
    if (script->replies.empty()) {
      co_return;
    }
    std::string reply = script->replies.front();
    script->replies.pop_front();
    if (reply.empty()) {
      co_return;  // closed without an answer
    }
    co_await net::async_write(s, net::buffer(reply), io::nothrow);
    if (script->close_after_each) {
      co_return;
    }
  }
}

net::awaitable<void> serve(tcp::acceptor& a, std::shared_ptr<Script> script) {
  for (;;) {
    auto [ec, s] = co_await a.async_accept(io::nothrow);
    if (ec) {
      co_return;
    }
    ++script->connections;
    net::co_spawn(a.get_executor(), serve_conn(std::move(s), script), net::detached);
  }
}

class FetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config::Upstream u;
    u.name = "app";
    acceptor_.emplace(ioc_, tcp::endpoint(net::ip::address_v4::loopback(), 0));
    auto ep = acceptor_->local_endpoint();
    u.targets.push_back({"127.0.0.1", ep.port()});
    cfg_.upstreams = {u};
    cfg_.log.access = cfg_.log.error = cfg_.log.security = "off";
    health_ = std::make_unique<observability::Health>(cfg_, 1, "test");
    logs_ = std::make_unique<observability::Logs>(cfg_.log);
    cluster_ = std::make_unique<Cluster>(ioc_.get_executor(), deadlines_, 0, cfg_.upstreams[0],
                                         std::vector<tcp::endpoint>{ep}, stats_, *health_, *logs_);
    net::co_spawn(ioc_, serve(*acceptor_, script_), net::detached);
  }
  void TearDown() override {
    cluster_.reset();
    acceptor_->close();
    ioc_.restart();
    ioc_.poll();
  }

  FetchResult fetch(std::string_view body = "", std::size_t cap = 1024) {
    head_ = "POST /gen HTTP/1.1\r\nHost: app\r\nContent-Length: " + std::to_string(body.size()) +
            "\r\n\r\n";
    body_ = body;
    return run_until_done(upstream::fetch(*cluster_, {.head = head_,
                                                      .body = body_,
                                                      .request_id = "req-1",
                                                      .timeout = std::chrono::seconds(5),
                                                      .max_response = cap}));
  }

  // test::run waits for the io_context to run out of work, which the scripted upstream's
  // accept loop never does: this stops as soon as the fetch is done.
  FetchResult run_until_done(net::awaitable<FetchResult> aw) {
    std::optional<FetchResult> out;
    net::co_spawn(ioc_, std::move(aw),
                  [&](std::exception_ptr, FetchResult r) { out = std::move(r); });
    ioc_.restart();
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!out && std::chrono::steady_clock::now() < give_up) {
      ioc_.run_one_for(std::chrono::milliseconds(100));
    }
    if (!out) {
      std::fprintf(stderr, "FATAL: fetch did not complete within 20 s\n");
      std::abort();
    }
    return std::move(*out);
  }

  net::io_context ioc_;
  io::DeadlineList deadlines_;
  std::optional<tcp::acceptor> acceptor_;
  config::Config cfg_;
  observability::UpstreamStats stats_;
  std::unique_ptr<observability::Health> health_;
  std::unique_ptr<observability::Logs> logs_;
  std::unique_ptr<Cluster> cluster_;
  std::shared_ptr<Script> script_ = std::make_shared<Script>();
  std::string head_, body_;
};

TEST_F(FetchTest, LengthResponseWholeAndTheConnectionReused) {
  script_->replies = {
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-App: 1\r\n"
      "Content-Length: 11\r\n\r\n{\"ok\":true}",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"};
  auto r = fetch("{\"prompt\":1}");
  EXPECT_EQ(r.failure, FetchFailure::none) << r.detail;
  EXPECT_EQ(r.status, 201U);
  EXPECT_EQ(r.body, "{\"ok\":true}");
  ASSERT_GE(r.fields.size(), 2U);
  EXPECT_EQ(r.fields[0], (std::pair<std::string, std::string>{"Content-Type", "application/json"}));
  EXPECT_EQ(r.fields[1], (std::pair<std::string, std::string>{"X-App", "1"}));
  ASSERT_EQ(script_->requests.size(), 1U);
  EXPECT_TRUE(script_->requests[0].ends_with("\r\n\r\n{\"prompt\":1}"));
  auto again = fetch();
  EXPECT_EQ(again.body, "hi");
  EXPECT_EQ(script_->connections, 1) << "the first exchange's connection was pooled";
}

TEST_F(FetchTest, ChunkedAndCloseDelimitedBodiesAreDecoded) {
  script_->replies = {
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n "
      "world\r\n0\r\n\r\n"};
  auto r = fetch();
  EXPECT_EQ(r.failure, FetchFailure::none) << r.detail;
  EXPECT_EQ(r.body, "hello world");
  script_->close_after_each = true;
  script_->replies = {"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"};
  auto c = fetch();
  EXPECT_EQ(c.failure, FetchFailure::none) << c.detail;
  EXPECT_EQ(c.body, "until the end");
}

TEST_F(FetchTest, ABodyOverTheCapIsTooLarge) {
  script_->replies = {"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + std::string(2000, 'x'),
                      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" +
                          std::string(1024, 'y') + "\r\n400\r\n" + std::string(1024, 'y') +
                          "\r\n0\r\n\r\n"};
  EXPECT_EQ(fetch().failure, FetchFailure::too_large);
  EXPECT_EQ(fetch().failure, FetchFailure::too_large);
}

TEST_F(FetchTest, AConnectionClosedBeforeTheResponseIsReset) {
  script_->replies = {"", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"};
  auto r = fetch();
  EXPECT_EQ(r.failure, FetchFailure::reset);
  EXPECT_FALSE(r.address.empty());
  script_->replies = {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"};
  script_->close_after_each = true;
  EXPECT_EQ(fetch().failure, FetchFailure::reset) << "a body cut short is not a response";
}

TEST_F(FetchTest, AStalePooledConnectionIsRetriedOnceOnAFreshOne) {
  // The first reply keeps the connection alive, then the upstream closes it while idle.
  script_->replies = {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na", "",
                      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"};
  EXPECT_EQ(fetch().body, "a");
  auto r = fetch();
  EXPECT_EQ(r.failure, FetchFailure::none) << r.detail;
  EXPECT_EQ(r.body, "b");
  EXPECT_EQ(script_->connections, 2);
}

TEST_F(FetchTest, NoListenerIsConnectFailed) {
  acceptor_->close();
  auto r = fetch();
  EXPECT_EQ(r.failure, FetchFailure::connect_failed);
  EXPECT_STREQ(fetch_failure_name(r.failure), "connect_failed");
}

}  // namespace
}  // namespace gatehouse::upstream
