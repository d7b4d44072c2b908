#include "jobs/redis_store.hpp"

#include <hiredis/hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>

#include "jobs/codec.hpp"
#include "jobs/redis_scripts.hpp"
#include "redis/url.hpp"

namespace gatehouse::jobs {

namespace {

using std::chrono::milliseconds;

constexpr const char* kPrefix = "gatehouse:{jobs}:";
constexpr const char* kGroup = "gatehouse";
constexpr Millis kPollMs = 100;             // claims waiting for other instances' work
constexpr Millis kReconnectMs = 500;        // at most one connection attempt per interval
constexpr Millis kCountsMs = 1000;          // counts refreshed at least this often
constexpr Millis kCountsAfterWriteMs = 50;  // and this soon after a write (not per batch)
constexpr std::size_t kMaxBatch = 4096;

Millis now_ms() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t to_int(std::string_view s) {
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;
struct ContextFree {
  void operator()(redisContext* c) const { redisFree(c); }
};

std::string_view str(const redisReply* r) {
  if (r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
                       r->type == REDIS_REPLY_ERROR)) {
    return {r->str, r->len};
  }
  return {};
}

bool is_array(const redisReply* r) {
  return r != nullptr && r->type == REDIS_REPLY_ARRAY;
}

// A job from its hash (HGETALL: field, value, field, value...).
Job job_from_hash(const redisReply* r) {
  Job j;
  StoredResponse resp;
  bool has_response = false;
  for (std::size_t i = 0; is_array(r) && i + 1 < r->elements; i += 2) {
    std::string_view f = str(r->element[i]);
    std::string_view v = str(r->element[i + 1]);
    if (f == "id") {
      j.id = v;
    } else if (f == "owner") {
      j.owner = v;
    } else if (f == "route") {
      j.route = v;
    } else if (f == "request_id") {
      j.request_id = v;
    } else if (f == "client_ip") {
      j.client_ip = v;
    } else if (f == "idempotency_key") {
      j.idempotency_key = v;
    } else if (f == "request_digest") {
      j.request_digest = v;
    } else if (f == "method") {
      j.request.method = v;
    } else if (f == "target") {
      j.request.target = v;
    } else if (f == "headers") {
      j.request.headers = decode_fields(v).value_or(Fields{});
    } else if (f == "body") {
      j.request.body = v;
    } else if (f == "state") {
      j.state = static_cast<State>(std::clamp<std::int64_t>(to_int(v), 0, 4));
    } else if (f == "attempts") {
      j.attempts = static_cast<int>(to_int(v));
    } else if (f == "max_attempts") {
      j.max_attempts = static_cast<int>(to_int(v));
    } else if (f == "created_at") {
      j.created_at = to_int(v);
    } else if (f == "updated_at") {
      j.updated_at = to_int(v);
    } else if (f == "run_at") {
      j.run_at = to_int(v);
    } else if (f == "finished_at") {
      j.finished_at = to_int(v);
    } else if (f == "response_status") {
      resp.status = static_cast<unsigned>(to_int(v));
      has_response = true;
    } else if (f == "response_headers") {
      resp.headers = decode_fields(v).value_or(Fields{});
    } else if (f == "response_body") {
      resp.body = v;
    } else if (f == "last_error") {
      j.last_error = v;
    }
  }
  if (has_response) {
    j.response = std::move(resp);
  }
  return j;
}

// list(): every field but the two bodies; `state` first (the script skips missing hashes by it).
const std::vector<std::string>& lean_fields() {
  static const std::vector<std::string> f = {"state",
                                             "id",
                                             "owner",
                                             "route",
                                             "request_id",
                                             "client_ip",
                                             "idempotency_key",
                                             "request_digest",
                                             "method",
                                             "target",
                                             "headers",
                                             "attempts",
                                             "max_attempts",
                                             "created_at",
                                             "updated_at",
                                             "run_at",
                                             "finished_at",
                                             "response_status",
                                             "response_headers",
                                             "last_error"};
  return f;
}

enum Script : std::size_t {
  enqueue_s,
  claim_s,
  finish_s,
  retry_s,
  requeue_s,
  remove_s,
  renew_s,
  release_s,
  list_s,
  counts_s,
  script_count
};

const std::array<const char*, script_count>& script_texts() {
  static const std::array<const char*, script_count> t = {
      redis_scripts::kEnqueue,    redis_scripts::kClaim,   redis_scripts::kFinish,
      redis_scripts::kRetryLater, redis_scripts::kRequeue, redis_scripts::kRemove,
      redis_scripts::kRenew,      redis_scripts::kRelease, redis_scripts::kList,
      redis_scripts::kCounts};
  return t;
}

}  // namespace

struct RedisStore::Impl {
  // One command of a batch: its reply (possibly an error reply) or, when it could not be sent or
  // its reply was lost, on_fail. Exactly one of the two runs.
  struct Call {
    std::vector<std::string> args;
    std::function<void(const redisReply*)> on_reply;
    std::function<void()> on_fail;
  };
  struct Waiter {
    std::size_t max = 1;
    Millis lease = 0;
    Millis deadline = 0;
    std::function<void(std::vector<Job>)> done;
  };
  struct Batch {
    Millis now = 0;
    std::vector<Call> calls;
    std::vector<std::function<void()>> immediate;
    std::vector<Waiter> new_waiters;
    std::set<std::pair<std::string, std::string>> new_keys;
    bool wake = false;
    bool wrote = false;
  };
  using Op = std::function<void(Batch&)>;

