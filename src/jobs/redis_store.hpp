#pragma once
// The shared job store (issue 13): jobs in Redis, so several gatehouse instances share one queue
// and a dead instance's jobs are taken over. A stream with a consumer group carries the job ids
// (one consumer per instance, StoreOptions::instance); each job is a hash; every state change is
// one Lua script (redis_scripts.hpp), so the hash, the stream entry, the state indexes and the
// idempotency key change together. Claims read new entries (XREADGROUP) and take over entries a
// consumer left pending longer than the lease (XAUTOCLAIM): at-least-once delivery.
//
// Threading: one thread of the store's own with one hiredis blocking connection (never a
// worker's event loop). It drains the call queue, pipelines the batch (one round trip), and runs
// each callback when its reply arrives, i.e. once Redis has applied the change. When Redis is
// unreachable every call is answered `unavailable` (reconnecting at most every 500 ms) and
// health() says why. Long-polling claims are woken at once by an enqueue on this instance and
// poll Redis every 100 ms for work other instances queued (and for backoffs coming due).
// Not for Redis Cluster (the scripts build their keys; all of them share one hash tag).
#include <memory>

#include "jobs/store.hpp"

namespace gatehouse::jobs {

class RedisStore final : public Store {
 public:
  // Connects (blocking: start-up only), loads the scripts and creates the consumer group. Throws
  // std::runtime_error naming the url (password redacted) when Redis cannot be reached.
  explicit RedisStore(const StoreOptions& options);
  // Answers what is queued, waiting claims with none, and closes the connection.
  ~RedisStore() override;

  void enqueue(Job job, bool run_here, std::chrono::milliseconds lease,
               std::function<void(EnqueueResult)> done) override;
  void get(std::string id, std::function<void(StoreStatus, std::optional<Job>)> done) override;
  void claim(std::size_t max, std::chrono::milliseconds lease, std::chrono::milliseconds wait,
             std::function<void(std::vector<Job>)> done) override;
  void renew(std::string id, std::chrono::milliseconds lease) override;
  void finish(std::string id, State state, std::optional<StoredResponse> response,
              std::string error, std::function<void(StoreStatus)> done) override;
  void retry_later(std::string id, Millis run_at, std::string error,
                   std::function<void(StoreStatus)> done) override;
  void list(State state, std::size_t limit,
            std::function<void(StoreStatus, std::vector<Job>)> done) override;
  void requeue(std::string id, std::function<void(StoreStatus)> done) override;
  void remove(std::string id, std::function<void(StoreStatus)> done) override;
  void release_running(std::function<void()> done) override;
  Counts counts() const override;
  StoreHealth health() const override;
  const char* kind() const override { return "redis"; }

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gatehouse::jobs
