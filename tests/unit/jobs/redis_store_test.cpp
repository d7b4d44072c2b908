// Redis specifics: the contract against a real redis-server this binary starts, two instances
// sharing one queue (a dead one's job taken over after the lease), Redis going away and coming
// back, open errors.
#include "jobs/redis_store.hpp"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobs/store_test_util.hpp"

namespace gatehouse::jobs::test {
namespace {

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

// A redis-server child process on `port`; the constructor waits until it answers.
class RedisProcess {
 public:
  explicit RedisProcess(int port) : port_(port) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      std::string p = std::to_string(port);
      ::execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save",
               "", "--appendonly", "no", "--dir", "/tmp", nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 200; ++i) {
      redisContext* c = redisConnect("127.0.0.1", port);
      bool up = c != nullptr && c->err == 0;
      redisFree(c);
      if (up) {
        return;
      }
      std::this_thread::sleep_for(25ms);
    }
    ADD_FAILURE() << "redis-server did not start on port " << port;
  }
  ~RedisProcess() { kill(SIGTERM); }
  void kill(int sig) {
    if (pid_ > 0) {
      ::kill(pid_, sig);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }

 private:
  int port_;
  pid_t pid_ = -1;
};

// One server for the contract and the two-instance tests; each test starts from an empty db.
RedisProcess& shared_server() {
  static RedisProcess server(free_port());
  return server;
}

void flush(int port) {
  redisContext* c = redisConnect("127.0.0.1", port);
  ASSERT_TRUE(c != nullptr && c->err == 0);
  freeReplyObject(redisCommand(c, "FLUSHALL"));
  redisFree(c);
}

std::unique_ptr<Store> open_redis(StoreOptions o) {
  flush(shared_server().port());
  o.url = shared_server().url();
  return std::make_unique<RedisStore>(o);
}

INSTANTIATE_TEST_SUITE_P(Redis, StoreContract, ::testing::Values(Backend{"server", open_redis}),
                         backend_name);

std::unique_ptr<RedisStore> instance(const std::string& name) {
  StoreOptions o;
  o.url = shared_server().url();
  o.instance = name;
  return std::make_unique<RedisStore>(o);
}

TEST(RedisStore, ASecondInstanceTakesOverADeadOnesJob) {
  flush(shared_server().port());
  auto a = instance("instance-a");
  auto b = instance("instance-b");
  Job j = make_job();
  ASSERT_EQ(enqueue(*a, j).status, StoreStatus::ok);
  // a claims and "dies": never renews, never finishes.
  auto held = claim(*a, 1, 300ms);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_TRUE(claim(*b, 1, 300ms).empty());  // not before the lease
  auto taken = claim(*b, 1, 300ms, 10s);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].id, j.id);
  EXPECT_EQ(taken[0].attempts, 2);
  ASSERT_EQ(finish(*b, j.id, State::succeeded, StoredResponse{200, {}, "done"}), StoreStatus::ok);
  auto g = get(*a, j.id);
  EXPECT_EQ(g.job->state, State::succeeded);
  EXPECT_EQ(g.job->response->body, "done");
  // Nothing is left pending for anyone.
  EXPECT_TRUE(claim(*a, 10, 100ms, 400ms).empty());
}

TEST(RedisStore, AJobRunWhereAcceptedIsTakenOverToo) {
  flush(shared_server().port());
  auto a = instance("instance-a");
  auto b = instance("instance-b");
  Job j = make_job();
  ASSERT_EQ(enqueue(*a, j, /*run_here=*/true, 300ms).status, StoreStatus::ok);
  auto taken = claim(*b, 1, 30s, 10s);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].id, j.id);
  EXPECT_EQ(taken[0].attempts, 2);
}

TEST(RedisStore, InstancesShareTheQueueWithoutDuplicates) {
  flush(shared_server().port());
  auto a = instance("instance-a");
  auto b = instance("instance-b");
  std::set<std::string> ids;
  for (int i = 0; i < 40; ++i) {
    Job j = make_job();
    ids.insert(j.id);
    ASSERT_EQ(enqueue(*(i % 2 == 0 ? a : b), j).status, StoreStatus::ok);
  }
  std::set<std::string> seen;
  std::size_t total = 0;
  for (int round = 0; round < 20 && total < ids.size(); ++round) {
    for (auto* s : {a.get(), b.get()}) {
      for (auto& j : claim(*s, 7, 30s)) {
        seen.insert(j.id);
        ++total;
      }
    }
  }
  EXPECT_EQ(total, ids.size());
  EXPECT_EQ(seen, ids);
}

