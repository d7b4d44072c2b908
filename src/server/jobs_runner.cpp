// Async jobs (issue 13): the process-wide service (store, owner hasher, counters) and each
// worker's runner, which claims due jobs and runs their attempts through the worker's clusters.
#include <cstdlib>
#include <random>

#include "http/json.hpp"
#include "io/spawn.hpp"
#include "jobs/await_store.hpp"
#include "server/jobs.hpp"
#include "upstream/fetch.hpp"

namespace gatehouse::server {
namespace {

using fjobs_settings = filters::jobs::Settings;

// How long the claim loop's long poll waits for a due job before asking again (and looking at
// the drain flag). An enqueue here wakes it at once; the bound is what a drain waits for the
// outstanding claim (the io_context runs until it is answered).
constexpr auto kClaimWait = std::chrono::milliseconds(250);

std::string owner_key() {
  const char* key = std::getenv("GATEHOUSE_JOBS_KEY");
  if (key == nullptr || *key == '\0') {
    key = std::getenv("GATEHOUSE_LOG_KEY");
  }
  // Owners are hashed with a key so that a leaked store does not reveal credentials by a
  // dictionary; without one set the hash is still one-way, and stable across restarts (a job's
  // owner must be recognised after a restart).
  return std::string("gatehouse-jobs-owner:") + (key != nullptr ? key : "");
}

std::uint64_t thread_random() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

}  // namespace

gjobs::Millis now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::chrono::milliseconds job_lease(const config::Upstream& u) {
  auto t = u.per_try_timeout.count() > 0 ? u.per_try_timeout : u.timeout;
  return std::max<std::chrono::milliseconds>(std::chrono::seconds(10), t * 2);
}

JobsService::JobsService(const config::Config& cfg, observability::Logs& logs, unsigned workers)
    : logs_(logs), owner_hasher_(true, owner_key()) {
  const auto& s = filters::jobs::settings(cfg);
  gjobs::StoreOptions options;
  options.url = s.store;
  options.result_ttl = s.result_ttl;
  options.max_queued = s.max_queued;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  options.instance = std::string(host) + ":" + std::to_string(getpid());
  try {
    store_ = gjobs::open_store(options);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("jobs.store: ") + e.what());
  }
  slots_ = std::max(1U, (s.concurrency + workers - 1) / std::max(1U, workers));
}

JobsService::~JobsService() = default;

void JobsService::count_final(gjobs::State s, std::int64_t latency_ms) {
  auto& c = s == gjobs::State::succeeded ? succeeded_ : s == gjobs::State::failed ? failed_ : dead_;
  c.fetch_add(1, std::memory_order_relaxed);
  const double secs = static_cast<double>(std::max<std::int64_t>(0, latency_ms)) / 1000.0;
  std::size_t i = 0;
  while (i < kLatencyBounds.size() && secs > kLatencyBounds[i]) {
    ++i;
  }
  latency_buckets_[i].fetch_add(1, std::memory_order_relaxed);
  latency_sum_ms_.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(0, latency_ms)),
                            std::memory_order_relaxed);
}

