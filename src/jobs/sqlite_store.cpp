#include "jobs/sqlite_store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <unordered_set>
#include <utility>

#include "jobs/codec.hpp"

namespace gatehouse::jobs {

namespace {

using std::chrono::milliseconds;

Millis now_ms() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A failed statement: the batch it belongs to is rolled back and every call in it answered
// `unavailable`. Only ever thrown and caught on the store thread.
struct SqlError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY NOT NULL,
  owner TEXT NOT NULL,
  route TEXT NOT NULL,
  request_id TEXT NOT NULL,
  client_ip TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  request_digest TEXT NOT NULL,
  method TEXT NOT NULL,
  target TEXT NOT NULL,
  headers BLOB NOT NULL,
  body BLOB NOT NULL,
  state INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  max_attempts INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  run_at INTEGER NOT NULL,
  finished_at INTEGER NOT NULL,
  response_status INTEGER,
  response_headers BLOB,
  response_body BLOB,
  last_error TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, run_at);
CREATE INDEX IF NOT EXISTS jobs_queued_since ON jobs (created_at) WHERE state = 0;
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE state >= 2;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (owner, idempotency_key)
  WHERE idempotency_key != '';
PRAGMA user_version = 1;
)sql";

// Column order read_job() expects.
#define GH_JOB_HEAD                                                                            \
  "id, owner, route, request_id, client_ip, idempotency_key, request_digest, method, target, " \
  "headers, "
#define GH_JOB_MID                                                                 \
  ", state, attempts, max_attempts, created_at, updated_at, run_at, finished_at, " \
  "response_status, response_headers, "
#define GH_JOB_TAIL ", last_error"
constexpr const char* kJobColumns = GH_JOB_HEAD "body" GH_JOB_MID "response_body" GH_JOB_TAIL;
// list(): the same row without the two bodies.
constexpr const char* kJobColumnsLean = GH_JOB_HEAD "x''" GH_JOB_MID "x''" GH_JOB_TAIL;
#undef GH_JOB_HEAD
#undef GH_JOB_MID
#undef GH_JOB_TAIL