  explicit Impl(const StoreOptions& o) : options(o) {
    std::string error;
    if (!gatehouse::redis::parse_url(options.url, url, error)) {
      throw std::runtime_error("jobs store " + options.url + ": " + error);
    }
    if (options.instance.empty()) {
      char host[256] = {};
      ::gethostname(host, sizeof host - 1);
      options.instance = std::string(host) + "-" + std::to_string(::getpid());
    }
    if (!connect(error)) {
      throw std::runtime_error("jobs store " + url.redacted() + ": " + error);
    }
    publish(true, "");
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

  // ---- connection (store thread, and the constructor before the thread starts) ----

  Reply command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    return Reply(static_cast<redisReply*>(
        redisCommandArgv(ctx.get(), static_cast<int>(argv.size()), argv.data(), lens.data())));
  }

  bool connect(std::string& error) {
    ctx.reset();
    timeval tv{2, 0};
    redisContext* c = redisConnectWithTimeout(url.host.c_str(), url.port, tv);
    if (c == nullptr || c->err != 0) {
      error = c != nullptr ? c->errstr : "cannot allocate a connection";
      redisFree(c);
      return false;
    }
    ctx.reset(c);
    timeval io{5, 0};
    redisSetTimeout(c, io);
    auto fail = [&](const Reply& r, const char* what) {
      error = std::string(what) + ": " + (r ? std::string(str(r.get())) : std::string(ctx->errstr));
      ctx.reset();
      return false;
    };
    if (!url.password.empty()) {
      std::vector<std::string> auth = {"AUTH"};
      if (!url.username.empty()) {
        auth.push_back(url.username);
      }
      auth.push_back(url.password);
      Reply r = command(auth);
      if (!r || r->type == REDIS_REPLY_ERROR) {
        return fail(r, "AUTH");
      }
    }
    if (url.db != 0) {
      Reply r = command({"SELECT", std::to_string(url.db)});
      if (!r || r->type == REDIS_REPLY_ERROR) {
        return fail(r, "SELECT");
      }
    }
    for (std::size_t i = 0; i < script_count; ++i) {
      Reply r = command({"SCRIPT", "LOAD", script_texts()[i]});
      if (!r || r->type != REDIS_REPLY_STRING) {
        return fail(r, "SCRIPT LOAD");
      }
      shas[i] = std::string(str(r.get()));
    }
    Reply r = command({"XGROUP", "CREATE", key("stream"), kGroup, "0", "MKSTREAM"});
    if (!r || (r->type == REDIS_REPLY_ERROR && !str(r.get()).starts_with("BUSYGROUP"))) {
      return fail(r, "XGROUP CREATE");
    }
    return true;
  }

  bool ensure_connected(Millis now) {
    if (ctx) {
      return true;
    }
    if (now < next_connect) {
      return false;
    }
    next_connect = now + kReconnectMs;
    std::string error;
    if (!connect(error)) {
      publish(false, "redis " + url.redacted() + ": " + error);
      return false;
    }
    return true;
  }

