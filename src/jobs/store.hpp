#pragma once
// Where jobs live (issue 13). Two implementations share this interface:
// - SqliteStore (src/jobs/sqlite_store.*): embedded default, WAL mode, one thread of its own that
//   owns the database; calls are queued to it and writes are committed in batches (group
//   commit), so a burst of accepts costs one fsync per batch, never one per job.
// - RedisStore (src/jobs/redis_store.*): a stream with a consumer group (one consumer per
//   instance), job records in hashes, idempotency keys with SET NX; a dead instance's pending
//   entries are taken over with XAUTOCLAIM after the visibility timeout.
//
// Threading contract: every method may be called from any thread and never blocks on I/O; the
// callback runs on the store's own thread (or its I/O thread) exactly once, and must not block:
// post to your own executor (see jobs::await_store in runner.hpp). Durability contract: a
// callback reporting success for enqueue/finish/retry_later/requeue runs only after the change is
// durable (committed; for Redis, acknowledged by the server).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "jobs/job.hpp"

namespace gatehouse::jobs {

enum class StoreStatus : std::uint8_t {
  ok,
  not_found,
  unavailable,  // the store cannot be reached or written: 503, never a 202
  full,         // max_queued reached: 503 with Retry-After
};

struct EnqueueResult {
  StoreStatus status = StoreStatus::ok;
  // With an Idempotency-Key already seen for this owner within result_ttl:
  enum class Idempotency : std::uint8_t {
    created,     // a new job: `job` is the one given
    existing,    // same key, same request digest: `job` is the stored one (maybe done)
    mismatch,    // same key, another request: 422
    in_progress  // same key, the first is not yet committed: 409
  } idempotency = Idempotency::created;
  std::optional<Job> job;
};

struct Counts {
  std::uint64_t queued = 0, running = 0, succeeded = 0, failed = 0, dead = 0;
  Millis oldest_queued_at = 0;  // 0: none queued
};

struct StoreHealth {
  bool ok = true;
  std::string detail;  // why not (for /health/detailed and logs)
};

struct StoreOptions {
  std::string url;  // sqlite:///path/jobs.db (sqlite://:memory: in tests) or redis://host:port/db
  std::chrono::milliseconds result_ttl{
      std::chrono::hours(24)};        // final jobs (and their idempotency keys) expire
  std::uint64_t max_queued = 100000;  // queued jobs beyond this: enqueue answers full
  std::string instance;               // this instance's consumer name (Redis); unique per process
};

// Opens the store the url names: SQLite creates the file and schema, switches to WAL and starts
// its thread; Redis connects (blocking, start-up only) and creates the consumer group. Throws
// std::runtime_error with a message naming the url on failure (the caller adds the config key).
std::unique_ptr<class Store> open_store(const StoreOptions& options);

class Store {
 public:
  virtual ~Store() = default;

  // Stores a new job (state queued, or running when `run_here` is set: the caller runs the first
  // attempt itself, e.g. hybrid mode, and the job is claimed by this instance with a lease of
  // `lease`). Idempotency per (owner, idempotency_key) when the key is set.
  virtual void enqueue(Job job, bool run_here, std::chrono::milliseconds lease,
                       std::function<void(EnqueueResult)> done) = 0;

  // One job by id (with its request and response).
  virtual void get(std::string id, std::function<void(StoreStatus, std::optional<Job>)> done) = 0;

  // Up to `max` jobs that are due (queued with run_at <= now, or running with an expired lease:
  // taken over after a crash), marked running with a lease of `lease`, attempts incremented. When
  // none is due, waits up to `wait` for one (a long poll: an enqueue on this instance, or the
  // Redis stream, wakes it) and then calls back, possibly with none.
  virtual void claim(std::size_t max, std::chrono::milliseconds lease,
                     std::chrono::milliseconds wait,
                     std::function<void(std::vector<Job>)> done) = 0;

  // Extends a running job's lease (a long upstream call outliving it).
  virtual void renew(std::string id, std::chrono::milliseconds lease) = 0;

  // A final outcome: succeeded, failed or dead, with the response (if any) and the error text.
  virtual void finish(std::string id, State state, std::optional<StoredResponse> response,
                      std::string error, std::function<void(StoreStatus)> done) = 0;

  // A retryable failure with attempts left: queued again, not before `run_at`.
  virtual void retry_later(std::string id, Millis run_at, std::string error,
                           std::function<void(StoreStatus)> done) = 0;

  // Admin: jobs in one state (newest first, at most `limit`, without bodies).
  virtual void list(State state, std::size_t limit,
                    std::function<void(StoreStatus, std::vector<Job>)> done) = 0;
  // Admin: a dead (or failed) job queued again with its attempts reset.
  virtual void requeue(std::string id, std::function<void(StoreStatus)> done) = 0;
  // Admin: a job dropped, whatever its state.
  virtual void remove(std::string id, std::function<void(StoreStatus)> done) = 0;

  // Draining: running jobs this instance holds go back to queued (run_at now), so another
  // instance (or the next start) runs them.
  virtual void release_running(std::function<void()> done) = 0;

  // Start-up of the only process using the store (SQLite without `--takeover`): every job still
  // marked running was cut off by the previous process (kill -9, a crash) and is queued again now
  // rather than after its lease. A store shared by live instances (Redis) leaves it to the leases.
  virtual void recover_running(std::function<void()> done) { done(); }

  // Thread-safe snapshots, refreshed by the store (cheap: metrics and /health/detailed read them).
  virtual Counts counts() const = 0;
  virtual StoreHealth health() const = 0;
  virtual const char* kind() const = 0;  // "sqlite" | "redis"
};

}  // namespace gatehouse::jobs
