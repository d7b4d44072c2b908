#include "filters/rate_limit/rate_limit_filter.hpp"

#include <fmt/format.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <numeric>
#include <optional>
#include <set>

#include "http/cidr.hpp"
#include "http/fields.hpp"
#include "http/json.hpp"

namespace gatehouse::filters::rate_limit {
namespace {

using ratelimit::Check;
using ratelimit::Nanos;

constexpr std::int64_t kSecond = 1'000'000'000;
enum Result : std::size_t { kAllowed = 0, kRejected = 1, kResults = 2 };

std::int64_t ceil_seconds(Nanos n) {
  return n <= 0 ? 0 : (n + kSecond - 1) / kSecond;
}

std::string key_text(const std::vector<KeyPart>& key) {
  std::string out;
  for (const auto& part : key) {
    if (!out.empty()) {
      out += '+';
    }
    out += part.text();
  }
  return out;
}

bool has_route_part(const std::vector<KeyPart>& key) {
  return std::any_of(key.begin(), key.end(),
                     [](const KeyPart& p) { return p.kind == KeyPart::Kind::route; });
}

// 16 hex digits of SHA-256: names a header-derived key (an API key, a token) in logs and the
// ban list without revealing it.
std::string fingerprint(std::string_view value) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(value.data()), value.size(), digest);
  std::string out = "#";
  for (int i = 0; i < 8; ++i) {
    fmt::format_to(std::back_inserter(out), "{:02x}", digest[i]);
  }
  return out;
}

// A path an upstream cannot resolve to somewhere else: no dot segments, no encoded dot, slash or
// backslash. "/static/../api/generate" must not borrow /static/'s exemption.
bool plain_path(std::string_view path) {
  if (path.find('\\') != std::string_view::npos) {
    return false;
  }
  for (std::size_t i = path.find('%'); i != std::string_view::npos; i = path.find('%', i + 1)) {
    auto code = path.substr(i + 1, 2);
    if (code.size() == 2 &&
        (http::iequals(code, "2e") || http::iequals(code, "2f") || http::iequals(code, "5c"))) {
      return false;
    }
  }
  for (std::size_t i = path.find("/."); i != std::string_view::npos; i = path.find("/.", i + 1)) {
    auto rest = path.substr(i + 2);
    if (rest.empty() || rest[0] == '/' ||
        (rest[0] == '.' && (rest.size() == 1 || rest[1] == '/'))) {
      return false;
    }
  }
  return true;
}

void append_u16(std::string& out, std::size_t n) {
  n = std::min<std::size_t>(n, 0xffff);
  out += static_cast<char>(n >> 8);
  out += static_cast<char>(n & 0xff);
}

}  // namespace

const char* Verdict::code() const {
  switch (kind) {
    case Kind::banned:
      return "banned";
    case Kind::too_many_in_flight:
      return "too_many_concurrent_requests";
    case Kind::store_unavailable:
      return "rate_limit_store_unavailable";
    default:
      return "rate_limit_exceeded";
  }
}

// One rate_limit block as applied: the defaults block (one instance, shared by every route
// that inherits it) or a route's own block.
struct RateLimiter::Policy {
  Block block;
  std::string key_text;
  bool per_route = false;  // the key has a `route` part
  std::vector<ratelimit::Params> params;
  std::vector<std::string> rate_definitions;  // per rate: what its counters are keyed by
  std::vector<std::string> prefixes;          // per rate: 4 bytes derived from the definition
  std::vector<std::uint32_t> definitions;     // the same 4 bytes as a number (Redis key names)
  std::string owner;                          // "defaults" or "route:NAME#i"
  std::string in_flight_prefix;
  std::optional<ratelimit::BanRule> ban;

  bool exempt(std::string_view path, const std::optional<http::IpBytes>& ip) const {
    for (const auto& p : block.exempt_paths) {
      if (path.starts_with(p) && plain_path(path)) {
        return true;
      }
    }
    if (!block.exempt_ips.empty() && ip && http::any_contains(block.exempt_ips, *ip)) {
      return true;
    }
    return false;
  }
};

struct RateLimiter::RoutePlan {
  std::vector<std::string> ban_reasons;  // [policy]: "route=generate limit=10/minute; 50/hour"
  std::string name;
  std::vector<const Policy*> policies;
  std::vector<std::vector<std::string>> item_names;  // [policy][rate]: IETF policy names
  std::vector<std::size_t> first_slot;               // [policy]: rates..., in-flight, ban
  std::string policy_header;  // RateLimit-Policy line when every policy applies
};