  // Sends the batch's calls in one pipeline and dispatches the replies in order.
  void execute(std::vector<Call>& calls, Millis now) {
    if (calls.empty()) {
      return;
    }
    if (!ensure_connected(now)) {
      for (auto& c : calls) {
        c.on_fail();
      }
      return;
    }
    for (auto& c : calls) {
      std::vector<const char*> argv;
      std::vector<std::size_t> lens;
      for (const auto& a : c.args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      redisAppendCommandArgv(ctx.get(), static_cast<int>(argv.size()), argv.data(), lens.data());
    }
    bool reload = false;
    for (std::size_t i = 0; i < calls.size(); ++i) {
      void* raw = nullptr;
      if (redisGetReply(ctx.get(), &raw) != REDIS_OK || raw == nullptr) {
        publish(false, "redis " + url.redacted() + ": " + ctx->errstr);
        ctx.reset();
        for (std::size_t j = i; j < calls.size(); ++j) {
          calls[j].on_fail();
        }
        return;
      }
      Reply r(static_cast<redisReply*>(raw));
      if (r->type == REDIS_REPLY_ERROR && str(r.get()).starts_with("NOSCRIPT")) {
        reload = true;  // scripts flushed: reconnect (and load them) before the next batch
      }
      calls[i].on_reply(r.get());
    }
    if (reload) {
      ctx.reset();
      next_connect = 0;
    } else if (!health_ok) {
      publish(true, "");
    }
  }

  // ---- helpers for the operations ----

  static std::string key(std::string_view suffix) {
    return std::string(kPrefix) + std::string(suffix);
  }

  std::vector<std::string> script(Script s) const {
    return {"EVALSHA", shas[s], "0", kPrefix, kGroup};
  }

  static bool error_reply(const redisReply* r) {
    return r == nullptr || r->type == REDIS_REPLY_ERROR;
  }

  void post(Op op) {
    {
      std::lock_guard lock(mutex);
      queue.push_back(std::move(op));
    }
    cv.notify_one();
  }

  Millis ttl_ms() const { return std::max<Millis>(1, options.result_ttl.count()); }

  // ---- the store thread ----

  void serve_waiters(Batch& b, bool force) {
    bool serve = force || !b.new_waiters.empty() || b.wake || b.now >= next_poll;
    for (const auto& w : waiters) {
      serve = serve || w.deadline <= b.now;
    }
    if (!serve || (waiters.empty() && b.new_waiters.empty())) {
      return;
    }
    std::deque<Waiter> candidates;
    candidates.swap(waiters);
    for (auto& w : b.new_waiters) {
      candidates.push_back(std::move(w));
    }
    b.new_waiters.clear();
    next_poll = b.now + kPollMs;
    for (auto& w : candidates) {
      auto shared = std::make_shared<Waiter>(std::move(w));
      Millis now = b.now;
      Call c;
      c.args = script(claim_s);
      c.args.push_back(options.instance);
      c.args.push_back(std::to_string(shared->max));
      c.args.push_back(std::to_string(shared->lease));
      c.args.push_back(std::to_string(now));
      c.on_reply = [this, shared, now](const redisReply* r) {
        std::vector<Job> jobs;
        for (std::size_t i = 0; is_array(r) && i < r->elements; ++i) {
          jobs.push_back(job_from_hash(r->element[i]));
        }
        if (!jobs.empty() || shared->deadline <= now) {
          shared->done(std::move(jobs));
        } else {
          waiters.push_back(std::move(*shared));
        }
      };
      c.on_fail = [this, shared, now] {
        if (shared->deadline <= now) {
          shared->done({});
        } else {
          waiters.push_back(std::move(*shared));
        }
      };
      b.calls.push_back(std::move(c));
    }
  }

  void refresh_counts(Batch& b) {
    Call c;
    c.args = script(counts_s);
    c.args.push_back(std::to_string(b.now - ttl_ms()));
    c.on_reply = [this](const redisReply* r) {
      if (!is_array(r) || r->elements < 6) {
        return;
      }
      std::array<std::int64_t, 6> v{};
      for (std::size_t i = 0; i < 6; ++i) {
        v[i] = r->element[i]->type == REDIS_REPLY_INTEGER ? r->element[i]->integer : 0;
      }
      std::lock_guard lock(snapshot_mutex);
      counts_snapshot = Counts{static_cast<std::uint64_t>(v[0]), static_cast<std::uint64_t>(v[1]),
                               static_cast<std::uint64_t>(v[2]), static_cast<std::uint64_t>(v[3]),
                               static_cast<std::uint64_t>(v[4]), v[5] < 0 ? 0 : v[5]};
    };
    c.on_fail = [] {};
    b.calls.push_back(std::move(c));
    last_counts = b.now;
    next_counts = b.now + kCountsMs;
  }

  void run_batch(std::vector<Op>& ops) {
    Batch b;
    b.now = now_ms();
    for (auto& op : ops) {
      op(b);
    }
    serve_waiters(b, false);
    if (b.wrote) {
      next_counts = std::min(next_counts, last_counts + kCountsAfterWriteMs);
    }
    if (b.now >= next_counts) {
      refresh_counts(b);
    }
    execute(b.calls, b.now);
    for (auto& f : b.immediate) {
      f();
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
          Millis wake_at = next_counts;
          if (!waiters.empty()) {
            wake_at = std::min(wake_at, next_poll);
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
        std::size_t n = std::min(queue.size(), kMaxBatch);
        for (std::size_t i = 0; i < n; ++i) {
          ops.push_back(std::move(queue.front()));
          queue.pop_front();
        }
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

  void publish(bool ok, std::string detail) {
    health_ok = ok;
    std::lock_guard lock(snapshot_mutex);
    health_snapshot = StoreHealth{ok, std::move(detail)};
  }

  StoreOptions options;
  gatehouse::redis::Url url;
  std::unique_ptr<redisContext, ContextFree> ctx;
  std::array<std::string, script_count> shas;

  std::mutex mutex;
  std::condition_variable cv;
  std::deque<Op> queue;
  bool stop = false;

  // Store thread only.
  std::deque<Waiter> waiters;
  Millis next_poll = 0;
  Millis next_counts = 0;
  Millis last_counts = 0;
  Millis next_connect = 0;
  bool health_ok = true;

  mutable std::mutex snapshot_mutex;
  Counts counts_snapshot;
  StoreHealth health_snapshot;

  std::thread thread;
};

RedisStore::RedisStore(const StoreOptions& options) : impl_(std::make_unique<Impl>(options)) {}

RedisStore::~RedisStore() = default;

void RedisStore::enqueue(Job job, bool run_here, std::chrono::milliseconds lease,
                         std::function<void(EnqueueResult)> done) {
  auto* impl = impl_.get();
  auto shared = std::make_shared<Job>(std::move(job));
  auto cb = std::make_shared<std::function<void(EnqueueResult)>>(std::move(done));
  impl->post([impl, shared, run_here, lease = lease.count(), cb](Impl::Batch& b) {
    Job& j = *shared;
    std::pair<std::string, std::string> idem{j.owner, j.idempotency_key};
    if (!j.idempotency_key.empty() && b.new_keys.count(idem) != 0) {
      b.immediate.push_back([cb] {
        EnqueueResult r;
        r.idempotency = EnqueueResult::Idempotency::in_progress;
        (*cb)(std::move(r));
      });
      return;
    }
    j.created_at = j.updated_at = b.now;
    j.finished_at = 0;
    j.response.reset();
    if (run_here) {
      j.state = State::running;
      j.attempts += 1;
      j.run_at = b.now + lease;
    } else {
      j.state = State::queued;
      j.run_at = std::max(j.run_at, b.now);
      b.wake = true;
    }
    std::string idem_key =
        j.idempotency_key.empty() ? "" : Impl::key("idem:" + j.owner + ":" + j.idempotency_key);
    Impl::Call c;
    c.args = impl->script(enqueue_s);
    c.args.insert(c.args.end(),
                  {j.id, idem_key, j.request_digest, std::to_string(impl->options.max_queued),
                   run_here ? "1" : "0", std::to_string(j.created_at), std::to_string(j.run_at)});
    auto field = [&](const char* name, std::string value) {
      c.args.emplace_back(name);
      c.args.push_back(std::move(value));
    };
    field("id", j.id);
    field("owner", j.owner);
    field("route", j.route);
    field("request_id", j.request_id);
    field("client_ip", j.client_ip);
    field("idempotency_key", j.idempotency_key);
    field("idem_ref", idem_key);
    field("request_digest", j.request_digest);
    field("method", j.request.method);
    field("target", j.request.target);
    field("headers", encode_fields(j.request.headers));
    field("body", j.request.body);
    field("state", std::to_string(static_cast<int>(j.state)));
    field("attempts", std::to_string(j.attempts));
    field("max_attempts", std::to_string(j.max_attempts));
    field("created_at", std::to_string(j.created_at));
    field("updated_at", std::to_string(j.updated_at));
    field("run_at", std::to_string(j.run_at));
    field("finished_at", "0");
    field("last_error", j.last_error);
    if (run_here) {
      field("holder", impl->options.instance);
    }
    c.on_reply = [shared, cb](const redisReply* r) {
      EnqueueResult res;
      std::string_view kind = is_array(r) && r->elements > 0 ? str(r->element[0]) : "";
      if (kind == "created") {
        res.job = std::move(*shared);
      } else if (kind == "existing" && r->elements > 1) {
        res.idempotency = EnqueueResult::Idempotency::existing;
        res.job = job_from_hash(r->element[1]);
      } else if (kind == "mismatch") {
        res.idempotency = EnqueueResult::Idempotency::mismatch;
      } else if (kind == "full") {
        res.status = StoreStatus::full;
      } else {
        res.status = StoreStatus::unavailable;
      }
      (*cb)(std::move(res));
    };
    c.on_fail = [cb] { (*cb)(EnqueueResult{StoreStatus::unavailable}); };
    b.calls.push_back(std::move(c));
    b.wrote = true;
    if (!j.idempotency_key.empty()) {
      b.new_keys.insert(std::move(idem));
    }
  });
}

void RedisStore::get(std::string id, std::function<void(StoreStatus, std::optional<Job>)> done) {
  auto* impl = impl_.get();
  auto cb = std::make_shared<decltype(done)>(std::move(done));
  impl->post([id = std::move(id), cb](Impl::Batch& b) {
    Impl::Call c;
    c.args = {"HGETALL", Impl::key("job:" + id)};
    c.on_reply = [cb](const redisReply* r) {
      if (Impl::error_reply(r)) {
        (*cb)(StoreStatus::unavailable, std::nullopt);
      } else if (!is_array(r) || r->elements == 0) {
        (*cb)(StoreStatus::not_found, std::nullopt);
      } else {
        (*cb)(StoreStatus::ok, job_from_hash(r));
      }
    };
    c.on_fail = [cb] { (*cb)(StoreStatus::unavailable, std::nullopt); };
    b.calls.push_back(std::move(c));
  });
}

void RedisStore::claim(std::size_t max, std::chrono::milliseconds lease,
                       std::chrono::milliseconds wait, std::function<void(std::vector<Job>)> done) {
  auto* impl = impl_.get();
  auto cb = std::make_shared<decltype(done)>(std::move(done));
  impl->post([max = std::max<std::size_t>(max, 1), lease = std::max<Millis>(1, lease.count()),
              wait = wait.count(), cb](Impl::Batch& b) {
    Impl::Waiter w;
    w.max = max;
    w.lease = lease;
    w.deadline = b.now + wait;
    w.done = [cb](std::vector<Job> jobs) { (*cb)(std::move(jobs)); };
    b.new_waiters.push_back(std::move(w));
  });
}

namespace {

// A script call answered with ok (1) / not_found (0) / unavailable.
template <class Impl>
typename Impl::Call status_call(std::vector<std::string> args,
                                std::shared_ptr<std::function<void(StoreStatus)>> cb) {
  typename Impl::Call c;
  c.args = std::move(args);
  c.on_reply = [cb](const redisReply* r) {
    if (r == nullptr || r->type != REDIS_REPLY_INTEGER) {
      (*cb)(StoreStatus::unavailable);
    } else {
      (*cb)(r->integer != 0 ? StoreStatus::ok : StoreStatus::not_found);
    }
  };
  c.on_fail = [cb] { (*cb)(StoreStatus::unavailable); };
  return c;
}

}  // namespace

void RedisStore::renew(std::string id, std::chrono::milliseconds lease) {
  auto* impl = impl_.get();
  impl->post([impl, id = std::move(id), lease = lease.count()](Impl::Batch& b) {
    Impl::Call c;
    c.args = impl->script(renew_s);
    c.args.insert(c.args.end(), {impl->options.instance, id, std::to_string(b.now + lease)});
    c.on_reply = [](const redisReply*) {};
    c.on_fail = [] {};
    b.calls.push_back(std::move(c));
  });
}

void RedisStore::finish(std::string id, State state, std::optional<StoredResponse> response,
                        std::string error, std::function<void(StoreStatus)> done) {
  auto* impl = impl_.get();
  auto cb = std::make_shared<decltype(done)>(std::move(done));
  impl->post([impl, id = std::move(id), state, response = std::move(response),
              error = std::move(error), cb](Impl::Batch& b) {
    if (!final_state(state)) {
      b.immediate.push_back([cb] { (*cb)(StoreStatus::not_found); });
      return;
    }
    auto args = impl->script(finish_s);
    args.insert(args.end(), {id, std::to_string(static_cast<int>(state)), std::to_string(b.now),
                             std::to_string(impl->ttl_ms()), error, response ? "1" : "0"});
    if (response) {
      args.insert(args.end(), {std::to_string(response->status), encode_fields(response->headers),
                               response->body});
    }
    b.calls.push_back(status_call<Impl>(std::move(args), cb));
    b.wrote = true;
  });
}

void RedisStore::retry_later(std::string id, Millis run_at, std::string error,
                             std::function<void(StoreStatus)> done) {
  auto* impl = impl_.get();
  auto cb = std::make_shared<decltype(done)>(std::move(done));
  impl->post([impl, id = std::move(id), run_at, error = std::move(error), cb](Impl::Batch& b) {
    auto args = impl->script(retry_s);
    args.insert(args.end(), {id, std::to_string(run_at), std::to_string(b.now), error});
    b.calls.push_back(status_call<Impl>(std::move(args), cb));
    b.wrote = true;
    b.wake = b.wake || run_at <= b.now;
  });
}

void RedisStore::list(State state, std::size_t limit,
                      std::function<void(StoreStatus, std::vector<Job>)> done) {
  auto* impl = impl_.get();
  auto cb = std::make_shared<decltype(done)>(std::move(done));
  impl->post([impl, state, limit, cb](Impl::Batch& b) {
    Impl::Call c;
    c.args = impl->script(list_s);
    c.args.push_back(std::to_string(static_cast<int>(state)));
    c.args.push_back(std::to_string(std::clamp<std::size_t>(limit, 0, 1000000)));
    c.args.insert(c.args.end(), lean_fields().begin(), lean_fields().end());
    c.on_reply = [cb](const redisReply* r) {
      if (!is_array(r)) {
        (*cb)(StoreStatus::unavailable, {});
        return;
      }
      std::vector<Job> jobs;
      for (std::size_t i = 0; i < r->elements; ++i) {
        jobs.push_back(job_from_hash(r->element[i]));
      }
      (*cb)(StoreStatus::ok, std::move(jobs));
    };
    c.on_fail = [cb] { (*cb)(StoreStatus::unavailable, {}); };
    if (limit == 0) {
      b.immediate.push_back([cb] { (*cb)(StoreStatus::ok, {}); });
      return;
    }
    b.calls.push_back(std::move(c));
  });
}

void RedisStore::requeue(std::string id, std::function<void(StoreStatus)> done) {
  auto* impl = impl_.get();
  auto cb = std::make_shared<decltype(done)>(std::move(done));
  impl->post([impl, id = std::move(id), cb](Impl::Batch& b) {
    auto args = impl->script(requeue_s);
    args.insert(args.end(), {id, std::to_string(b.now)});
    b.calls.push_back(status_call<Impl>(std::move(args), cb));
    b.wrote = true;
    b.wake = true;
  });
}

void RedisStore::remove(std::string id, std::function<void(StoreStatus)> done) {
  auto* impl = impl_.get();
  auto cb = std::make_shared<decltype(done)>(std::move(done));
  impl->post([impl, id = std::move(id), cb](Impl::Batch& b) {
    auto args = impl->script(remove_s);
    args.push_back(id);
    b.calls.push_back(status_call<Impl>(std::move(args), cb));
    b.wrote = true;
  });
}

void RedisStore::release_running(std::function<void()> done) {
  auto* impl = impl_.get();
  auto cb = std::make_shared<decltype(done)>(std::move(done));
  impl->post([impl, cb](Impl::Batch& b) {
    Impl::Call c;
    c.args = impl->script(release_s);
    c.args.insert(c.args.end(), {impl->options.instance, std::to_string(b.now)});
    c.on_reply = [cb](const redisReply*) { (*cb)(); };
    c.on_fail = [cb] { (*cb)(); };
    b.calls.push_back(std::move(c));
    b.wrote = true;
    b.wake = true;
  });
}

Counts RedisStore::counts() const {
  std::lock_guard lock(impl_->snapshot_mutex);
  return impl_->counts_snapshot;
}

StoreHealth RedisStore::health() const {
  std::lock_guard lock(impl_->snapshot_mutex);
  return impl_->health_snapshot;
}

}  // namespace gatehouse::jobs