TEST(RedisStore, ReleaseRunningReleasesOnlyThisInstancesJobs) {
  flush(shared_server().port());
  auto a = instance("instance-a");
  auto b = instance("instance-b");
  Job ja = make_job(), jb = make_job();
  ASSERT_EQ(enqueue(*a, ja).status, StoreStatus::ok);
  ASSERT_EQ(claim(*a, 1, 60s).size(), 1u);
  ASSERT_EQ(enqueue(*b, jb).status, StoreStatus::ok);
  ASSERT_EQ(claim(*b, 1, 60s).size(), 1u);
  ASSERT_TRUE(release_running(*a));
  EXPECT_EQ(get(*a, ja.id).job->state, State::queued);
  EXPECT_EQ(get(*a, jb.id).job->state, State::running);
  auto again = claim(*b, 5, 60s);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, ja.id);
}

// Once enqueue's callback has fired the job is in Redis: the process killed right then loses
// nothing, and another instance runs it.
TEST(RedisStore, AnAcceptedJobSurvivesKill9OfItsInstance) {
  flush(shared_server().port());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Job j = make_job("durable body");
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    StoreOptions o;
    o.url = shared_server().url();
    o.instance = "doomed";
    RedisStore s(o);
    s.enqueue(j, false, 30s, [fd = fds[1]](EnqueueResult r) {
      char c = r.status == StoreStatus::ok ? 'y' : 'n';
      (void)!::write(fd, &c, 1);
      ::pause();
    });
    ::pause();
    ::_exit(0);
  }
  ::close(fds[1]);
  char c = 0;
  ASSERT_EQ(::read(fds[0], &c, 1), 1);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  ::close(fds[0]);
  ASSERT_EQ(c, 'y');
  auto other = instance("survivor");
  auto got = claim(*other, 1, 30s);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].id, j.id);
  EXPECT_EQ(got[0].request.body, "durable body");
}

TEST(RedisStore, UnavailableRedisIsNeverAnAccept) {
  RedisProcess own(free_port());
  StoreOptions o;
  o.url = own.url();
  RedisStore s(o);
  ASSERT_EQ(enqueue(s, make_job()).status, StoreStatus::ok);
  own.kill(SIGKILL);
  Job lost = make_job();
  EXPECT_EQ(enqueue(s, lost).status, StoreStatus::unavailable);
  EXPECT_EQ(get(s, lost.id).status, StoreStatus::unavailable);
  EXPECT_EQ(finish(s, lost.id, State::dead), StoreStatus::unavailable);
  EXPECT_TRUE(claim(s, 1, 30s, 200ms).empty());
  auto h = s.health();
  EXPECT_FALSE(h.ok);
  EXPECT_NE(h.detail.find("redis"), std::string::npos) << h.detail;
  // Back on the same port (empty): the store reconnects by itself.
  RedisProcess again(own.port());
  EXPECT_TRUE(eventually([&] { return enqueue(s, make_job()).status == StoreStatus::ok; }));
  EXPECT_TRUE(eventually([&] { return s.health().ok; }));
}

TEST(RedisStore, TheUrlsDatabaseIsUsed) {
  flush(shared_server().port());
  StoreOptions o;
  o.url = "redis://127.0.0.1:" + std::to_string(shared_server().port()) + "/3";
  RedisStore s(o);
  Job j = make_job();
  ASSERT_EQ(enqueue(s, j).status, StoreStatus::ok);
  redisContext* c = redisConnect("127.0.0.1", shared_server().port());
  ASSERT_TRUE(c != nullptr && c->err == 0);
  auto exists = [&](int db) {
    freeReplyObject(redisCommand(c, "SELECT %d", db));
    auto* r =
        static_cast<redisReply*>(redisCommand(c, "EXISTS gatehouse:{jobs}:job:%s", j.id.c_str()));
    long long n = r != nullptr && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return n;
  };
  EXPECT_EQ(exists(3), 1);
  EXPECT_EQ(exists(0), 0);
  redisFree(c);
}

TEST(RedisStore, OpenErrorsNameTheUrl) {
  for (std::string url : {"redis://127.0.0.1:" + std::to_string(free_port()) + "/0",
                          std::string("redis://127.0.0.1:notaport/0")}) {
    StoreOptions o;
    o.url = url;
    try {
      RedisStore s(o);
      ADD_FAILURE() << url << " opened";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("redis://127.0.0.1:"), std::string::npos) << e.what();
    }
  }
  StoreOptions o;
  o.url = shared_server().url();
  EXPECT_STREQ(open_store(o)->kind(), "redis");
}

}  // namespace
}  // namespace gatehouse::jobs::test
