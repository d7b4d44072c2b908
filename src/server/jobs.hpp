#pragma once
// Async jobs, gateway side (issue 13). Only built when the file has a `jobs` section; a config
// without it costs one null pointer test per request (session.cpp) and nothing else.
//
// - JobsService (one per process, owned by the Gateway): the store (jobs/store.hpp: SQLite or
//   Redis, its own thread), the owner hasher, and the counters /metrics and /health/detailed read.
// - JobsRunner (one per worker, on the worker's thread): claims due jobs up to its slots
//   (ceil(concurrency / workers)) and runs each attempt through the worker's upstream Cluster
//   (upstream/fetch.hpp); hybrid requests and `Prefer: respond-async, wait=N` run their first
//   attempt here too.
// - serve_job_request (jobs_accept.cpp): the session's branch for async and hybrid routes.
// - The status endpoints are the jobs filter's (filters/jobs/filter.hpp); the admin endpoints
//   are admin_jobs (jobs_admin.cpp).
#include <array>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "filters/jobs/config.hpp"
#include "filters/jobs/policy.hpp"
#include "jobs/store.hpp"
#include "observability/logging.hpp"
#include "ratelimit/memory_store.hpp"
#include "server/exchange.hpp"

namespace gatehouse::server {

namespace gjobs = ::gatehouse::jobs;

class JobsService {
 public:
  // Opens the store (throws std::runtime_error naming jobs.store when it cannot).
  JobsService(const config::Config& cfg, observability::Logs& logs, unsigned workers);
  ~JobsService();

  gjobs::Store& store() { return *store_; }
  const observability::ClientIpHasher& owner_hasher() const { return owner_hasher_; }
  unsigned slots_per_worker() const { return slots_; }
  // jobs.poll_rate's counts, shared by the workers (sharded locks; status requests only).
  ratelimit::MemoryStore& poll_limits() { return poll_limits_; }
  observability::Logs& logs() { return logs_; }

  // Counters (relaxed; any thread).
  void count_accepted() { accepted_.fetch_add(1, std::memory_order_relaxed); }
  void count_refused(unsigned status) {
    (status == 413 ? refused_large_ : refused_store_).fetch_add(1, std::memory_order_relaxed);
  }
  void count_attempt() { attempts_.fetch_add(1, std::memory_order_relaxed); }
  void count_retry() { retries_.fetch_add(1, std::memory_order_relaxed); }
  // A job reached a final state; `latency_ms`: from its creation.
  void count_final(gjobs::State s, std::int64_t latency_ms);

  void render_metrics(std::string& out) const;
  nlohmann::json health_component() const;

 private:
  static constexpr std::array<double, 10> kLatencyBounds{0.1, 0.5, 1,  2.5, 5,
                                                         10,  30,  60, 300, 3600};
  observability::Logs& logs_;
  std::unique_ptr<gjobs::Store> store_;
  observability::ClientIpHasher owner_hasher_;
  unsigned slots_;
  // Keys are (client address, credential): bounded, the least recently seen evicted.
  static constexpr std::size_t kPollKeys = 65536;
  ratelimit::MemoryStore poll_limits_{kPollKeys};
  std::atomic<std::uint64_t> accepted_{0}, refused_large_{0}, refused_store_{0}, attempts_{0},
      retries_{0}, succeeded_{0}, failed_{0}, dead_{0};
  std::array<std::atomic<std::uint64_t>, kLatencyBounds.size() + 1> latency_buckets_{};
  std::atomic<std::uint64_t> latency_sum_ms_{0};
};

// What the accepting request waits for while a first attempt runs here (hybrid, wait=N).
struct AttemptWaiter {
  explicit AttemptWaiter(const net::any_io_executor& ex) : timer(ex) {}
  net::steady_timer timer;
  bool done = false;
  gjobs::Job job;  // as recorded after the attempt (state, response)
};

class JobsRunner {
 public:
  JobsRunner(Worker& w, JobsService& service);
  void start();  // the claim loop
  // No attempt is running and the claim loop has ended (drain).
  bool idle() const { return state_->running == 0 && !state_->looping; }
  // Runs one attempt of a job this instance holds (claimed, or enqueued with run_here) and
  // records its outcome; `waiter` (may be null) is told when it is recorded.
  void run(gjobs::Job job, std::shared_ptr<AttemptWaiter> waiter);

 private:
  net::awaitable<void> loop();
  net::awaitable<void> attempt(gjobs::Job job, std::shared_ptr<AttemptWaiter> waiter);
  net::awaitable<void> keep_lease(std::string id, std::shared_ptr<net::steady_timer> timer,
                                  std::shared_ptr<bool> done, std::chrono::milliseconds lease);

  Worker& w_;
  JobsService& service_;
  // What the runner's coroutines touch as they end, shared with their frames: after a forced
  // stop those frames are destroyed with the io_context, after the runner (a Worker member
  // declared after `ioc`) is gone.
  struct State {
    explicit State(net::io_context& ioc) : slot_free(ioc) {}
    std::size_t running = 0;
    bool looping = false;
    net::steady_timer slot_free;  // the claim loop waits on it while every slot is busy
  };
  std::shared_ptr<State> state_;
};

// The lease a claim (or a run_here enqueue) takes for a job: long enough for the upstream's
// timeout, renewed while a call outlives a third of it.
std::chrono::milliseconds job_lease(const config::Upstream& u);

// The session's branch for a request on an async or hybrid route. Returns whether the client
// connection may carry another request.
net::awaitable<bool> serve_job_request(Worker& w, ClientConn& c, FilterChain& chain,
                                       RequestParser& parser, Context& x);

// Now, in milliseconds since the Unix epoch (what jobs record).
gjobs::Millis now_ms();

}  // namespace gatehouse::server