// One worker's decision cells, per slot: pointers into the process-wide DecisionCounters.
struct RateLimiter::WorkerCells {
  std::vector<DecisionCounters::Cells*> cells;
};

RateLimiter::RateLimiter(const config::Config& cfg, unsigned workers,
                         std::shared_ptr<SharedState> state,
                         std::shared_ptr<const ratelimit::Clock> clock,
                         const observability::ClientIpHasher* hasher)
    : state_(std::move(state)),
      clock_(std::move(clock)),
      hasher_(hasher),
      ipv6_prefix_(settings(cfg).ipv6_prefix) {
  std::set<std::string> used_prefixes;
  auto make_policy = [&](const Block& block, const std::string& owner) {
    auto p = std::make_unique<Policy>();
    p->block = block;
    p->key_text = key_text(block.key);
    p->per_route = has_route_part(block.key);
    if (block.ban) {
      p->ban = ratelimit::BanRule{
          block.ban->after,
          std::chrono::duration_cast<std::chrono::nanoseconds>(block.ban->within).count(),
          std::chrono::duration_cast<std::chrono::nanoseconds>(block.ban->duration).count()};
    }
    auto prefix_for = [&](const std::string& definition) {
      std::size_t h = std::hash<std::string>{}(definition);
      for (;;) {
        std::string prefix(4, '\0');
        for (int i = 0; i < 4; ++i) {
          prefix[i] = static_cast<char>((h >> (8 * i)) & 0xff);
        }
        if (used_prefixes.insert(prefix).second) {
          p->definitions.push_back(static_cast<std::uint32_t>(h & 0xffffffffu));
          return prefix;
        }
        ++h;
      }
    };
    for (const auto& rate : block.limits) {
      p->params.push_back(ratelimit::Params{rate.count, rate.period_ns(), block.burst});
      auto definition =
          fmt::format("{}|{}|{}|{}|{}", owner, ratelimit::algorithm_name(block.algorithm),
                      block.burst, rate.text(), p->key_text);
      p->prefixes.push_back(prefix_for(definition));
      p->rate_definitions.push_back(definition);
      rule_definitions_.emplace_back(owner, std::move(definition));
    }
    p->owner = owner;
    p->in_flight_prefix = prefix_for(owner + "|in_flight|" + p->key_text);
    if (block.max_in_flight != 0) {
      rule_definitions_.emplace_back(owner, owner + "|in_flight|" + p->key_text);
    }
    p->definitions.pop_back();  // the in-flight prefix is not a rate
    has_ban_rules_ = has_ban_rules_ || p->ban.has_value();
    policies_.push_back(std::move(p));
    return policies_.back().get();
  };

  const Policy* defaults = nullptr;
  const auto& top = settings(cfg);
  if (top.defaults && top.applies) {
    defaults = make_policy(*top.defaults, "defaults");
  }
  std::size_t slots = 0;
  // Per slot: its process-wide decision counter, named by route and definition (an unchanged
  // rule finds its counts after a reload; a changed one starts a new counter).
  auto& counters = counters_;
  for (const auto& route : cfg.routes) {
    RoutePlan plan;
    plan.name = route.name;
    if (route_limits(route).mode == RouteLimits::Mode::own) {
      for (std::size_t i = 0; i < route_limits(route).blocks.size(); ++i) {
        plan.policies.push_back(
            make_policy(route_limits(route).blocks[i], fmt::format("route:{}#{}", route.name, i)));
      }
    } else if (route_limits(route).mode == RouteLimits::Mode::inherit && defaults != nullptr) {
      plan.policies.push_back(defaults);
    }
    // IETF policy names: the window ("minute"), qualified by the key when two limits of the
    // route would otherwise share a name.
    std::vector<std::string> names;
    for (const Policy* p : plan.policies) {
      plan.item_names.emplace_back();
      for (const auto& rate : p->block.limits) {
        plan.item_names.back().push_back(rate.name());
        names.push_back(rate.name());
      }
    }
    for (std::size_t pi = 0; pi < plan.policies.size(); ++pi) {
      for (auto& name : plan.item_names[pi]) {
        if (std::count(names.begin(), names.end(), name) > 1) {
          std::string key = plan.policies[pi]->key_text;
          std::replace(key.begin(), key.end(), ':', '-');
          name = key + "-" + name;
        }
      }
    }
    for (std::size_t pi = 0; pi < plan.policies.size(); ++pi) {
      const Policy* p = plan.policies[pi];
      plan.first_slot.push_back(slots);
      // What a remote store records as the reason of a ban it starts (it cannot know in advance
      // which of the limits will refuse).
      std::string reason = "route=" + route.name + " limit=";
      for (std::size_t ri = 0; ri < p->block.limits.size(); ++ri) {
        reason += ri == 0 ? "" : "; ";
        reason += p->block.limits[ri].text();
      }
      plan.ban_reasons.push_back(std::move(reason));
      for (std::size_t ri = 0; ri < p->block.limits.size(); ++ri) {
        metric_labels_.push_back(
            MetricSlot{fmt::format("route=\"{}\",limit=\"{}\",key=\"{}\"", route.name,
                                   p->block.limits[ri].text(), p->key_text),
                       true, false});
        counters.push_back(state_->decisions.find_or_add(route.name, p->rate_definitions[ri]));
      }
      counters.push_back(
          state_->decisions.find_or_add(route.name, p->owner + "|in_flight|" + p->key_text));
      counters.push_back(
          state_->decisions.find_or_add(route.name, p->owner + "|ban|" + p->key_text));
      metric_labels_.push_back(MetricSlot{
          fmt::format("route=\"{}\",limit=\"max_in_flight\",key=\"{}\"", route.name, p->key_text),
          p->block.max_in_flight > 0, false});
      metric_labels_.push_back(
          MetricSlot{fmt::format("route=\"{}\",limit=\"ban\",key=\"{}\"", route.name, p->key_text),
                     true, true});
      slots += p->block.limits.size() + 2;
    }
    std::vector<std::size_t> all(plan.policies.size());
    std::iota(all.begin(), all.end(), std::size_t{0});
    plan.policy_header = policy_line(plan, all);
    enabled_ = enabled_ || !plan.policies.empty();
    plans_.push_back(std::move(plan));
  }
  wall_offset_ = clock_->wall_offset();
  for (unsigned i = 0; i < std::max(workers, 1u); ++i) {
    auto& w = *cells_.emplace_back(std::make_unique<WorkerCells>());
    for (auto c : counters) {
      w.cells.push_back(state_->decisions.cells(i, c));
    }
  }
}