void JobsService::render_metrics(std::string& out) const {
  auto load = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  const auto counts = store_->counts();
  const auto now = now_ms();
  fmt::format_to(
      std::back_inserter(out),
      "# HELP gatehouse_jobs Jobs in the store by state (this store's view).\n"
      "# TYPE gatehouse_jobs gauge\n"
      "gatehouse_jobs{{state=\"queued\"}} {}\ngatehouse_jobs{{state=\"running\"}} {}\n"
      "gatehouse_jobs{{state=\"succeeded\"}} {}\ngatehouse_jobs{{state=\"failed\"}} {}\n"
      "gatehouse_jobs{{state=\"dead\"}} {}\n"
      "# HELP gatehouse_jobs_queue_depth Jobs queued (waiting to run or for a retry).\n"
      "# TYPE gatehouse_jobs_queue_depth gauge\ngatehouse_jobs_queue_depth {}\n"
      "# HELP gatehouse_jobs_oldest_queued_seconds Age of the oldest queued job.\n"
      "# TYPE gatehouse_jobs_oldest_queued_seconds gauge\ngatehouse_jobs_oldest_queued_seconds {}\n"
      "# HELP gatehouse_jobs_accepted_total Jobs accepted (stored, then 202 or the first "
      "attempt's response).\n"
      "# TYPE gatehouse_jobs_accepted_total counter\ngatehouse_jobs_accepted_total {}\n"
      "# HELP gatehouse_jobs_refused_total Job requests refused before a job existed.\n"
      "# TYPE gatehouse_jobs_refused_total counter\n"
      "gatehouse_jobs_refused_total{{reason=\"too_large\"}} {}\n"
      "gatehouse_jobs_refused_total{{reason=\"store\"}} {}\n"
      "# HELP gatehouse_jobs_attempts_total Upstream attempts made for jobs.\n"
      "# TYPE gatehouse_jobs_attempts_total counter\ngatehouse_jobs_attempts_total {}\n"
      "# HELP gatehouse_jobs_retries_total Attempts that failed retryably and were queued again.\n"
      "# TYPE gatehouse_jobs_retries_total counter\ngatehouse_jobs_retries_total {}\n"
      "# HELP gatehouse_jobs_finished_total Jobs that reached a final state here.\n"
      "# TYPE gatehouse_jobs_finished_total counter\n"
      "gatehouse_jobs_finished_total{{state=\"succeeded\"}} {}\n"
      "gatehouse_jobs_finished_total{{state=\"failed\"}} {}\n"
      "gatehouse_jobs_finished_total{{state=\"dead\"}} {}\n"
      "# HELP gatehouse_jobs_dead_letters Jobs in the dead-letter queue.\n"
      "# TYPE gatehouse_jobs_dead_letters gauge\ngatehouse_jobs_dead_letters {}\n"
      "# HELP gatehouse_job_duration_seconds From acceptance to a final state.\n"
      "# TYPE gatehouse_job_duration_seconds histogram\n",
      counts.queued, counts.running, counts.succeeded, counts.failed, counts.dead, counts.queued,
      counts.oldest_queued_at > 0
          ? static_cast<double>(std::max<std::int64_t>(0, now - counts.oldest_queued_at)) / 1000.0
          : 0.0,
      load(accepted_), load(refused_large_), load(refused_store_), load(attempts_), load(retries_),
      load(succeeded_), load(failed_), load(dead_), counts.dead);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < kLatencyBounds.size(); ++i) {
    cumulative += load(latency_buckets_[i]);
    fmt::format_to(std::back_inserter(out),
                   "gatehouse_job_duration_seconds_bucket{{le=\"{}\"}} {}\n", kLatencyBounds[i],
                   cumulative);
  }
  cumulative += load(latency_buckets_[kLatencyBounds.size()]);
  fmt::format_to(std::back_inserter(out),
                 "gatehouse_job_duration_seconds_bucket{{le=\"+Inf\"}} {}\n"
                 "gatehouse_job_duration_seconds_sum {}\ngatehouse_job_duration_seconds_count {}\n",
                 cumulative, static_cast<double>(load(latency_sum_ms_)) / 1000.0, cumulative);
}

nlohmann::json JobsService::health_component() const {
  const auto h = store_->health();
  const auto c = store_->counts();
  nlohmann::json j = {{"status", h.ok ? "ok" : "down"},
                      {"store", store_->kind()},
                      {"queued", c.queued},
                      {"running", c.running},
                      {"dead", c.dead}};
  if (!h.ok) {
    j["detail"] = h.detail;
  }
  return j;
}

JobsRunner::JobsRunner(Worker& w, JobsService& service)
    : w_(w), service_(service), state_(std::make_shared<State>(w.ioc)) {}

void JobsRunner::start() {
  state_->looping = true;
  spawn(w_.ioc, loop(), w_.gw.logs(), "jobs claim loop");
}

