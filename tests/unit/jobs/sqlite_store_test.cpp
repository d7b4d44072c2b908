// SQLite specifics: urls, open errors, durability across kill -9, restart semantics. The shared
// contract runs on an in-memory database and on a file.
#include "jobs/sqlite_store.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "jobs/store_test_util.hpp"

namespace gatehouse::jobs::test {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "gh-jobs-XXXXXX").string();
  char* made = ::mkdtemp(tmpl.data());
  EXPECT_NE(made, nullptr);
  return fs::path(tmpl);
}

// The contract's file databases, removed when the binary exits (each test's store is gone by then).
struct TempDir {
  fs::path path = temp_dir();
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::unique_ptr<Store> open_file_store(StoreOptions o) {
  static TempDir dir;
  o.url = "sqlite://" + (dir.path / (random_id() + ".db")).string();
  return std::make_unique<SqliteStore>(o);
}

INSTANTIATE_TEST_SUITE_P(Sqlite, StoreContract,
                         ::testing::Values(Backend{"memory",
                                                   [](StoreOptions o) -> std::unique_ptr<Store> {
                                                     o.url = "sqlite://:memory:";
                                                     return std::make_unique<SqliteStore>(o);
                                                   }},
                                           Backend{"file", open_file_store}),
                         backend_name);

TEST(SqliteUrl, Paths) {
  EXPECT_EQ(sqlite_path("sqlite://:memory:"), ":memory:");
  EXPECT_EQ(sqlite_path("sqlite:///var/lib/gatehouse/jobs.db"), "/var/lib/gatehouse/jobs.db");
  EXPECT_EQ(sqlite_path("sqlite://data/jobs.db"), "data/jobs.db");
  EXPECT_EQ(sqlite_path("sqlite://"), std::nullopt);
  EXPECT_EQ(sqlite_path("redis://127.0.0.1:6379/0"), std::nullopt);
  EXPECT_EQ(sqlite_path("/var/lib/jobs.db"), std::nullopt);
}

TEST(SqliteStore, OpenErrorsNameTheUrl) {
  for (std::string url : {"sqlite:///nonexistent-dir-gh/sub/jobs.db",
                          "sqlite:///etc/passwd/jobs.db", "sqlite://", "sqlite:///proc/version"}) {
    StoreOptions o;
    o.url = url;
    try {
      SqliteStore s(o);
      ADD_FAILURE() << url << " opened";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(url), std::string::npos) << e.what();
    }
  }
}

TEST(SqliteStore, OpenStoreChoosesByScheme) {
  StoreOptions o;
  o.url = "sqlite://:memory:";
  auto s = open_store(o);
  EXPECT_STREQ(s->kind(), "sqlite");
  o.url = "postgres://db/jobs";
  EXPECT_THROW(open_store(o), std::runtime_error);
}

TEST(SqliteStore, TheFileIsInWalMode) {
  fs::path dir = temp_dir();
  StoreOptions o;
  o.url = "sqlite://" + (dir / "jobs.db").string();
  {
    SqliteStore s(o);
    ASSERT_EQ(enqueue(s, make_job()).status, StoreStatus::ok);
    EXPECT_TRUE(fs::exists(dir / "jobs.db-wal"));
  }
  fs::remove_all(dir);
}

TEST(SqliteStore, RelativePathsAreRelativeToTheWorkingDirectory) {
  fs::path dir = temp_dir();
  fs::path cwd = fs::current_path();
  fs::current_path(dir);
  {
    StoreOptions o;
    o.url = "sqlite://sub.db";
    SqliteStore s(o);
    ASSERT_EQ(enqueue(s, make_job()).status, StoreStatus::ok);
  }
  fs::current_path(cwd);
  EXPECT_TRUE(fs::exists(dir / "sub.db"));
  fs::remove_all(dir);
}

// The durability contract: once enqueue's callback has fired, the job survives kill -9 of the
// process at that very moment, and the next start finds it queued.
TEST(SqliteStore, AnAcceptedJobSurvivesKill9) {
  fs::path dir = temp_dir();
  std::string url = "sqlite://" + (dir / "jobs.db").string();
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Job j = make_job("durable body");
  Job running = make_job("in flight");
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(fds[0]);
    StoreOptions o;
    o.url = url;
    SqliteStore s(o);
    s.enqueue(running, true, std::chrono::milliseconds(200), [](EnqueueResult) {});
    s.enqueue(j, false, 30s, [fd = fds[1]](EnqueueResult r) {
      char c = r.status == StoreStatus::ok ? 'y' : 'n';
      // Tell the parent from the callback itself, then wait to be killed.
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

  StoreOptions o;
  o.url = url;
  SqliteStore s(o);
  auto g = get(s, j.id);
  ASSERT_EQ(g.status, StoreStatus::ok);
  EXPECT_EQ(g.job->state, State::queued);
  EXPECT_EQ(g.job->request.body, "durable body");
  EXPECT_EQ(g.job->request.headers, j.request.headers);
  EXPECT_TRUE(eventually([&] { return s.counts().queued == 1 && s.counts().running == 1; }));
  // The job that was in flight at the crash runs again once its lease is over.
  std::set<std::string> ids;
  for (int i = 0; i < 10 && ids.size() < 2; ++i) {
    for (auto& got : claim(s, 10, 30s, 2s)) {
      ids.insert(got.id);
    }
  }
  EXPECT_EQ(ids, (std::set<std::string>{j.id, running.id}));
  fs::remove_all(dir);
}

// A `--takeover` runs two processes on one file for a while: the one leaving gives back only the
// attempts it ran, never those its successor is running.
TEST(SqliteStore, ReleaseGivesBackThisStoresJobsRecoverEveryone) {
  fs::path dir = temp_dir();
  StoreOptions o;
  o.url = "sqlite://" + (dir / "jobs.db").string();
  auto mine = make_job();
  auto theirs = make_job();
  {
    SqliteStore old_process(o);
    SqliteStore successor(o);
    ASSERT_EQ(enqueue(old_process, mine, true).status, StoreStatus::ok);
    ASSERT_EQ(enqueue(successor, theirs, true).status, StoreStatus::ok);
    ASSERT_TRUE(release_running(old_process));
    EXPECT_EQ(get(successor, mine.id).job->state, State::queued);
    EXPECT_EQ(get(successor, theirs.id).job->state, State::running);
  }
  {
    // The next start without a takeover: whatever is still running was cut off.
    SqliteStore restarted(o);
    auto p = std::make_shared<std::promise<bool>>();
    restarted.recover_running([p] { p->set_value(true); });
    ASSERT_TRUE(await(p));
    EXPECT_EQ(get(restarted, mine.id).job->state, State::queued);
    EXPECT_EQ(get(restarted, theirs.id).job->state, State::queued);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace gatehouse::jobs::test