RateLimiter::~RateLimiter() = default;

bool RateLimiter::route_limited(std::size_t route) const {
  return route < plans_.size() && !plans_[route].policies.empty();
}

namespace {

// A `path:NAME` part's value: the load checked that every route a block applies to has the
// variable, so a missing one (no params given) keys as empty.
std::string_view path_value(const RequestInfo& r, std::string_view name) {
  if (r.params == nullptr) {
    return {};
  }
  return r.params->get(name).value_or(std::string_view());
}

}  // namespace

std::string RateLimiter::identity(const Policy& p, const RequestInfo& r) const {
  return identity(p, r, http::parse_ip(r.client_ip));
}

std::string RateLimiter::identity(const Policy& p, const RequestInfo& r,
                                  const std::optional<http::IpBytes>& parsed) const {
  // Bans must match every spelling of one address, and every address of one IPv6 network, as
  // the counters do.
  std::string ip_text =
      parsed ? http::client_network_text(*parsed, ipv6_prefix_) : std::string(r.client_ip);
  std::string client = hasher_ != nullptr ? (*hasher_)(ip_text) : ip_text;
  std::string out;
  for (const auto& part : p.block.key) {
    if (!out.empty()) {
      out += ' ';
    }
    switch (part.kind) {
      case KeyPart::Kind::ip:
        out += "ip=";
        out += client;
        break;
      case KeyPart::Kind::header: {
        auto v = r.header != nullptr ? r.header(r.header_ctx, part.header) : std::string_view();
        if (v.empty()) {
          out += "ip=";
          out += client;
        } else {
          out += part.text();
          out += '=';
          out += fingerprint(v);
        }
        break;
      }
      case KeyPart::Kind::route:
        out += "route=";
        out += plans_[r.route].name;
        break;
      case KeyPart::Kind::global:
        out += "global";
        break;
      case KeyPart::Kind::path:
        out += part.text();
        out += '=';
        out += path_value(r, part.header);
        break;
    }
  }
  return out;
}