class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql) : db_(db) {
    if (sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &s_, nullptr) !=
        SQLITE_OK) {
      throw SqlError(sqlite3_errmsg(db));
    }
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // One execution: bind, step, read; reset when it ends.
  class Run {
   public:
    explicit Run(Stmt& s) : s_(s) {}
    ~Run() {
      sqlite3_reset(s_.s_);
      sqlite3_clear_bindings(s_.s_);
    }
    Run& text(int i, std::string_view v) {
      check(sqlite3_bind_text(s_.s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
      return *this;
    }
    Run& blob(int i, std::string_view v) {
      check(sqlite3_bind_blob(s_.s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
      return *this;
    }
    Run& integer(int i, std::int64_t v) {
      check(sqlite3_bind_int64(s_.s_, i, v));
      return *this;
    }
    Run& null(int i) {
      check(sqlite3_bind_null(s_.s_, i));
      return *this;
    }
    // true: a row is ready.
    bool step() {
      int rc = sqlite3_step(s_.s_);
      if (rc == SQLITE_ROW) {
        return true;
      }
      if (rc != SQLITE_DONE) {
        throw SqlError(sqlite3_errmsg(s_.db_));
      }
      return false;
    }
    sqlite3_stmt* row() { return s_.s_; }
    int changes() { return sqlite3_changes(s_.db_); }

   private:
    void check(int rc) {
      if (rc != SQLITE_OK) {
        throw SqlError(sqlite3_errmsg(s_.db_));
      }
    }
    Stmt& s_;
  };

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
  int n = sqlite3_column_bytes(s, i);
  return p == nullptr ? std::string() : std::string(p, static_cast<std::size_t>(n));
}

Job read_job(sqlite3_stmt* s) {
  Job j;
  j.id = column_text(s, 0);
  j.owner = column_text(s, 1);
  j.route = column_text(s, 2);
  j.request_id = column_text(s, 3);
  j.client_ip = column_text(s, 4);
  j.idempotency_key = column_text(s, 5);
  j.request_digest = column_text(s, 6);
  j.request.method = column_text(s, 7);
  j.request.target = column_text(s, 8);
  j.request.headers = decode_fields(column_text(s, 9)).value_or(Fields{});
  j.request.body = column_text(s, 10);
  j.state = static_cast<State>(std::clamp(sqlite3_column_int(s, 11), 0, 4));
  j.attempts = sqlite3_column_int(s, 12);
  j.max_attempts = sqlite3_column_int(s, 13);
  j.created_at = sqlite3_column_int64(s, 14);
  j.updated_at = sqlite3_column_int64(s, 15);
  j.run_at = sqlite3_column_int64(s, 16);
  j.finished_at = sqlite3_column_int64(s, 17);
  if (sqlite3_column_type(s, 18) != SQLITE_NULL) {
    StoredResponse r;
    r.status = static_cast<unsigned>(sqlite3_column_int(s, 18));
    r.headers = decode_fields(column_text(s, 19)).value_or(Fields{});
    r.body = column_text(s, 20);
    j.response = std::move(r);
  }
  j.last_error = column_text(s, 21);
  return j;
}

struct DbClose {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};

int state_index(State s) {
  return static_cast<int>(s);
}

}  // namespace

std::optional<std::string> sqlite_path(std::string_view url) {
  constexpr std::string_view scheme = "sqlite://";
  if (url.substr(0, scheme.size()) != scheme) {
    return std::nullopt;
  }
  std::string_view rest = url.substr(scheme.size());
  if (rest.empty() || rest == "/") {
    return std::nullopt;
  }
  return std::string(rest);
}

struct SqliteStore::Impl {
  // One call as the store thread runs it inside a batch's transaction. `run` queues its answer in
  // the batch (run after the commit); `fail` answers it when the batch is rolled back.
  struct Batch;
  struct Op {
    std::function<void(Batch&)> run;
    std::function<void()> fail;
  };
  struct Waiter {
    std::size_t max = 1;
    Millis lease = 0;
    Millis deadline = 0;
    std::function<void(std::vector<Job>)> done;
    bool fresh = true;  // queued in this batch (not yet waiting)
  };
  struct Batch {
    Millis now = 0;
    std::vector<std::function<void()>> on_commit;
    std::vector<Waiter> new_waiters;
    // Idempotency keys inserted by this (uncommitted) batch: a duplicate is in_progress.
    std::set<std::pair<std::string, std::string>> new_keys;
    std::array<std::int64_t, 5> delta{};
    bool wake = false;  // a job became claimable
    bool wrote = false;

    // `n` running jobs went back to the queue (a drain's release, start-up recovery).
    void requeued(std::int64_t n) {
      if (n > 0) {
        delta[1] -= n;
        delta[0] += n;
        wake = true;
        wrote = true;
      }
    }
  };

  explicit Impl(const StoreOptions& o) : options(o) {
    auto fail = [&](const std::string& why) {
      return std::runtime_error("jobs store " + options.url + ": " + why);
    };
    auto path = sqlite_path(options.url);
    if (!path) {
      throw fail("expected sqlite:///absolute/path, sqlite://relative/path or sqlite://:memory:");
    }
    sqlite3* raw = nullptr;
    int rc =
        sqlite3_open_v2(path->c_str(), &raw,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    db.reset(raw);
    if (rc != SQLITE_OK) {
      throw fail(raw != nullptr ? sqlite3_errmsg(raw) : "cannot open");
    }
    try {
      sqlite3_busy_timeout(raw, 5000);
      exec("PRAGMA journal_mode=WAL");
      exec("PRAGMA synchronous=FULL");
      exec(kSchema);
      prepare();
      load_counts();
      publish(true, "", oldest_queued());
    } catch (const SqlError& e) {
      throw fail(e.what());
    }
    Millis now = now_ms();
    next_housekeeping = now + housekeeping_interval();
    thread = std::thread([this] { loop(); });
  }

  ~Impl() {
    {
      std::lock_guard lock(mutex);
      stop = true;
    }
    cv.notify_one();
    if (thread.joinable()) {
      thread.join();
    }
  }

  void exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db.get(), sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : sqlite3_errmsg(db.get());
      sqlite3_free(err);
      throw SqlError(msg);
    }
  }

  void prepare() {
    sqlite3* d = db.get();
    std::string cols = kJobColumns;
    insert =
        std::make_unique<Stmt>(d, "INSERT INTO jobs (" + cols +
                                      ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "
                                      "?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)");
    by_id = std::make_unique<Stmt>(d, "SELECT " + cols + " FROM jobs WHERE id = ?1");
    by_key = std::make_unique<Stmt>(
        d, "SELECT " + cols + " FROM jobs WHERE owner = ?1 AND idempotency_key = ?2");
    state_of = std::make_unique<Stmt>(d, "SELECT state FROM jobs WHERE id = ?1");
    due = std::make_unique<Stmt>(
        d, "SELECT id FROM jobs WHERE state = ?1 AND run_at <= ?2 ORDER BY run_at LIMIT ?3");
    mark_running = std::make_unique<Stmt>(
        d,
        "UPDATE jobs SET state = 1, attempts = attempts + 1, run_at = ?2, updated_at = ?3 "
        "WHERE id = ?1");
    renew_lease = std::make_unique<Stmt>(
        d, "UPDATE jobs SET run_at = ?2, updated_at = ?3 WHERE id = ?1 AND state = 1");
    set_final = std::make_unique<Stmt>(
        d,
        "UPDATE jobs SET state = ?2, finished_at = ?3, updated_at = ?3, response_status = ?4, "
        "response_headers = ?5, response_body = ?6, last_error = ?7 WHERE id = ?1");
    set_queued = std::make_unique<Stmt>(
        d,
        "UPDATE jobs SET state = 0, run_at = ?2, updated_at = ?3, last_error = ?4 WHERE id = ?1");
    reset_queued = std::make_unique<Stmt>(
        d,
        "UPDATE jobs SET state = 0, attempts = 0, run_at = ?2, updated_at = ?2, finished_at = 0, "
        "response_status = NULL, response_headers = NULL, response_body = NULL WHERE id = ?1");
    erase = std::make_unique<Stmt>(d, "DELETE FROM jobs WHERE id = ?1");
    by_state = std::make_unique<Stmt>(d, std::string("SELECT ") + kJobColumnsLean +
                                             " FROM jobs WHERE state = ?1 ORDER BY created_at "
                                             "DESC, id LIMIT ?2");
    release = std::make_unique<Stmt>(
        d, "UPDATE jobs SET state = 0, run_at = ?1, updated_at = ?1 WHERE id = ?2 AND state = 1");
    release_all = std::make_unique<Stmt>(
        d, "UPDATE jobs SET state = 0, run_at = ?1, updated_at = ?1 WHERE state = 1");
    expired_ids =
        std::make_unique<Stmt>(d,
                               "SELECT id, state FROM jobs INDEXED BY jobs_finished WHERE "
                               "state >= 2 AND finished_at <= ?1 LIMIT ?2");
    queued_since = std::make_unique<Stmt>(
        d,
        "SELECT created_at FROM jobs INDEXED BY jobs_queued_since WHERE state = 0 ORDER BY "
        "created_at LIMIT 1");
    first_due = std::make_unique<Stmt>(
        d, "SELECT run_at FROM jobs WHERE state = ?1 ORDER BY run_at LIMIT 1");
    all_counts = std::make_unique<Stmt>(d, "SELECT state, count(*) FROM jobs GROUP BY state");
  }

  void load_counts() {
    counts.fill(0);
    Stmt::Run r(*all_counts);
    while (r.step()) {
      int s = sqlite3_column_int(r.row(), 0);
      if (s >= 0 && s < 5) {
        counts[static_cast<std::size_t>(s)] = sqlite3_column_int64(r.row(), 1);
      }
    }
  }

  Millis ttl_ms() const { return options.result_ttl.count(); }
  Millis housekeeping_interval() const { return std::clamp<Millis>(ttl_ms() / 4, 20, 60000); }
  bool expired(const Job& j, Millis now) const {
    return final_state(j.state) && j.finished_at + ttl_ms() <= now;
  }

  void post(Op op) {
    {
      std::lock_guard lock(mutex);
      queue.push_back(std::move(op));
    }
    cv.notify_one();
  }

  // ---- store thread ----

  std::optional<Job> find(Stmt& s, std::string_view a, std::string_view b = {}) {
    Stmt::Run r(s);
    r.text(1, a);
    if (&s == by_key.get()) {
      r.text(2, b);
    }
    if (!r.step()) {
      return std::nullopt;
    }
    return read_job(r.row());
  }

  std::optional<State> current_state(const std::string& id) {
    Stmt::Run r(*state_of);
    r.text(1, id);
    if (!r.step()) {
      return std::nullopt;
    }
    return static_cast<State>(std::clamp(sqlite3_column_int(r.row(), 0), 0, 4));
  }

  void drop(Batch& b, const Job& j) {
    Stmt::Run r(*erase);
    r.text(1, j.id);
    r.step();
    b.delta[static_cast<std::size_t>(state_index(j.state))] -= 1;
    b.wrote = true;
  }

  void do_enqueue(Batch& b, Job& job, bool run_here, Millis lease,
                  const std::function<void(EnqueueResult)>& done) {
    EnqueueResult result;
    auto answer = [&] { b.on_commit.push_back([done, r = std::move(result)] { done(r); }); };
    std::pair<std::string, std::string> key{job.owner, job.idempotency_key};
    if (!job.idempotency_key.empty()) {
      if (b.new_keys.count(key) != 0) {
        result.idempotency = EnqueueResult::Idempotency::in_progress;
        answer();
        return;
      }
      if (auto seen = find(*by_key, job.owner, job.idempotency_key)) {
        if (expired(*seen, b.now)) {
          drop(b, *seen);
        } else {
          result.idempotency = seen->request_digest == job.request_digest
                                   ? EnqueueResult::Idempotency::existing
                                   : EnqueueResult::Idempotency::mismatch;
          if (result.idempotency == EnqueueResult::Idempotency::existing) {
            result.job = std::move(seen);
          }
          answer();
          return;
        }
      }
    }
    if (static_cast<std::uint64_t>(std::max<std::int64_t>(0, counts[0] + b.delta[0])) >=
        options.max_queued) {
      result.status = StoreStatus::full;
      answer();
      return;
    }
    job.created_at = b.now;
    job.updated_at = b.now;
    job.finished_at = 0;
    job.response.reset();
    if (run_here) {
      held.insert(job.id);
      job.state = State::running;
      job.attempts += 1;
      job.run_at = b.now + lease;
    } else {
      job.state = State::queued;
      job.run_at = std::max(job.run_at, b.now);
      b.wake = true;
    }
    {
      Stmt::Run r(*insert);
      r.text(1, job.id)
          .text(2, job.owner)
          .text(3, job.route)
          .text(4, job.request_id)
          .text(5, job.client_ip)
          .text(6, job.idempotency_key)
          .text(7, job.request_digest)
          .text(8, job.request.method)
          .text(9, job.request.target)
          .blob(10, encode_fields(job.request.headers))
          .blob(11, job.request.body)
          .integer(12, state_index(job.state))
          .integer(13, job.attempts)
          .integer(14, job.max_attempts)
          .integer(15, job.created_at)
          .integer(16, job.updated_at)
          .integer(17, job.run_at)
          .integer(18, 0)
          .null(19)
          .null(20)
          .null(21)
          .text(22, job.last_error);
      r.step();
    }
    b.delta[static_cast<std::size_t>(state_index(job.state))] += 1;
    b.wrote = true;
    if (!job.idempotency_key.empty()) {
      b.new_keys.insert(std::move(key));
    }
    result.job = std::move(job);
    answer();
  }

  // Marks up to `max` due jobs running (expired leases first: they are the oldest work).
  std::vector<Job> take_due(Batch& b, std::size_t max, Millis lease) {
    std::vector<std::string> ids;
    for (State s : {State::running, State::queued}) {
      if (ids.size() >= max) {
        break;
      }
      Stmt::Run r(*due);
      r.integer(1, state_index(s))
          .integer(2, b.now)
          .integer(3, static_cast<std::int64_t>(max - ids.size()));
      while (r.step()) {
        ids.push_back(column_text(r.row(), 0));
        if (s == State::queued) {
          b.delta[0] -= 1;
          b.delta[1] += 1;
        }
      }
    }
    std::vector<Job> jobs;
    for (const auto& id : ids) {
      {
        Stmt::Run r(*mark_running);
        r.text(1, id).integer(2, b.now + lease).integer(3, b.now);
        r.step();
      }
      held.insert(id);
      if (auto j = find(*by_id, id)) {
        jobs.push_back(std::move(*j));
      }
    }
    b.wrote = b.wrote || !ids.empty();
    return jobs;
  }

  // Answers `done` with the job's state change applied (`apply` returns false: not found).
  void change(Batch& b, const std::string& id, const std::function<void(StoreStatus)>& done,
              const std::function<bool(State)>& allowed, const std::function<State()>& apply) {
    auto before = current_state(id);
    StoreStatus st = StoreStatus::not_found;
    if (before && allowed(*before)) {
      State after = apply();
      b.delta[static_cast<std::size_t>(state_index(*before))] -= 1;
      b.delta[static_cast<std::size_t>(state_index(after))] += 1;
      b.wrote = true;
      st = StoreStatus::ok;
    }
    if (done) {
      b.on_commit.push_back([done, st] { done(st); });
    }
  }

  // Final jobs past result_ttl go, with their idempotency keys (in the row). Bounded per batch so a
  // backlog (after a long stop) never holds the accepts up; the rest go in the next rounds.
  static constexpr std::int64_t kExpireBatch = 5000;
  void housekeeping(Batch& b) {
    std::vector<std::pair<std::string, int>> gone;
    {
      Stmt::Run r(*expired_ids);
      r.integer(1, b.now - ttl_ms()).integer(2, kExpireBatch);
      while (r.step()) {
        gone.emplace_back(column_text(r.row(), 0), sqlite3_column_int(r.row(), 1));
      }
    }
    for (auto& [id, state] : gone) {
      Job j;
      j.id = id;
      j.state = static_cast<State>(std::clamp(state, 0, 4));
      drop(b, j);
    }
    expire_backlog = gone.size() == static_cast<std::size_t>(kExpireBatch);
  }

  Millis oldest_queued() {
    Stmt::Run r(*queued_since);
    return r.step() ? sqlite3_column_int64(r.row(), 0) : 0;
  }

  Millis first_run_at(State s) {
    Stmt::Run r(*first_due);
    r.integer(1, state_index(s));
    return r.step() ? sqlite3_column_int64(r.row(), 0) : std::numeric_limits<Millis>::max();
  }

  void run_batch(std::vector<Op>& ops) {
    Batch b;
    std::string op_error;
    b.now = now_ms();
    std::deque<Waiter> candidates;
    std::vector<std::pair<Waiter, std::vector<Job>>> served;
    bool housekeeping_due = b.now >= next_housekeeping;
    std::string error;
    try {
      exec("BEGIN IMMEDIATE");
      for (auto& op : ops) {
        try {
          op.run(b);
        } catch (const SqlError& e) {
          if (sqlite3_get_autocommit(db.get())) {
            throw;  // SQLite rolled the transaction back (I/O error, disk full): the batch fails
          }
          // Only this statement was undone (a constraint, a value too big, a full disk that
          // SQLite chose to roll back by statement): only this call fails. Anything but a
          // constraint (a duplicate id) is the store's health.
          int code = sqlite3_extended_errcode(db.get()) & 0xff;
          if (code != SQLITE_CONSTRAINT) {
            op_error = e.what();
          }
          if (op.fail) {
            op.fail();
            op.fail = nullptr;
          }
        }
      }
      if (housekeeping_due) {
        housekeeping(b);
      }
      bool serve = !b.new_waiters.empty() || b.wake || b.now >= next_due;
      for (auto& w : waiters) {
        serve = serve || w.deadline <= b.now;
      }
      if (serve) {
        candidates.swap(waiters);
        for (auto& w : b.new_waiters) {
          candidates.push_back(std::move(w));
        }
        b.new_waiters.clear();
        while (!candidates.empty()) {
          // Popped only once its claim ran: a claim that throws (an I/O error) stays with the
          // waiters, to be answered by the failed batch's handling or the next batch.
          auto jobs = take_due(b, candidates.front().max, candidates.front().lease);
          Waiter w = std::move(candidates.front());
          candidates.pop_front();
          if (!jobs.empty() || w.deadline <= b.now) {
            served.emplace_back(std::move(w), std::move(jobs));
          } else {
            waiters.push_back(std::move(w));
          }
        }
      }
      exec("COMMIT");
    } catch (const SqlError& e) {
      error = e.what();
      if (!sqlite3_get_autocommit(db.get())) {
        try {
          exec("ROLLBACK");
        } catch (const SqlError&) {
        }
      }
    }
    if (!error.empty()) {
      // Nothing was written: every call is answered `unavailable`, waiting claims keep waiting
      // (new ones are answered with none), and the batch's claims are undone with it.
      publish(false, "sqlite: " + error);
      for (auto& op : ops) {
        if (op.fail) {
          op.fail();
        }
      }
      for (auto& w : b.new_waiters) {
        w.done({});
      }
      for (auto& w : candidates) {
        served.emplace_back(std::move(w), std::vector<Job>{});
      }
      for (auto& [w, jobs] : served) {
        if (w.fresh) {
          w.done({});
        } else {
          waiters.push_back(std::move(w));
        }
      }
      for (auto& w : waiters) {
        if (w.fresh) {
          w.done({});
          w.done = nullptr;
        }
      }
      std::erase_if(waiters, [](const Waiter& w) { return !w.done; });
      next_due = b.now + 100;  // try again soon rather than spin
      return;
    }
    for (std::size_t i = 0; i < counts.size(); ++i) {
      counts[i] += b.delta[i];
    }
    for (auto& w : waiters) {
      w.fresh = false;
    }
    if (housekeeping_due) {
      next_housekeeping = b.now + (expire_backlog ? 100 : housekeeping_interval());
    }
    try {
      if (!waiters.empty()) {
        next_due = std::min(first_run_at(State::queued), first_run_at(State::running));
      }
      if (!op_error.empty()) {
        publish(false, "sqlite: " + op_error, oldest_queued());
      } else if (b.wrote || !health_ok) {
        publish(true, "", oldest_queued());
      }
    } catch (const SqlError& e) {
      publish(false, std::string("sqlite: ") + e.what());
    }
    for (auto& f : b.on_commit) {
      f();
    }
    for (auto& [w, jobs] : served) {
      w.done(std::move(jobs));
    }
  }

  void loop() {
    for (;;) {
      std::vector<Op> ops;
      {
        std::unique_lock lock(mutex);
        for (;;) {
          if (!queue.empty() || stop) {
            break;
          }
          Millis wake_at = next_housekeeping;
          if (!waiters.empty()) {
            wake_at = std::min(wake_at, next_due);
            for (const auto& w : waiters) {
              wake_at = std::min(wake_at, w.deadline);
            }
          }
          Millis now = now_ms();
          if (wake_at <= now) {
            break;
          }
          cv.wait_for(lock, milliseconds(wake_at - now));
        }
        ops.swap(queue);
        if (stop && ops.empty()) {
          break;
        }
      }
      run_batch(ops);
    }
    for (auto& w : waiters) {
      w.done({});
    }
    waiters.clear();
  }

  void publish(bool ok, std::string detail, std::optional<Millis> oldest = std::nullopt) {
    health_ok = ok;
    std::lock_guard lock(snapshot_mutex);
    health_snapshot = StoreHealth{ok, std::move(detail)};
    auto at = [&](int i) {
      return static_cast<std::uint64_t>(
          std::max<std::int64_t>(0, counts[static_cast<std::size_t>(i)]));
    };
    counts_snapshot.queued = at(0);
    counts_snapshot.running = at(1);
    counts_snapshot.succeeded = at(2);
    counts_snapshot.failed = at(3);
    counts_snapshot.dead = at(4);
    if (oldest) {
      counts_snapshot.oldest_queued_at = *oldest;
    }
  }

  StoreOptions options;
  std::unique_ptr<sqlite3, DbClose> db;
  // Prepared once; finalized before the connection closes (declared after it).
  std::unique_ptr<Stmt> insert, by_id, by_key, state_of, due, mark_running, renew_lease, set_final,
      set_queued, reset_queued, erase, by_state, release, release_all, expired_ids, queued_since,
      first_due, all_counts;

  std::mutex mutex;
  std::condition_variable cv;
  std::vector<Op> queue;
  bool stop = false;

  // Store thread only.
  std::deque<Waiter> waiters;
  // Jobs this process marked running (claims, run_here) and has not finished or re-queued:
  // release_running gives back only these, never a successor's (a `--takeover` shares the file).
  std::unordered_set<std::string> held;
  Millis next_due = std::numeric_limits<Millis>::max();
  Millis next_housekeeping = 0;
  std::array<std::int64_t, 5> counts{};
  bool health_ok = true;
  bool expire_backlog = false;

  mutable std::mutex snapshot_mutex;
  Counts counts_snapshot;
  StoreHealth health_snapshot;

  std::thread thread;  // last: started once everything above exists
};

SqliteStore::SqliteStore(const StoreOptions& options) : impl_(std::make_unique<Impl>(options)) {}

SqliteStore::~SqliteStore() = default;

void SqliteStore::enqueue(Job job, bool run_here, std::chrono::milliseconds lease,
                          std::function<void(EnqueueResult)> done) {
  auto* impl = impl_.get();
  auto shared = std::make_shared<std::function<void(EnqueueResult)>>(std::move(done));
  impl->post({[impl, job = std::move(job), run_here, lease = lease.count(), shared](
                  Impl::Batch& b) mutable { impl->do_enqueue(b, job, run_here, lease, *shared); },
              [shared] { (*shared)(EnqueueResult{StoreStatus::unavailable}); }});
}

void SqliteStore::get(std::string id, std::function<void(StoreStatus, std::optional<Job>)> done) {
  auto* impl = impl_.get();
  auto shared = std::make_shared<decltype(done)>(std::move(done));
  impl->post({[impl, id = std::move(id), shared](Impl::Batch& b) {
                auto j = impl->find(*impl->by_id, id);
                if (j && impl->expired(*j, b.now)) {
                  j.reset();
                }
                StoreStatus st = j ? StoreStatus::ok : StoreStatus::not_found;
                b.on_commit.push_back(
                    [shared, st, j = std::move(j)]() mutable { (*shared)(st, std::move(j)); });
              },
              [shared] { (*shared)(StoreStatus::unavailable, std::nullopt); }});
}

void SqliteStore::claim(std::size_t max, std::chrono::milliseconds lease,
                        std::chrono::milliseconds wait,
                        std::function<void(std::vector<Job>)> done) {
  auto* impl = impl_.get();
  auto shared = std::make_shared<decltype(done)>(std::move(done));
  impl->post({[max = std::max<std::size_t>(max, 1), lease = lease.count(), wait = wait.count(),
               shared](Impl::Batch& b) {
                Impl::Waiter w;
                w.max = max;
                w.lease = lease;
                w.deadline = b.now + wait;
                w.done = [shared](std::vector<Job> jobs) { (*shared)(std::move(jobs)); };
                b.new_waiters.push_back(std::move(w));
              },
              nullptr});
}

void SqliteStore::renew(std::string id, std::chrono::milliseconds lease) {
  auto* impl = impl_.get();
  impl->post({[impl, id = std::move(id), lease = lease.count()](Impl::Batch& b) {
                Stmt::Run r(*impl->renew_lease);
                r.text(1, id).integer(2, b.now + lease).integer(3, b.now);
                r.step();
                b.wrote = true;
              },
              nullptr});
}

void SqliteStore::finish(std::string id, State state, std::optional<StoredResponse> response,
                         std::string error, std::function<void(StoreStatus)> done) {
  auto* impl = impl_.get();
  auto shared = std::make_shared<decltype(done)>(std::move(done));
  impl->post({[impl, id = std::move(id), state, response = std::move(response),
               error = std::move(error), shared](Impl::Batch& b) {
                impl->change(
                    b, id, *shared, [state](State) { return final_state(state); },
                    [&] {
                      impl->held.erase(id);
                      Stmt::Run r(*impl->set_final);
                      r.text(1, id).integer(2, state_index(state)).integer(3, b.now);
                      if (response) {
                        r.integer(4, response->status)
                            .blob(5, encode_fields(response->headers))
                            .blob(6, response->body);
                      } else {
                        r.null(4).null(5).null(6);
                      }
                      r.text(7, error);
                      r.step();
                      return state;
                    });
              },
              [shared] { (*shared)(StoreStatus::unavailable); }});
}

void SqliteStore::retry_later(std::string id, Millis run_at, std::string error,
                              std::function<void(StoreStatus)> done) {
  auto* impl = impl_.get();
  auto shared = std::make_shared<decltype(done)>(std::move(done));
  impl->post({[impl, id = std::move(id), run_at, error = std::move(error), shared](Impl::Batch& b) {
                impl->change(
                    b, id, *shared, [](State) { return true; },
                    [&] {
                      impl->held.erase(id);
                      Stmt::Run r(*impl->set_queued);
                      r.text(1, id).integer(2, run_at).integer(3, b.now).text(4, error);
                      r.step();
                      b.wake = true;
                      return State::queued;
                    });
              },
              [shared] { (*shared)(StoreStatus::unavailable); }});
}

void SqliteStore::list(State state, std::size_t limit,
                       std::function<void(StoreStatus, std::vector<Job>)> done) {
  auto* impl = impl_.get();
  auto shared = std::make_shared<decltype(done)>(std::move(done));
  impl->post({[impl, state, limit, shared](Impl::Batch& b) {
                std::vector<Job> jobs;
                Stmt::Run r(*impl->by_state);
                r.integer(1, state_index(state))
                    .integer(2, static_cast<std::int64_t>(
                                    std::min<std::size_t>(limit, std::numeric_limits<int>::max())));
                while (r.step()) {
                  jobs.push_back(read_job(r.row()));
                }
                b.on_commit.push_back([shared, jobs = std::move(jobs)]() mutable {
                  (*shared)(StoreStatus::ok, std::move(jobs));
                });
              },
              [shared] { (*shared)(StoreStatus::unavailable, {}); }});
}

void SqliteStore::requeue(std::string id, std::function<void(StoreStatus)> done) {
  auto* impl = impl_.get();
  auto shared = std::make_shared<decltype(done)>(std::move(done));
  impl->post({[impl, id = std::move(id), shared](Impl::Batch& b) {
                impl->change(
                    b, id, *shared, [](State s) { return s == State::dead || s == State::failed; },
                    [&] {
                      Stmt::Run r(*impl->reset_queued);
                      r.text(1, id).integer(2, b.now);
                      r.step();
                      b.wake = true;
                      return State::queued;
                    });
              },
              [shared] { (*shared)(StoreStatus::unavailable); }});
}

void SqliteStore::remove(std::string id, std::function<void(StoreStatus)> done) {
  auto* impl = impl_.get();
  auto shared = std::make_shared<decltype(done)>(std::move(done));
  impl->post({[impl, id = std::move(id), shared](Impl::Batch& b) {
                StoreStatus st = StoreStatus::not_found;
                if (auto s = impl->current_state(id)) {
                  Job j;
                  j.id = id;
                  j.state = *s;
                  impl->drop(b, j);
                  st = StoreStatus::ok;
                }
                b.on_commit.push_back([shared, st] { (*shared)(st); });
              },
              [shared] { (*shared)(StoreStatus::unavailable); }});
}

void SqliteStore::release_running(std::function<void()> done) {
  auto* impl = impl_.get();
  auto shared = std::make_shared<decltype(done)>(std::move(done));
  impl->post({[impl, shared](Impl::Batch& b) {
                std::int64_t n = 0;
                for (const auto& id : impl->held) {
                  Stmt::Run r(*impl->release);
                  r.integer(1, b.now).text(2, id);
                  r.step();
                  n += r.changes();
                }
                impl->held.clear();
                b.requeued(n);
                b.on_commit.push_back([shared] { (*shared)(); });
              },
              [shared] { (*shared)(); }});
}

void SqliteStore::recover_running(std::function<void()> done) {
  auto* impl = impl_.get();
  auto shared = std::make_shared<decltype(done)>(std::move(done));
  impl->post({[impl, shared](Impl::Batch& b) {
                Stmt::Run r(*impl->release_all);
                r.integer(1, b.now);
                r.step();
                b.requeued(r.changes());
                b.on_commit.push_back([shared] { (*shared)(); });
              },
              [shared] { (*shared)(); }});
}

Counts SqliteStore::counts() const {
  std::lock_guard lock(impl_->snapshot_mutex);
  return impl_->counts_snapshot;
}

StoreHealth SqliteStore::health() const {
  std::lock_guard lock(impl_->snapshot_mutex);
  return impl_->health_snapshot;
}

}  // namespace gatehouse::jobs
