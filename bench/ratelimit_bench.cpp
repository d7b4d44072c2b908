// Micro benchmarks of the rate limiter's per-request work: one MemoryStore decision (a hot key,
// and 100k distinct keys round-robin), and RateLimiter::check end to end (key building,
// decision, headers) for each algorithm. Threads(2) shows whether it scales without a global lock.
#include <benchmark/benchmark.h>

#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "filters/rate_limit/config.hpp"
#include "filters/rate_limit/rate_limit_filter.hpp"
#include "filters/registry.hpp"
#include "ratelimit/clock.hpp"
#include "ratelimit/memory_store.hpp"

namespace {

using namespace gatehouse;
using ratelimit::Algorithm;

constexpr ratelimit::Algorithm kAlgorithms[] = {Algorithm::sliding_window, Algorithm::fixed_window,
                                                Algorithm::token_bucket, Algorithm::gcra};

// Limits high enough that every request is admitted: the benchmark measures the common path.
const ratelimit::Params kOpen{ratelimit::kMaxCount, 1'000'000'000, 0};

ratelimit::MemoryStore& shared_store() {
  static ratelimit::MemoryStore store(1'000'000);
  return store;
}

// 100k client addresses as the limiter keys them: 4-byte prefix, 'i', 4 address bytes.
const std::vector<std::string>& client_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> out;
    out.reserve(100'000);
    for (std::uint32_t i = 0; i < 100'000; ++i) {
      std::string k = "\x01\x02\x03\x04i";
      std::uint32_t ip = 0x0a000000u + i;
      k.append(reinterpret_cast<const char*>(&ip), 4);
      out.push_back(std::move(k));
    }
    return out;
  }();
  return keys;
}

// The algorithm alone (no table, no lock): also the baseline for what Threads(2) can gain on
// this machine, since it shares nothing.
void BM_Evaluate(benchmark::State& state) {
  const Algorithm a = kAlgorithms[state.range(0)];
  ratelimit::State s = ratelimit::State::fresh();
  ratelimit::Nanos now = 1'000'000'000;
  for (auto _ : state) {
    auto e = ratelimit::evaluate(a, kOpen, s, now += 1000);
    s = e.next;
    benchmark::DoNotOptimize(e.outcome);
  }
  state.SetLabel(ratelimit::algorithm_name(a));
}
BENCHMARK(BM_Evaluate)->DenseRange(0, 3)->Threads(1)->Threads(2);

void BM_StoreDecideHotKey(benchmark::State& state) {
  auto& store = shared_store();
  ratelimit::SteadyClock clock;
  static constexpr const char* kHotKeys[] = {"hot-0", "hot-1", "hot-2", "hot-3"};
  std::array<ratelimit::Check, 1> checks;
  checks[0].key = kHotKeys[state.range(0)];  // one per algorithm: states differ in meaning
  checks[0].algorithm = kAlgorithms[state.range(0)];
  checks[0].params = kOpen;
  for (auto _ : state) {
    benchmark::DoNotOptimize(store.decide(checks, clock.now()));
  }
  state.SetLabel(ratelimit::algorithm_name(checks[0].algorithm));
}
BENCHMARK(BM_StoreDecideHotKey)->DenseRange(0, 3)->Threads(1)->Threads(2);

void BM_StoreDecideManyKeys(benchmark::State& state) {
  auto& store = shared_store();
  const auto& keys = client_keys();
  ratelimit::SteadyClock clock;
  std::array<ratelimit::Check, 1> checks;
  checks[0].algorithm = Algorithm::sliding_window;
  checks[0].params = kOpen;
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 50'000;
  for (auto _ : state) {
    checks[0].key = keys[i++ % keys.size()];
    benchmark::DoNotOptimize(store.decide(checks, clock.now()));
  }
}
BENCHMARK(BM_StoreDecideManyKeys)->Threads(1)->Threads(2);

// The same with a table per thread: the difference to the shared table is the cost of sharing.
void BM_StoreDecideManyKeysPrivate(benchmark::State& state) {
  ratelimit::MemoryStore store(1'000'000);
  const auto& keys = client_keys();
  ratelimit::SteadyClock clock;
  std::array<ratelimit::Check, 1> checks;
  checks[0].algorithm = Algorithm::sliding_window;
  checks[0].params = kOpen;
  for (const auto& k : keys) {
    checks[0].key = k;
    store.decide(checks, clock.now());
  }
  std::size_t i = 0;
  for (auto _ : state) {
    checks[0].key = keys[i++ % keys.size()];
    benchmark::DoNotOptimize(store.decide(checks, clock.now()));
  }
}
BENCHMARK(BM_StoreDecideManyKeysPrivate)->Threads(1)->Threads(2);

// One limiter per algorithm, shared by the benchmark's threads like the server's workers.
filters::rate_limit::RateLimiter& limiter(Algorithm a) {
  static std::array<std::unique_ptr<filters::rate_limit::RateLimiter>, 4> limiters = [] {
    std::array<std::unique_ptr<filters::rate_limit::RateLimiter>, 4> out;
    for (std::size_t i = 0; i < 4; ++i) {
      auto cfg = config::load_config_string(
          std::string("upstreams:\n  app: {targets: [\"127.0.0.1:8000\"]}\n"
                      "rate_limit: {key: ip, limits: \"1000000000/second\", algorithm: ") +
              ratelimit::algorithm_name(kAlgorithms[i]) + "}\n",
          "bench.yaml", filters::config_sections());
      out[i] = std::make_unique<filters::rate_limit::RateLimiter>(
          cfg, 2,
          std::make_shared<filters::rate_limit::SharedState>(
              filters::rate_limit::settings(cfg).max_keys),
          std::make_shared<ratelimit::SteadyClock>());
    }
    return out;
  }();
  return *limiters[static_cast<std::size_t>(a)];
}

void BM_RateLimiterCheck(benchmark::State& state) {
  const Algorithm a = kAlgorithms[state.range(0)];
  auto& rl = limiter(a);
  std::vector<std::string> ips;
  for (int i = 0; i < 1000; ++i) {
    ips.push_back("198.51." + std::to_string(state.thread_index() * 4 + i / 256) + "." +
                  std::to_string(i % 256));
  }
  filters::rate_limit::RequestInfo info;
  info.path = "/api/generate";
  filters::rate_limit::Verdict verdict;
  std::size_t i = 0;
  for (auto _ : state) {
    info.client_ip = ips[i++ % ips.size()];
    rl.check(info, static_cast<unsigned>(state.thread_index()), verdict);
    benchmark::DoNotOptimize(verdict.headers.data());
  }
  if (!verdict.allowed()) {
    state.SkipWithError("rejected");
  }
  state.SetLabel(ratelimit::algorithm_name(a));
}
BENCHMARK(BM_RateLimiterCheck)->DenseRange(0, 3)->Threads(1)->Threads(2);

}  // namespace