namespace {

// The bytes that name a policy's bucket for this request (after the 4-byte definition prefix).
void append_key(const std::vector<KeyPart>& key, const RequestInfo& r,
                const std::optional<http::IpBytes>& ip, std::string_view route_name,
                std::string& out) {
  auto append_ip = [&] {
    if (ip) {
      out += 'i';
      out.append(reinterpret_cast<const char*>(ip->data()), ip->size());
    } else {
      out += 'I';
      append_u16(out, r.client_ip.size());
      out += r.client_ip;
    }
  };
  for (const auto& part : key) {
    switch (part.kind) {
      case KeyPart::Kind::ip:
        append_ip();
        break;
      case KeyPart::Kind::header: {
        auto v = r.header != nullptr ? r.header(r.header_ctx, part.header) : std::string_view();
        if (v.empty()) {
          append_ip();  // never one shared bucket for every client without the header
        } else {
          out += 'h';
          append_u16(out, v.size());
          out += v;
        }
        break;
      }
      case KeyPart::Kind::route:
        out += 'r';
        append_u16(out, route_name.size());
        out += route_name;
        break;
      case KeyPart::Kind::global:
        out += 'g';
        break;
      case KeyPart::Kind::path: {
        auto v = path_value(r, part.header);
        out += 'p';
        append_u16(out, v.size());
        out += v;
        break;
      }
    }
  }
}

}  // namespace

std::optional<http::IpBytes> RateLimiter::key_ip(const std::optional<http::IpBytes>& ip) const {
  return ip ? std::optional<http::IpBytes>(http::client_network(*ip, ipv6_prefix_)) : std::nullopt;
}

std::uint64_t RateLimiter::ban_probe(const Policy& p, const RequestInfo& r,
                                     const std::optional<http::IpBytes>& network) const {
  // The policy's binary key (what the counters use, without the definition prefix): a function
  // of the same inputs as identity(), so equal identities give equal probes, at the cost of a
  // memcpy and a hash instead of formatting (and, with hash_client_ip, an HMAC).
  thread_local std::string bytes;
  bytes.clear();
  append_key(p.block.key, r, network, plans_[r.route].name, bytes);
  return ratelimit::BanList::probe_of(bytes);
}

void RateLimiter::check(const RequestInfo& r, unsigned worker, Verdict& out) {
  // The session makes a Verdict per request; synchronously, the checks can live in per-thread
  // scratch whose buffers survive from request to request (a remote decision spans a co_await
  // and keeps its own in the Verdict).
  thread_local StoreRequest scratch;
  std::swap(out.store, scratch);
  if (begin(r, worker, out, false)) {
    decide_local(out);
    finish(r, worker, out, false);
  }
  std::swap(out.store, scratch);
}

