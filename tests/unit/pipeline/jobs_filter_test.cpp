// The jobs status endpoints (filters/jobs/filter.hpp, issue 13) against an in-memory store: which
// paths they take, who may read a job, what a status, an unfinished and a finished result answer.
#include "filters/jobs/filter.hpp"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "filters/jobs/config.hpp"
#include "filters/registry.hpp"

namespace gatehouse::filters::jobs {
namespace {

namespace gj = ::gatehouse::jobs;
namespace net = pipeline::net;

// Only get() is used by the filter; the rest answers as an empty store would.
class FakeStore final : public gj::Store {
 public:
  std::map<std::string, gj::Job> jobs;
  gj::StoreStatus status = gj::StoreStatus::ok;
  int gets = 0;

  void enqueue(gj::Job, bool, std::chrono::milliseconds,
               std::function<void(gj::EnqueueResult)> done) override {
    done({});
  }
  void get(std::string id,
           std::function<void(gj::StoreStatus, std::optional<gj::Job>)> done) override {
    ++gets;
    auto it = jobs.find(id);
    if (status != gj::StoreStatus::ok) {
      done(status, std::nullopt);
    } else if (it == jobs.end()) {
      done(gj::StoreStatus::not_found, std::nullopt);
    } else {
      done(gj::StoreStatus::ok, it->second);
    }
  }
  void claim(std::size_t, std::chrono::milliseconds, std::chrono::milliseconds,
             std::function<void(std::vector<gj::Job>)> done) override {
    done({});
  }
  void renew(std::string, std::chrono::milliseconds) override {}
  void finish(std::string, gj::State, std::optional<gj::StoredResponse>, std::string,
              std::function<void(gj::StoreStatus)> done) override {
    done(gj::StoreStatus::ok);
  }
  void retry_later(std::string, gj::Millis, std::string,
                   std::function<void(gj::StoreStatus)> done) override {
    done(gj::StoreStatus::ok);
  }
  void list(gj::State, std::size_t,
            std::function<void(gj::StoreStatus, std::vector<gj::Job>)> done) override {
    done(gj::StoreStatus::ok, {});
  }
  void requeue(std::string, std::function<void(gj::StoreStatus)> done) override {
    done(gj::StoreStatus::ok);
  }
  void remove(std::string, std::function<void(gj::StoreStatus)> done) override {
    done(gj::StoreStatus::ok);
  }
  void release_running(std::function<void()> done) override { done(); }
  gj::Counts counts() const override { return {}; }
  gj::StoreHealth health() const override { return {}; }
  const char* kind() const override { return "fake"; }
};

constexpr const char* kId = "0123456789abcdef0123456789abcdef";

class JobsFilterTest : public ::testing::Test {
 protected:
  JobsFilterTest()
      : cfg_(config::load_config_string(
            "upstreams: {app: {targets: ['127.0.0.1:1']}}\njobs: {path: /tasks}\n", "t.yaml",
            filters::config_sections())),
        hasher_(true, "test-key") {
    gj::Job j;
    j.id = kId;
    j.owner = hasher_("Bearer alice");
    j.state = gj::State::running;
    j.attempts = 1;
    j.max_attempts = 3;
    store_.jobs[kId] = j;
  }

  struct Services {
    gj::Store* job_store;
    const observability::ClientIpHasher* job_owner_hasher;
    ratelimit::MemoryStore* job_poll_limits;
  };

  // Runs the filter on `method target` with an Authorization value (none when empty): the reply,
  // or status 0 when it let the request through.
  pipeline::LocalReply ask(std::string method, std::string target, std::string auth = {},
                           bool with_store = true) {
    std::string head = method + " " + target + " HTTP/1.1\r\nHost: t\r\n";
    if (!auth.empty()) {
      head += "Authorization: " + auth + "\r\n";
    }
    head += "\r\n";
    parser_.emplace();
    ::gatehouse::io::error_code ec;
    parser_->put(net::buffer(head), ec);
    pipeline::Context ctx(cfg_, pipeline::Clock::now());
    ctx.parser = &*parser_;
    ctx.request = &parser_->get();
    ctx.target = target;
    ctx.path = std::string_view(target).substr(0, target.find('?'));
    ctx.head_request = method == "HEAD";
    Services s{with_store ? &store_ : nullptr, &hasher_, &poll_limits_};
    JobsFilter f(s);
    auto next = f.decode_headers(ctx);
    if (next == pipeline::Next::Suspend) {
      net::io_context ioc;
      std::optional<pipeline::Next> out;
      net::co_spawn(ioc, f.resume(ctx), [&](std::exception_ptr, pipeline::Next n) { out = n; });
      ioc.run();
      next = out.value();
    }
    if (next == pipeline::Next::Continue) {
      return {};
    }
    // Copy what the reply points into before the context goes.
    pipeline::LocalReply r = ctx.reply;
    if (r.stored_owner) {
      lines_ = std::string(r.stored_lines);
      body_ = std::string(r.stored_body);
    }
    return r;
  }