net::awaitable<void> JobsRunner::loop() {
  struct Done {
    std::shared_ptr<State> s;
    ~Done() { s->looping = false; }
  } done{state_};
  State& st = *state_;
  const std::size_t slots = service_.slots_per_worker();
  while (!w_.draining) {
    if (st.running >= slots) {
      st.slot_free.expires_after(kClaimWait);
      co_await st.slot_free.async_wait(nothrow);
      continue;
    }
    const auto& cfg = w_.cfg();
    // The longest lease any upstream needs: a claimed job may go to any route.
    std::chrono::milliseconds lease{10'000};
    for (const auto& u : cfg.upstreams) {
      lease = std::max(lease, job_lease(u));
    }
    const auto asked = Clock::now();
    auto jobs = co_await gjobs::await_store<std::vector<gjobs::Job>>([&](auto cb) {
      service_.store().claim(slots - st.running, lease, kClaimWait, std::move(cb));
    });
    if (jobs.empty() && Clock::now() - asked < std::chrono::milliseconds(50)) {
      // Nothing, and at once: the long poll did not wait (a store that cannot be reached
      // answers at once). Do not spin on it.
      st.slot_free.expires_after(std::chrono::milliseconds(250));
      co_await st.slot_free.async_wait(nothrow);
    }
    for (auto& job : jobs) {
      run(std::move(job), nullptr);
    }
  }
}

void JobsRunner::run(gjobs::Job job, std::shared_ptr<AttemptWaiter> waiter) {
  ++state_->running;
  spawn(w_.ioc, attempt(std::move(job), std::move(waiter)), w_.gw.logs(), "job attempt");
}

net::awaitable<void> JobsRunner::keep_lease(std::string id,
                                            std::shared_ptr<net::steady_timer> timer,
                                            std::shared_ptr<bool> done,
                                            std::chrono::milliseconds lease) {
  for (;;) {
    timer->expires_after(lease / 3);
    co_await timer->async_wait(nothrow);
    if (*done) {
      co_return;
    }
    service_.store().renew(id, lease);
  }
}

namespace {

void log_attempt(observability::Logs& logs, const gjobs::Job& job, const upstream::FetchResult& r,
                 const filters::jobs::Verdict& v, double ms) {
  const auto level = v.state == gjobs::State::succeeded ? spdlog::level::info : spdlog::level::warn;
  if (!logs.should_log(level)) {
    return;
  }
  std::string extra = "\"job_id\":";
  ghttp::append_json_string(extra, job.id);
  extra += ",\"request_id\":";
  ghttp::append_json_string(extra, job.request_id);
  extra += ",\"route\":";
  ghttp::append_json_string(extra, job.route);
  fmt::format_to(std::back_inserter(extra), ",\"attempt\":{},\"max_attempts\":{},\"status\":{}",
                 job.attempts, job.max_attempts, r.status);
  extra += ",\"upstream\":";
  ghttp::append_json_string(extra, r.address);
  extra += ",\"outcome\":\"";
  extra += filters::jobs::state_text(v.state);
  extra += "\"";
  if (r.failure != upstream::FetchFailure::none) {
    extra += ",\"failure\":\"";
    extra += upstream::fetch_failure_name(r.failure);
    extra += "\"";
  }
  if (!v.error.empty()) {
    extra += ",\"error\":";
    ghttp::append_json_string(extra, v.error);
  }
  fmt::format_to(std::back_inserter(extra), ",\"duration_ms\":{:.1f}", ms);
  logs.error(level, "job attempt", extra);
}

// The head a job is sent with: its stored lines, then gatehouse's own.
std::string job_head(const gjobs::Job& job, const config::Config& cfg) {
  std::string head = job.request.method + " " + job.request.target + " HTTP/1.1\r\n";
  bool forwarded_for = false;
  for (const auto& [name, value] : job.request.headers) {
    head += name;
    head += ": ";
    head += value;
    head += "\r\n";
    forwarded_for = forwarded_for || ghttp::iequals(name, "X-Forwarded-For");
  }
  if (!forwarded_for && !job.client_ip.empty()) {
    // A job stored before accept kept the chain: the client's address alone, as it did then.
    head += "X-Forwarded-For: " + job.client_ip + "\r\n";
  }
  head += cfg.request_id.header + ": " + job.request_id + "\r\n";
  head += "Idempotency-Key: " + job.id + "\r\n";
  if (!job.request.body.empty() || job.request.method == "POST" || job.request.method == "PUT" ||
      job.request.method == "PATCH") {
    head += "Content-Length: " + std::to_string(job.request.body.size()) + "\r\n";
  }
  head += "\r\n";
  return head;
}

}  // namespace

net::awaitable<void> JobsRunner::attempt(gjobs::Job job, std::shared_ptr<AttemptWaiter> waiter) {
  struct Ended {
    std::shared_ptr<State> s;
    ~Ended() {
      --s->running;
      s->slot_free.cancel();
    }
  } ended{state_};
  // The configuration at the time of the attempt: the route may have been changed by a reload
  // (its upstream is looked up by the route's name).
  // Pinned like a request: the generation's clusters (shared with later generations only while
  // the upstream's definition is unchanged) must outlive the attempt's fetch.
  GenerationPin pin(w_, *w_.gen);
  const config::Config& cfg = pin.g.cfg();
  const auto& settings = filters::jobs::settings(cfg);
  const config::Route* route = nullptr;
  for (const auto& r : cfg.routes) {
    if (r.name == job.route) {
      route = &r;
    }
  }
  const auto started = Clock::now();
  upstream::FetchResult result;
  filters::jobs::Verdict verdict;
  if (route == nullptr) {
    result.failure = upstream::FetchFailure::unavailable;
    verdict.state = gjobs::State::dead;
    verdict.error = "the route " + job.route + " no longer exists";
  } else {
    auto& cluster = *pin.g.clusters[route->upstream_index]->cluster;
    const auto& ucfg = cluster.config();
    const auto lease = job_lease(ucfg);
    auto done = std::make_shared<bool>(false);
    auto lease_timer = std::make_shared<net::steady_timer>(w_.ioc);
    spawn(w_.ioc, keep_lease(job.id, lease_timer, done, lease), w_.gw.logs(), "job lease");
    // However the attempt ends (an exception included), the lease stops being renewed: a job
    // renewed forever would never be taken over.
    struct StopLease {
      std::shared_ptr<bool> done;
      std::shared_ptr<net::steady_timer> timer;
      ~StopLease() {
        *done = true;
        timer->cancel();
      }
    } stop_lease{done, lease_timer};
    const std::string head = job_head(job, cfg);
    service_.count_attempt();
    result =
        co_await upstream::fetch(cluster, {.head = head,
                                           .body = job.request.body,
                                           .request_id = job.request_id,
                                           .timeout = ucfg.per_try_timeout.count() > 0
                                                          ? Clock::duration(ucfg.per_try_timeout)
                                                          : Clock::duration(ucfg.timeout),
                                           .max_response = settings.max_response,
                                           .head_request = job.request.method == "HEAD"});
    *done = true;  // the finishing below must not race a renewal
    lease_timer->cancel();
    filters::jobs::Attempt a;
    switch (result.failure) {
      case upstream::FetchFailure::none:
        a.status = result.status;
        if (a.status == 429 || a.status == 503) {
          for (const auto& [name, value] : result.fields) {
            if (ghttp::iequals(name, "Retry-After")) {
              a.retry_after = upstream::parse_retry_after(value, std::chrono::system_clock::now());
            }
          }
        }
        break;
      case upstream::FetchFailure::connect_failed:
      case upstream::FetchFailure::busy:
      case upstream::FetchFailure::unavailable:
        a.failure = filters::jobs::Attempt::Failure::connect_failed;
        if (result.retry_after_s > 0) {
          a.retry_after = std::chrono::seconds(result.retry_after_s);
        }
        break;
      case upstream::FetchFailure::timed_out:
        a.failure = filters::jobs::Attempt::Failure::timed_out;
        break;
      case upstream::FetchFailure::reset:
        a.failure = filters::jobs::Attempt::Failure::reset;
        break;
      case upstream::FetchFailure::too_large:
        a.failure = filters::jobs::Attempt::Failure::too_large;
        break;
    }
    verdict = filters::jobs::judge(a, job, settings.retry, now_ms(), thread_random());
  }
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  log_attempt(service_.logs(), job, result, verdict, ms);

  std::optional<gjobs::StoredResponse> response;
  if (result.failure == upstream::FetchFailure::none) {
    gjobs::StoredResponse r;
    r.status = result.status;
    for (auto& [name, value] : result.fields) {
      if (filters::jobs::keeps_response_field(name)) {
        r.headers.emplace_back(std::move(name), std::move(value));
      }
    }
    r.body = std::move(result.body);
    response = std::move(r);
  }
  gjobs::StoreStatus status;
  if (verdict.state == gjobs::State::queued) {
    service_.count_retry();
    status = co_await gjobs::await_store<gjobs::StoreStatus>([&](auto cb) {
      service_.store().retry_later(job.id, verdict.run_at, verdict.error, std::move(cb));
    });
    job.state = gjobs::State::queued;
    job.run_at = verdict.run_at;
  } else {
    status = co_await gjobs::await_store<gjobs::StoreStatus>([&](auto cb) {
      service_.store().finish(job.id, verdict.state, response, verdict.error, std::move(cb));
    });
    job.state = verdict.state;
    job.finished_at = now_ms();
    if (status == gjobs::StoreStatus::ok) {
      service_.count_final(verdict.state, job.finished_at - job.created_at);
    }
  }
  job.last_error = verdict.error;
  job.response = std::move(response);
  job.updated_at = now_ms();
  if (status != gjobs::StoreStatus::ok && status != gjobs::StoreStatus::not_found) {
    // Not recorded: the lease runs out and the job is claimed again (at least once).
    std::string extra = "\"job_id\":";
    ghttp::append_json_string(extra, job.id);
    extra += ",\"request_id\":";
    ghttp::append_json_string(extra, job.request_id);
    w_.gw.logs().error(spdlog::level::warn, "job outcome not recorded: store unavailable", extra);
    job.state = gjobs::State::running;
  }
  if (waiter) {
    waiter->job = std::move(job);
    waiter->done = true;
    waiter->timer.cancel();
  }
}

}  // namespace gatehouse::server