bool RateLimiter::begin(const RequestInfo& r, unsigned worker, Verdict& out, bool remote) {
  out.kind = Verdict::Kind::allowed;
  out.headers.clear();
  out.retry_after_s = 0;
  out.message.clear();
  out.new_ban.clear();
  out.ban_reason.clear();
  out.held.clear();
  out.headers.reserve(256);
  auto& st = out.store;
  st.checks.clear();
  st.definitions.clear();
  st.groups.clear();
  st.check_policy.clear();
  st.check_rate.clear();
  st.n_applied = 0;
  st.all = false;
  st.banned_group = -1;
  st.ban_left = 0;
  st.new_bans = 0;
  st.check_bans = has_ban_rules_;
  if (r.route >= plans_.size()) {
    return false;
  }
  const RoutePlan& plan = plans_[r.route];
  if (plan.policies.empty()) {
    return false;
  }
  auto& cells = cells_[std::min<std::size_t>(worker, cells_.size() - 1)]->cells;
  auto count = [&](std::size_t slot, Result result) { (*cells[slot])[result].add(1); };
  // Exemptions look at the address itself; counters and in-flight slots at the client's network
  // (an IPv6 address cut to rate_limit.ipv6_prefix).
  const auto ip = http::parse_ip(r.client_ip);
  const auto network = key_ip(ip);

  // Which of the route's policies apply (exemptions), with their slot numbers.
  for (std::size_t pi = 0; pi < plan.policies.size() && st.n_applied < st.applied_index.size();
       ++pi) {
    if (!plan.policies[pi]->exempt(r.path, ip)) {
      st.applied_index[st.n_applied++] = static_cast<std::uint8_t>(pi);
    }
  }
  if (st.n_applied == 0) {
    return false;
  }
  auto applied = [&](std::size_t i) -> const Policy& {
    return *plan.policies[st.applied_index[i]];
  };

  // Bans first: a banned key is refused before it can consume anything. With a remote store the
  // store's script checks the shared bans (a ban lifted on another instance must not linger here).
  if (!remote && refused_by_local_ban(r, worker, out, ip)) {
    return false;
  }

  // Concurrency caps (per instance, also with a remote store: they count open requests).
  for (std::size_t i = 0; i < st.n_applied; ++i) {
    const Policy& p = applied(i);
    if (p.block.max_in_flight == 0) {
      continue;
    }
    std::string key = p.in_flight_prefix;
    append_key(p.block.key, r, network, plan.name, key);
    std::size_t slot = plan.first_slot[st.applied_index[i]] + p.block.limits.size();
    if (!state_->in_flight.acquire(key, p.block.max_in_flight)) {
      count(slot, kRejected);
      state_->rejected_keys.add(worker, identity(p, r, ip));
      release(out);
      out.kind = Verdict::Kind::too_many_in_flight;
      out.retry_after_s = 1;
      out.message =
          fmt::format("Too many concurrent requests: at most {} at a time", p.block.max_in_flight);
      out.headers = "Retry-After: 1\r\n";
      return false;
    }
    count(slot, kAllowed);
    out.held.push_back(std::move(key));
  }

  // Rates: every limit of every applied policy, decided together.
  thread_local std::string suffix;
  std::size_t n = 0;
  for (std::size_t i = 0; i < st.n_applied; ++i) {
    const Policy& p = applied(i);
    if (p.params.empty()) {
      continue;
    }
    suffix.clear();
    append_key(p.block.key, r, network, plan.name, suffix);
    if (remote) {
      StoreRequest::Group g;
      g.identity = identity(p, r);
      g.first = static_cast<std::uint16_t>(n);
      g.ban = p.ban ? &*p.ban : nullptr;
      if (g.ban) {
        g.ban_reason = plan.ban_reasons[st.applied_index[i]];
      }
      st.groups.push_back(std::move(g));
    }
    for (std::size_t ri = 0; ri < p.params.size() && n < ratelimit::kMaxChecks; ++ri, ++n) {
      if (st.keys.size() <= n) {
        st.keys.emplace_back();
      }
      st.keys[n].assign(p.prefixes[ri]);
      st.keys[n] += suffix;
      ratelimit::Check c;
      c.algorithm = p.block.algorithm;
      c.params = p.params[ri];
      st.checks.push_back(c);
      st.definitions.push_back(p.definitions[ri]);
      st.check_policy.push_back(static_cast<std::uint16_t>(i));
      st.check_rate.push_back(static_cast<std::uint16_t>(ri));
    }
    if (remote) {
      st.groups.back().count = static_cast<std::uint16_t>(n - st.groups.back().first);
    }
  }
  if (n == 0) {
    return false;
  }
  // Only now: growing `keys` above moves short (in-place) strings, so earlier views would dangle.
  for (std::size_t c = 0; c < n; ++c) {
    st.checks[c].key = st.keys[c];
  }
  return true;
}

bool RateLimiter::refused_by_local_ban(const RequestInfo& r, unsigned worker, Verdict& out) {
  return refused_by_local_ban(r, worker, out, http::parse_ip(r.client_ip));
}