  config::Config cfg_;
  observability::ClientIpHasher hasher_;
  FakeStore store_;
  ratelimit::MemoryStore poll_limits_{1024};
  std::optional<pipeline::RequestParser> parser_;
  std::string lines_, body_;
};

TEST_F(JobsFilterTest, OtherPathsAndNoStorePassThrough) {
  EXPECT_EQ(ask("GET", "/jobs/" + std::string(kId)).status, 0U);  // jobs.path is /tasks
  EXPECT_EQ(ask("GET", "/tasks").status, 0U);
  EXPECT_EQ(ask("GET", "/tasksX/" + std::string(kId)).status, 0U);
  EXPECT_EQ(ask("GET", "/tasks/" + std::string(kId), "Bearer alice", false).status, 0U);
  EXPECT_EQ(store_.gets, 0);
}

TEST_F(JobsFilterTest, TheOwnerReadsTheStatusOthersGet404) {
  auto r = ask("GET", "/tasks/" + std::string(kId), "Bearer alice");
  EXPECT_EQ(r.status, 200U);
  EXPECT_NE(r.body.find(R"("status":"running")"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find(R"("status_url":"/tasks/)"), std::string::npos) << r.body;
  EXPECT_NE(r.headers.find("Retry-After: "), std::string::npos);
  for (std::string who : {"Bearer mallory", "", "bearer alice"}) {
    auto other = ask("GET", "/tasks/" + std::string(kId), who);
    EXPECT_EQ(other.status, 404U) << who;
    EXPECT_NE(other.body.find("job_not_found"), std::string::npos);
  }
  // An id that does not exist answers exactly as another owner's job does.
  auto missing = ask("GET", "/tasks/ffffffffffffffffffffffffffffffff", "Bearer alice");
  EXPECT_EQ(missing.status, 404U);
}

TEST_F(JobsFilterTest, ResultBeforeAndAfterTheJobEnds) {
  auto early = ask("GET", "/tasks/" + std::string(kId) + "/result", "Bearer alice");
  EXPECT_EQ(early.status, 409U);
  EXPECT_NE(early.body.find("job_not_finished"), std::string::npos);
  auto& j = store_.jobs[kId];
  j.state = gj::State::succeeded;
  j.finished_at = 1;
  j.response = gj::StoredResponse{201, {{"Content-Type", "text/plain"}, {"Date", "x"}}, "made"};
  auto r = ask("GET", "/tasks/" + std::string(kId) + "/result", "Bearer alice");
  EXPECT_EQ(r.status, 201U);
  EXPECT_EQ(lines_, "Content-Type: text/plain\r\n");  // gatehouse writes its own Date
  EXPECT_EQ(body_, "made");
  auto status = ask("GET", "/tasks/" + std::string(kId), "Bearer alice");
  EXPECT_EQ(status.headers.find("Retry-After"), std::string::npos);
  j.state = gj::State::dead;
  j.response.reset();
  EXPECT_EQ(ask("GET", "/tasks/" + std::string(kId) + "/result", "Bearer alice").status, 404U);
}

TEST_F(JobsFilterTest, MethodsIdsAndAnUnavailableStore) {
  auto del = ask("DELETE", "/tasks/" + std::string(kId), "Bearer alice");
  EXPECT_EQ(del.status, 405U);
  EXPECT_NE(del.headers.find("Allow: GET, HEAD"), std::string::npos);
  EXPECT_EQ(ask("HEAD", "/tasks/" + std::string(kId), "Bearer alice").status, 200U);
  EXPECT_EQ(ask("GET", "/tasks/0123456789ABCDEF0123456789ABCDEF", "Bearer alice").status, 404U);
  EXPECT_EQ(ask("GET", "/tasks/x", "Bearer alice").status, 404U);
  const int gets = store_.gets;
  EXPECT_EQ(gets, 1) << "malformed ids never reach the store";
  store_.status = gj::StoreStatus::unavailable;
  auto r = ask("GET", "/tasks/" + std::string(kId), "Bearer alice");
  EXPECT_EQ(r.status, 503U);
  EXPECT_NE(r.headers.find("Retry-After: "), std::string::npos);
}

}  // namespace
}  // namespace gatehouse::filters::jobs

namespace gatehouse::filters::jobs {
namespace {

// jobs.poll_rate: the status path is served before routing, so this is the only limit polling
// meets. Counted per client address and credential, before the store is read (unknown ids too).
TEST_F(JobsFilterTest, PollingBeyondPollRateIs429WithRetryAfter) {
  cfg_ = config::load_config_string(
      "upstreams: {app: {targets: ['127.0.0.1:1']}}\njobs: {path: /tasks, poll_rate: 2/hour}\n",
      "t.yaml", filters::config_sections());
  const std::string status = std::string("/tasks/") + kId;
  EXPECT_EQ(ask("GET", status, "Bearer alice").status, 200U);
  EXPECT_EQ(ask("GET", "/tasks/nope", "Bearer alice").status, 404U);
  auto refused = ask("GET", status, "Bearer alice");
  EXPECT_EQ(refused.status, 429U);
  EXPECT_NE(refused.headers.find("Retry-After: "), std::string::npos) << refused.headers;
  EXPECT_EQ(refused.headers.find("Retry-After: 0"), std::string::npos) << refused.headers;
  EXPECT_NE(refused.body.find("job_poll_rate_limited"), std::string::npos);
  // Another credential has its own count.
  EXPECT_EQ(ask("GET", status, "Bearer bob").status, 404U);
  // Off: never counted.
  cfg_ = config::load_config_string(
      "upstreams: {app: {targets: ['127.0.0.1:1']}}\njobs: {path: /tasks, poll_rate: off}\n",
      "t.yaml", filters::config_sections());
  EXPECT_EQ(ask("GET", status, "Bearer alice").status, 200U);
}

}  // namespace
}  // namespace gatehouse::filters::jobs
