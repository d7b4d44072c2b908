#pragma once
// Which target a request's connection goes to. The cluster asks for candidates one at a time
// within one acquire: a failed connect moves on to the next candidate (nothing was sent yet), until
// the balancer has none left. Balancers see targets through their shared health state (fed by the
// admin thread's active checks and by the workers' connect outcomes); one instance per cluster,
// used by one worker thread only.
//
// Every balancer offers, in this order: the targets marked reachable, then the others (a stale
// mark alone never skips a target), then `Walk::avoid` last. Only the order within a group differs:
// round robin from a cursor, the less loaded of two random picks first (least_request), or the
// rendezvous (highest random weight) order of the request's key (hash).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "observability/health.hpp"

namespace gatehouse::upstream {

struct Candidate {
  std::size_t target = 0;
  bool reachable = true;  // its health said reachable when it was picked
};

// One acquire's progress through the candidates. Start zeroed; `key` and `avoid` are the caller's,
// the rest is balancer-private.
struct Walk {
  std::uint64_t key = 0;  // the request's hash key (hash_key()); only the hash balancer reads it
  bool started = false;
  std::size_t start = 0;
  std::size_t step = 0;
  int pass = 0;
  std::size_t avoid = static_cast<std::size_t>(
      -1);  // a target not to offer while others remain (the target of a failed try, a 429)
};

using TargetHealths = std::span<observability::TargetHealth* const>;

class LoadBalancer {
 public:
  virtual ~LoadBalancer() = default;
  // The next target to try in this walk, or nullopt when every candidate was offered.
  virtual std::optional<Candidate> next(Walk& walk, TargetHealths targets) = 0;
  // The targets' addresses, when they are set and whenever they change (the cluster, on its own
  // thread): a balancer that needs them keeps its own copy.
  virtual void set_addresses(std::span<const std::string> /*addresses*/) {}
};

// Round robin over the targets marked reachable, starting after the last target chosen by any
// request; when all of those fail or none is marked reachable, the others in the same order, so a
// target is never skipped by a stale connect-failure mark alone. `Walk::avoid` comes last of all.
// Targets that are out (unhealthy or ejected: TargetHealth::out()) are skipped by Cluster::acquire.
class RoundRobin final : public LoadBalancer {
 public:
  std::optional<Candidate> next(Walk& walk, TargetHealths targets) override;

 private:
  std::size_t cursor_ = 0;  // the target after the last one chosen
};

// Power of two choices: of two distinct reachable targets drawn at random, the one with fewer
// requests in flight; then the rest in round-robin order from there. `active[t]` is this worker's
// count for target t (kept by the cluster; counts are per worker, not process-wide). No allocation.
class LeastRequest final : public LoadBalancer {
 public:
  explicit LeastRequest(const std::vector<std::uint32_t>& active, std::uint64_t seed = 0);
  std::optional<Candidate> next(Walk& walk, TargetHealths targets) override;

 private:
  std::uint64_t random();

  const std::vector<std::uint32_t>& active_;
  std::uint64_t state_;
};

// Consistent hashing by rendezvous (highest random weight): each target scores
// mix(key, hash of its address) and the highest eligible score wins. The score depends on the key
// and that target's address only, so every instance picks the same target for a key, and taking a
// target out (removed, ejected, unreachable, avoided) moves only the keys it held.
class HashBalancer final : public LoadBalancer {
 public:
  std::optional<Candidate> next(Walk& walk, TargetHealths targets) override;
  // Keeps each address's hash; without it (tests) the targets' health records give the address.
  void set_addresses(std::span<const std::string> addresses) override;

 private:
  std::vector<std::uint64_t> address_hashes_;
};

// The request key for the hash balancer: stable across processes, builds and machines.
std::uint64_t hash_key(std::string_view text);
// A target's rendezvous score for `key` (exposed for tests).
std::uint64_t rendezvous_score(std::uint64_t key, std::string_view address);

std::unique_ptr<LoadBalancer> make_round_robin();
// The balancer `upstreams.<name>.balance` names; `active` as for LeastRequest (it must outlive it).
std::unique_ptr<LoadBalancer> make_balancer(const config::Balance& balance,
                                            const std::vector<std::uint32_t>& active);

}  // namespace gatehouse::upstream