bool RateLimiter::refused_by_local_ban(const RequestInfo& r, unsigned worker, Verdict& out,
                                       const std::optional<http::IpBytes>& ip) {
  if (!state_->bans.any_active()) {
    return false;
  }
  auto& st = out.store;
  const RoutePlan& plan = plans_[r.route];
  auto& cells = cells_[std::min<std::size_t>(worker, cells_.size() - 1)]->cells;
  const auto network = key_ip(ip);
  for (std::size_t i = 0; i < st.n_applied; ++i) {
    const Policy& p = *plan.policies[st.applied_index[i]];
    // While others are banned, most clients are not: the lock-free filter answers for them
    // without naming the client or reading the clock.
    const std::uint64_t probe = ban_probe(p, r, network);
    if (!state_->bans.may_be_banned(probe)) {
      continue;
    }
    auto who = identity(p, r, ip);
    if (auto left = state_->bans.banned(who, probe, clock_->now())) {
      state_->rejected_keys.add(worker, who);
      (*cells[plan.first_slot[st.applied_index[i]] + p.block.limits.size() + 1])[kRejected].add(1);
      release(out);
      out.kind = Verdict::Kind::banned;
      out.retry_after_s = std::max<std::int64_t>(1, ceil_seconds(*left));
      out.message = fmt::format("Too many requests were rejected; banned for {} more seconds",
                                out.retry_after_s);
      out.headers = fmt::format("Retry-After: {}\r\n", out.retry_after_s);
      return true;
    }
  }
  return false;
}

void RateLimiter::decide_local(Verdict& out) {
  auto& st = out.store;
  st.all = state_->store.decide(std::span(st.checks.data(), st.checks.size()), clock_->now());
  st.banned_group = -1;
  st.new_bans = 0;
}

void RateLimiter::fail_open(Verdict& out) {
  out.kind = Verdict::Kind::allowed;
  out.headers.clear();
}

void RateLimiter::fail_closed(Verdict& out) {
  release(out);
  out.kind = Verdict::Kind::store_unavailable;
  out.retry_after_s = 1;
  out.message = "The rate-limit store is unavailable; try again shortly";
  out.headers = "Retry-After: 1\r\n";
}

void RateLimiter::finish(const RequestInfo& r, unsigned worker, Verdict& out, bool remote) {
  auto& st = out.store;
  const RoutePlan& plan = plans_[r.route];
  auto& cells = cells_[std::min<std::size_t>(worker, cells_.size() - 1)]->cells;
  auto count = [&](std::size_t slot, Result result) { (*cells[slot])[result].add(1); };
  auto applied = [&](std::size_t i) -> const Policy& {
    return *plan.policies[st.applied_index[i]];
  };
  const Nanos now = clock_->now();
  const std::size_t n = st.checks.size();
  // Bans name the client's network; parsed only when a ban is recorded.
  auto network = [&r, this] { return key_ip(http::parse_ip(r.client_ip)); };

  if (remote && st.banned_group >= 0 &&
      static_cast<std::size_t>(st.banned_group) < st.groups.size()) {
    // Banned through another instance (or earlier through this one): refuse, and remember it
    // locally so the ban also holds while the store is unreachable.
    const auto& g = st.groups[static_cast<std::size_t>(st.banned_group)];
    std::size_t i = st.check_policy[g.first];
    const Policy& p = applied(i);
    count(plan.first_slot[st.applied_index[i]] + p.block.limits.size() + 1, kRejected);
    state_->rejected_keys.add(worker, g.identity);
    state_->bans.impose(g.identity, ban_probe(p, r, network()),
                        g.ban_reason.empty() ? std::string_view("shared ban") : g.ban_reason,
                        now + std::max<Nanos>(st.ban_left, 1));
    release(out);
    out.kind = Verdict::Kind::banned;
    out.retry_after_s = std::max<std::int64_t>(1, ceil_seconds(st.ban_left));
    out.message = fmt::format("Too many requests were rejected; banned for {} more seconds",
                              out.retry_after_s);
    out.headers = fmt::format("Retry-After: {}\r\n", out.retry_after_s);
    return;
  }
  const bool all = st.all;

  // Metrics, and the check the response talks about: the one that blocks the longest when
  // rejected, else the one with the fewest requests left.
  std::size_t deciding = 0;
  for (std::size_t c = 0; c < n; ++c) {
    std::size_t slot = plan.first_slot[st.applied_index[st.check_policy[c]]] + st.check_rate[c];
    const auto& o = st.checks[c].outcome;
    if (all) {
      count(slot, kAllowed);
    } else if (!o.allowed) {
      count(slot, kRejected);
    }
    const auto& d = st.checks[deciding].outcome;
    if (!all) {
      if (!o.allowed && (d.allowed || o.retry_after > d.retry_after)) {
        deciding = c;
      }
    } else if (o.remaining < d.remaining ||
               (o.remaining == d.remaining && o.reset_after > d.reset_after)) {
      deciding = c;
    }
  }

  if (!all) {
    release(out);
    out.kind = Verdict::Kind::limited;
    const auto& d = st.checks[deciding].outcome;
    out.retry_after_s = std::max<std::int64_t>(1, ceil_seconds(d.retry_after));
    const Policy& dp = applied(st.check_policy[deciding]);
    out.message = "Rate limit exceeded: " + dp.block.limits[st.check_rate[deciding]].message();
    state_->rejected_keys.add(worker, identity(dp, r));
    if (remote) {
      // The store counted the rejections and started any ban; mirror new bans locally.
      for (std::size_t g = 0; g < st.groups.size() && g < 32; ++g) {
        if ((st.new_bans & (1u << g)) == 0 || st.groups[g].ban == nullptr) {
          continue;
        }
        const auto& group = st.groups[g];
        state_->bans.impose(group.identity,
                            ban_probe(applied(st.check_policy[group.first]), r, network()),
                            group.ban_reason, now + group.ban->duration);
        bans_total_.fetch_add(1, std::memory_order_relaxed);
        out.new_ban = group.identity;
        out.ban_reason = group.ban_reason;
      }
    } else {
      // Ban accounting: each policy that rejected and carries a ban rule.
      for (std::size_t i = 0; i < st.n_applied; ++i) {
        const Policy& p = applied(i);
        if (!p.ban) {
          continue;
        }
        std::size_t failed = n;
        for (std::size_t c = 0; c < n && failed == n; ++c) {
          if (st.check_policy[c] == i && !st.checks[c].outcome.allowed) {
            failed = c;
          }
        }
        if (failed == n) {
          continue;
        }
        auto who = identity(p, r);
        auto reason = fmt::format("route={} limit={}", plan.name,
                                  p.block.limits[st.check_rate[failed]].text());
        if (state_->bans.record_rejection(who, ban_probe(p, r, network()), *p.ban, reason, now)) {
          bans_total_.fetch_add(1, std::memory_order_relaxed);
          out.new_ban = std::move(who);
          out.ban_reason = std::move(reason);
        }
      }
    }
  }
  std::array<std::size_t, 8> applied_list{};
  std::copy_n(st.applied_index.begin(), st.n_applied, applied_list.begin());
  build_headers(plan, std::span<const std::size_t>(applied_list.data(), st.n_applied),
                st.applied_index[st.check_policy[deciding]], st.check_rate[deciding],
                st.checks[deciding].outcome, !all, now, out);
}

