#pragma once
// Synchronous wrappers over the asynchronous Store calls, and the contract every store passes
// (store_contract_test.cpp, instantiated per backend). Each wait is bounded: a callback that never
// comes fails the test instead of hanging it.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "jobs/store.hpp"

namespace gatehouse::jobs::test {

using namespace std::chrono_literals;

inline Millis now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Waits for a callback's value; a missing callback is a failure, not a hang.
template <class T>
T await(std::shared_ptr<std::promise<T>> p, std::chrono::milliseconds limit = 10s) {
  auto f = p->get_future();
  if (f.wait_for(limit) != std::future_status::ready) {
    ADD_FAILURE() << "store callback did not come within " << limit.count() << " ms";
    return T{};
  }
  return f.get();
}

inline std::string random_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (int i = 0; i < 32; ++i) {
    id.push_back(hex[rng() % 16]);
  }
  return id;
}

inline Job make_job(std::string body = "{\"prompt\":\"a story\"}") {
  Job j;
  j.id = random_id();
  j.owner = "owner-a";
  j.route = "generate";
  j.request_id = "req-" + j.id.substr(0, 8);
  j.client_ip = "203.0.113.7";
  j.request_digest = "digest-of-" + body;
  j.request.method = "POST";
  j.request.target = "/api/generate?x=1";
  j.request.headers = {{"Content-Type", "application/json"}, {"X-Bytes", std::string("a\0b\r", 4)}};
  j.request.body = std::move(body);
  j.max_attempts = 3;
  return j;
}

inline EnqueueResult enqueue(Store& s, Job j, bool run_here = false,
                             std::chrono::milliseconds lease = 30s) {
  auto p = std::make_shared<std::promise<EnqueueResult>>();
  s.enqueue(std::move(j), run_here, lease, [p](EnqueueResult r) { p->set_value(std::move(r)); });
  return await(p);
}

struct GetResult {
  StoreStatus status = StoreStatus::unavailable;
  std::optional<Job> job;
};

inline GetResult get(Store& s, const std::string& id) {
  auto p = std::make_shared<std::promise<GetResult>>();
  s.get(id, [p](StoreStatus st, std::optional<Job> j) { p->set_value({st, std::move(j)}); });
  return await(p);
}

inline std::vector<Job> claim(Store& s, std::size_t max, std::chrono::milliseconds lease,
                              std::chrono::milliseconds wait = 0ms) {
  auto p = std::make_shared<std::promise<std::vector<Job>>>();
  s.claim(max, lease, wait, [p](std::vector<Job> j) { p->set_value(std::move(j)); });
  return await(p, wait + 10s);
}

inline StoreStatus finish(Store& s, const std::string& id, State state,
                          std::optional<StoredResponse> response = std::nullopt,
                          std::string error = {}) {
  auto p = std::make_shared<std::promise<StoreStatus>>();
  s.finish(id, state, std::move(response), std::move(error),
           [p](StoreStatus st) { p->set_value(st); });
  return await(p);
}

inline StoreStatus retry_later(Store& s, const std::string& id, Millis run_at,
                               std::string error = "upstream 503") {
  auto p = std::make_shared<std::promise<StoreStatus>>();
  s.retry_later(id, run_at, std::move(error), [p](StoreStatus st) { p->set_value(st); });
  return await(p);
}

struct ListResult {
  StoreStatus status = StoreStatus::unavailable;
  std::vector<Job> jobs;
};

inline ListResult list(Store& s, State state, std::size_t limit = 100) {
  auto p = std::make_shared<std::promise<ListResult>>();
  s.list(state, limit, [p](StoreStatus st, std::vector<Job> j) {
    p->set_value({st, std::move(j)});
  });
  return await(p);
}

inline StoreStatus requeue(Store& s, const std::string& id) {
  auto p = std::make_shared<std::promise<StoreStatus>>();
  s.requeue(id, [p](StoreStatus st) { p->set_value(st); });
  return await(p);
}

inline StoreStatus remove(Store& s, const std::string& id) {
  auto p = std::make_shared<std::promise<StoreStatus>>();
  s.remove(id, [p](StoreStatus st) { p->set_value(st); });
  return await(p);
}

inline bool release_running(Store& s) {
  auto p = std::make_shared<std::promise<bool>>();
  s.release_running([p] { p->set_value(true); });
  return await(p);
}

// Polls `pred` until true or `limit` (for effects the store applies in the background:
// housekeeping, counts refreshed after a batch).
inline bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

// A backend under test: opens a fresh, empty store with the given options (url filled in).
struct Backend {
  std::string name;
  std::function<std::unique_ptr<Store>(StoreOptions)> open;
};

inline std::string backend_name(const ::testing::TestParamInfo<Backend>& info) {
  return info.param.name;
}

}  // namespace gatehouse::jobs::test

namespace gatehouse::jobs::test {

// The contract (store_contract_test.cpp); each backend's file instantiates it.
class StoreContract : public ::testing::TestWithParam<Backend> {
 protected:
  std::unique_ptr<Store> open(StoreOptions o = {}) {
    o.instance = o.instance.empty() ? "test-a" : o.instance;
    return GetParam().open(std::move(o));
  }
};

}  // namespace gatehouse::jobs::test
