#pragma once
// The embedded job store (issue 13): one SQLite database in WAL mode with synchronous=FULL, owned
// by a thread of its own. Every call is queued to that thread; the thread drains the queue, runs
// the whole batch in one transaction, commits (one fsync of the WAL for the batch) and only then
// runs the callbacks, so a burst of accepts costs one fsync, never one per job, and no callback
// reports a change that is not durable. Claims that find nothing wait on the thread (long poll)
// until an enqueue, a backoff or a lease makes a job due, or their wait ends.
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "jobs/store.hpp"

namespace gatehouse::jobs {

// sqlite://:memory: → ":memory:", sqlite:///abs/path → "/abs/path", sqlite://rel/path →
// "rel/path"; nullopt when `url` is not a sqlite:// url or names no path.
std::optional<std::string> sqlite_path(std::string_view url);

class SqliteStore final : public Store {
 public:
  // Opens (creates) the database and its schema, then starts the thread. Throws
  // std::runtime_error naming the url when the file cannot be opened, created or written.
  explicit SqliteStore(const StoreOptions& options);
  // Runs what is queued, answers waiting claims with none, stops the thread.
  ~SqliteStore() override;

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
  void recover_running(std::function<void()> done) override;
  Counts counts() const override;
  StoreHealth health() const override;
  const char* kind() const override { return "sqlite"; }

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace gatehouse::jobs