// "RateLimit-Policy: ...\r\n" for the given policies of the plan (those with IETF headers on),
// or empty.
std::string RateLimiter::policy_line(const RoutePlan& plan,
                                     std::span<const std::size_t> policies) const {
  std::string items;
  for (std::size_t pi : policies) {
    const Policy* p = plan.policies[pi];
    for (std::size_t ri = 0; ri < p->block.limits.size() && p->block.ietf_headers; ++ri) {
      items += items.empty() ? "" : ", ";
      items += fmt::format("\"{}\";q={};w={}", plan.item_names[pi][ri], p->block.limits[ri].count,
                           p->block.limits[ri].period_s);
    }
  }
  return items.empty() ? std::string() : "RateLimit-Policy: " + items + "\r\n";
}

void RateLimiter::build_headers(const RoutePlan& plan, std::span<const std::size_t> applied,
                                std::size_t plan_index, std::size_t rate_index,
                                const ratelimit::Outcome& o, bool rejected, Nanos now,
                                Verdict& out) const {
  const Policy* dp = plan.policies[plan_index];
  const std::int64_t remaining = rejected ? 0 : static_cast<std::int64_t>(o.remaining);
  const std::int64_t reset_s = ceil_seconds(rejected ? o.retry_after : o.reset_after);
  if (dp->block.ietf_headers) {
    if (applied.size() == plan.policies.size()) {
      out.headers += plan.policy_header;  // precomputed: the common case
    } else {
      out.headers += policy_line(plan, applied);
    }
    auto& h = out.headers;
    h += "RateLimit: \"";
    h += plan.item_names[plan_index][rate_index];
    h += "\";r=";
    http::append_integer(h, remaining);
    h += ";t=";
    http::append_integer(h, reset_s);
    h += "\r\n";
  }
  if (dp->block.x_headers) {
    auto& h = out.headers;
    h += "X-RateLimit-Limit: ";
    http::append_integer(h, static_cast<std::int64_t>(dp->block.limits[rate_index].count));
    h += "\r\nX-RateLimit-Remaining: ";
    http::append_integer(h, remaining);
    h += "\r\nX-RateLimit-Reset: ";
    // Unix time of the reset, rounded up: never earlier than the real one.
    Nanos at = now + wall_offset_ + (rejected ? o.retry_after : o.reset_after);
    http::append_integer(h, at / kSecond + (at % kSecond != 0 ? 1 : 0));
    h += "\r\n";
  }
  if (rejected) {
    out.headers += "Retry-After: ";
    http::append_integer(out.headers, out.retry_after_s);
    out.headers += "\r\n";
  }
}

