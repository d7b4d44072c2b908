// A normal client's rate-limit decisions while another thread sprays 100,000 addresses at a route
// with a `ban` rule (issue 10): the ban list must not serialise the workers. Arg 0: no spray (the
// baseline); 1: the spray's bans last 15 minutes (after two rounds every spray request is a ban
// lookup that hits); 2: they last 1 second, so bans expire and start again all the time and the
// list stays at its cap (lookups, expiry, new bans and evictions together); 3: as 1, but the
// spray stops before the measurement (the cost of looking the client up among 100,000 bans,
// without a second thread); 4: as 1, but the spray goes through a limiter of its own that shares
// nothing with the normal client's: what a second busy thread costs on this machine by itself
// (shared caches and, on a VM, a sibling hyperthread), apart from any sharing in the limiter.
// The figure to compare is the normal client's items_per_second against Arg 0.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "filters/rate_limit/config.hpp"
#include "filters/rate_limit/rate_limit_filter.hpp"
#include "filters/registry.hpp"
#include "ratelimit/clock.hpp"

namespace {

using namespace gatehouse;
namespace rl = filters::rate_limit;

constexpr std::size_t kSprayAddresses = 100'000;

std::unique_ptr<rl::RateLimiter> make_limiter(const char* ban_for) {
  auto cfg = config::load_config_string(
      std::string("upstreams:\n  app: {targets: [\"127.0.0.1:8000\"]}\n"
                  "routes:\n"
                  "  - {name: spray, match: {path_prefix: /spray}, upstream: app,\n"
                  "     rate_limit: {limits: 1/minute, ban: {after: 1, within: 1m, for: ") +
          ban_for +
          "}}}\n"
          "  - {name: normal, match: {path_prefix: /normal}, upstream: app,\n"
          "     rate_limit: {limits: 1000000000/second}}\n",
      "bench.yaml", filters::config_sections());
  return std::make_unique<rl::RateLimiter>(
      cfg, 2, std::make_shared<rl::SharedState>(filters::rate_limit::settings(cfg).max_keys),
      std::make_shared<ratelimit::SteadyClock>());
}

const std::vector<std::string>& spray_addresses() {
  static const std::vector<std::string> out = [] {
    std::vector<std::string> v;
    v.reserve(kSprayAddresses);
    for (std::size_t i = 0; i < kSprayAddresses; ++i) {
      v.push_back("10." + std::to_string(i >> 16) + "." + std::to_string((i >> 8) & 0xff) + "." +
                  std::to_string(i & 0xff));
    }
    return v;
  }();
  return out;
}

void BM_NormalClientDuringBanSpray(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));
  auto limiter = make_limiter(mode == 2 ? "1s" : "15m");
  auto spray_limiter = mode == 4 ? make_limiter("15m") : nullptr;
  rl::RateLimiter& sprayed_through = spray_limiter ? *spray_limiter : *limiter;
  const auto& addresses = spray_addresses();
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> sprayed{0};
  std::atomic<std::uint64_t> banned{0};
  std::thread spray;
  if (mode != 0) {
    spray = std::thread([&] {
      rl::RequestInfo info;
      info.route = 0;
      info.path = "/spray";
      rl::Verdict verdict;
      std::uint64_t n = 0;
      std::uint64_t b = 0;
      for (std::size_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
        info.client_ip = addresses[i % addresses.size()];
        sprayed_through.check(info, 1, verdict);
        b += verdict.kind == rl::Verdict::Kind::banned ? 1 : 0;
        if ((++n & 1023) == 0) {
          sprayed.store(n, std::memory_order_relaxed);
          banned.store(b, std::memory_order_relaxed);
        }
      }
    });
    // Two rounds: every sprayed address has been admitted once and then banned.
    while (sprayed.load(std::memory_order_relaxed) < 2 * kSprayAddresses + 1024) {
      std::this_thread::yield();
    }
    if (mode == 3) {
      stop = true;
      spray.join();
    }
  }
  rl::RequestInfo info;
  info.route = 1;
  info.path = "/normal";
  info.client_ip = "192.0.2.1";
  rl::Verdict verdict;
  // Voluntary context switches of this thread: waits for a lock another thread holds.
  rusage usage_before{};
  getrusage(RUSAGE_THREAD, &usage_before);
  const std::uint64_t sprayed_before = sprayed.load();
  const std::uint64_t banned_before = banned.load();
  for (auto _ : state) {
    limiter->check(info, 0, verdict);
    benchmark::DoNotOptimize(verdict.headers.data());
  }
  rusage usage_after{};
  getrusage(RUSAGE_THREAD, &usage_after);
  state.counters["waits"] = static_cast<double>(usage_after.ru_nvcsw - usage_before.ru_nvcsw);
  state.counters["preempted"] = static_cast<double>(usage_after.ru_nivcsw - usage_before.ru_nivcsw);
  if (!verdict.allowed()) {
    state.SkipWithError("the normal client was refused");
  }
  if (mode != 0 && mode != 3) {
    stop = true;
    spray.join();
    state.counters["spray_per_s"] = benchmark::Counter(
        static_cast<double>(sprayed.load() - sprayed_before), benchmark::Counter::kIsRate);
    state.counters["spray_banned_per_s"] = benchmark::Counter(
        static_cast<double>(banned.load() - banned_before), benchmark::Counter::kIsRate);
    state.counters["bans_active"] = static_cast<double>(sprayed_through.bans_active());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NormalClientDuringBanSpray)
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Arg(3)
    ->Arg(4)
    ->Iterations(2'000'000)
    ->UseRealTime()
    ->Unit(benchmark::kNanosecond);

}  // namespace
