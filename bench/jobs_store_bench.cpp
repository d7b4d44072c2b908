// Accepted jobs per second (issue 13): enqueue with the store's durability promise, i.e. the
// callback the gateway waits for before its 202 (SQLite: committed with synchronous=FULL; Redis:
// applied by the server). Arg 0 is the number of accepts in flight at once (clients whose 202 is
// pending): 1 shows one commit per job, larger windows show the group commit at work. The body is
// a 200-byte JSON prompt with five header lines, as the LLM apps send.
// SQLite writes to a file under $TMPDIR (use a real disk, not tmpfs, for fsync to cost what it
// costs); Redis starts its own redis-server (no persistence) on a free port.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "jobs/store.hpp"

namespace {

using namespace gatehouse::jobs;
using namespace std::chrono_literals;

std::string random_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 32; ++i) {
    id.push_back(hex[rng() % 16]);
  }
  return id;
}

Job make_job() {
  Job j;
  j.id = random_id();
  j.owner = "6f1ed002ab5595859014ebf0951522d9";
  j.route = "generate";
  j.request_id = j.id.substr(0, 16);
  j.client_ip = "203.0.113.7";
  j.request_digest = "9a0364b9e99bb480dd25e1f0284c8555";
  j.request.method = "POST";
  j.request.target = "/api/generate";
  j.request.headers = {{"Content-Type", "application/json"},
                       {"Accept", "application/json"},
                       {"User-Agent", "python-requests/2.31.0"},
                       {"Authorization", "Bearer sk-0123456789abcdef0123456789abcdef"},
                       {"X-Client", "story-app"}};
  j.request.body = "{\"prompt\":\"" + std::string(170, 'x') + "\",\"n\":1}";
  j.max_attempts = 5;
  return j;
}

// Keeps `window` enqueues in flight until `n` are accepted.
void accept_jobs(Store& store, std::size_t n, std::size_t window, std::size_t& failed) {
  std::mutex m;
  std::condition_variable cv;
  std::size_t in_flight = 0, done = 0;
  for (std::size_t i = 0; i < n; ++i) {
    {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return in_flight < window; });
      ++in_flight;
    }
    store.enqueue(make_job(), false, 30s, [&](EnqueueResult r) {
      std::lock_guard lock(m);
      failed += r.status == StoreStatus::ok ? 0 : 1;
      --in_flight;
      ++done;
      cv.notify_one();
    });
  }
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return done == n; });
}

void run(benchmark::State& state, Store& store) {
  auto window = static_cast<std::size_t>(state.range(0));
  std::size_t per_iteration = std::max<std::size_t>(window * 4, 256);
  std::size_t failed = 0;
  for (auto _ : state) {
    accept_jobs(store, per_iteration, window, failed);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * per_iteration));
  if (failed != 0) {
    state.SkipWithError("some enqueues failed");
  }
}

// A job's whole life in the store with 64 accepts in flight: enqueue, claimed in batches of 64
// (as a runner does), finished with a 1 KiB response. Items: jobs.
void lifecycle(benchmark::State& state, Store& store) {
  constexpr std::size_t kJobs = 1024, kWindow = 64;
  std::size_t failed = 0;
  for (auto _ : state) {
    accept_jobs(store, kJobs, kWindow, failed);
    std::size_t finished = 0;
    while (finished < kJobs) {
      std::promise<std::vector<Job>> p;
      auto f = p.get_future();
      store.claim(kWindow, 60s, 0ms, [&p](std::vector<Job> j) { p.set_value(std::move(j)); });
      auto jobs = f.get();
      if (jobs.empty()) {
        state.SkipWithError("nothing to claim");
        return;
      }
      std::mutex m;
      std::condition_variable cv;
      std::size_t left = jobs.size();
      for (auto& j : jobs) {
        store.finish(
            j.id, State::succeeded,
            StoredResponse{200, {{"Content-Type", "application/json"}}, std::string(1024, 'r')}, {},
            [&](StoreStatus st) {
              std::lock_guard lock(m);
              failed += st == StoreStatus::ok ? 0 : 1;
              --left;
              cv.notify_one();
            });
      }
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return left == 0; });
      finished += jobs.size();
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kJobs));
  if (failed != 0) {
    state.SkipWithError("some calls failed");
  }
}

using Body = void (*)(benchmark::State&, Store&);

void with_sqlite(benchmark::State& state, Body body) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("gh-jobs-bench-" + random_id().substr(0, 8));
  fs::create_directories(dir);
  {
    StoreOptions o;
    o.url = "sqlite://" + (dir / "jobs.db").string();
    o.max_queued = 100'000'000;
    auto store = open_store(o);
    body(state, *store);
  }
  fs::remove_all(dir);
}
void BM_SqliteAccept(benchmark::State& state) {
  with_sqlite(state, run);
}
void BM_SqliteLifecycle(benchmark::State& state) {
  with_sqlite(state, lifecycle);
}
BENCHMARK(BM_SqliteAccept)->Arg(1)->Arg(64)->Arg(1024)->UseRealTime();
BENCHMARK(BM_SqliteLifecycle)->UseRealTime();

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

void with_redis(benchmark::State& state, Body body) {
  int port = free_port();
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    std::string p = std::to_string(port);
    ::execlp("redis-server", "redis-server", "--port", p.c_str(), "--bind", "127.0.0.1", "--save",
             "", "--appendonly", "no", "--dir", "/tmp", nullptr);
    ::_exit(127);
  }
  bool up = false;
  for (int i = 0; i < 200 && !up; ++i) {
    std::this_thread::sleep_for(25ms);
    redisContext* c = redisConnect("127.0.0.1", port);
    up = c != nullptr && c->err == 0;
    redisFree(c);
  }
  if (!up) {
    state.SkipWithError("redis-server did not start");
  } else {
    StoreOptions o;
    o.url = "redis://127.0.0.1:" + std::to_string(port) + "/0";
    o.instance = "bench";
    o.max_queued = 100'000'000;
    auto store = open_store(o);
    body(state, *store);
  }
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
}
void BM_RedisAccept(benchmark::State& state) {
  with_redis(state, run);
}
void BM_RedisLifecycle(benchmark::State& state) {
  with_redis(state, lifecycle);
}
BENCHMARK(BM_RedisAccept)->Arg(1)->Arg(64)->Arg(1024)->UseRealTime();
BENCHMARK(BM_RedisLifecycle)->UseRealTime();

}  // namespace