void RateLimiter::release(Verdict& verdict) {
  for (const auto& key : verdict.held) {
    state_->in_flight.release(key);
  }
  verdict.held.clear();
}

std::string bans_json(const std::vector<ratelimit::BanInfo>& bans, std::string_view source) {
  std::string out = "{\"bans\":[";
  bool first = true;
  for (const auto& b : bans) {
    out += first ? "" : ",";
    first = false;
    out += "{\"key\":";
    http::append_json_string(out, b.key);
    out += ",\"reason\":";
    http::append_json_string(out, b.reason);
    fmt::format_to(std::back_inserter(out), ",\"expires_in\":{}}}", ceil_seconds(b.remaining));
  }
  fmt::format_to(std::back_inserter(out), "],\"count\":{}", bans.size());
  if (!source.empty()) {
    out += ",\"source\":";
    http::append_json_string(out, source);
  }
  out += '}';
  return out;
}

std::string RateLimiter::bans_json() {
  return rate_limit::bans_json(state_->bans.list(clock_->now()));
}

bool RateLimiter::lift_ban(std::string_view key) {
  return state_->bans.lift(key);
}

std::size_t RateLimiter::lift_all_bans() {
  return state_->bans.lift_all();
}

void RateLimiter::render_metrics(std::string& out) const {
  auto it = std::back_inserter(out);
  out +=
      "# HELP gatehouse_ratelimit_decisions_total Rate-limit decisions by route, limit, key and "
      "result.\n# TYPE gatehouse_ratelimit_decisions_total counter\n";
  static constexpr const char* kResultNames[] = {"allowed", "rejected"};
  for (std::size_t slot = 0; slot < metric_labels_.size(); ++slot) {
    const auto& m = metric_labels_[slot];
    if (!m.shown) {
      continue;
    }
    for (std::size_t res = 0; res < kResults; ++res) {
      if (m.ban && res == kAllowed) {
        continue;  // a ban only ever refuses
      }
      const std::int64_t total = state_->decisions.total(counters_[slot], res);
      fmt::format_to(it, "gatehouse_ratelimit_decisions_total{{{},result=\"{}\"}} {}\n", m.labels,
                     m.ban ? "banned" : kResultNames[res], total);
    }
  }
  auto now = clock_->now();
  fmt::format_to(it,
                 "# HELP gatehouse_ratelimit_bans_active Keys banned right now.\n"
                 "# TYPE gatehouse_ratelimit_bans_active gauge\n"
                 "gatehouse_ratelimit_bans_active {}\n"
                 "# HELP gatehouse_ratelimit_bans_total Bans started.\n"
                 "# TYPE gatehouse_ratelimit_bans_total counter\n"
                 "gatehouse_ratelimit_bans_total {}\n"
                 "# HELP gatehouse_ratelimit_keys Keys tracked by the in-memory limiter.\n"
                 "# TYPE gatehouse_ratelimit_keys gauge\n"
                 "gatehouse_ratelimit_keys {}\n"
                 "# HELP gatehouse_ratelimit_keys_max The cap on tracked keys (max_keys).\n"
                 "# TYPE gatehouse_ratelimit_keys_max gauge\n"
                 "gatehouse_ratelimit_keys_max {}\n"
                 "# HELP gatehouse_ratelimit_evictions_total Keys evicted to stay under max_keys.\n"
                 "# TYPE gatehouse_ratelimit_evictions_total counter\n"
                 "gatehouse_ratelimit_evictions_total {}\n",
                 state_->bans.active(now), bans_total_.load(std::memory_order_relaxed),
                 state_->store.keys(), state_->store.capacity(), state_->store.evictions());
}

}  // namespace gatehouse::filters::rate_limit
